/**
 * The gateway's stream limits (README "Long streams and failures"), tripped
 * one by one on every protocol — Connect and gRPC-Web (connect-web), native
 * gRPC (connect-es's gRPC protocol over node:http2) and HTTP/JSON (fetch):
 *
 * - concurrent streams per caller and in total: ResourceExhausted (HTTP 429
 *   with Retry-After on HTTP/JSON), refused before any upstream call (the
 *   synthetic upstream counts its calls), counted in
 *   cbt_gateway_limited_total;
 * - the maximum stream duration: the stream ends with ResourceExhausted
 *   carrying `cbt-next-offset` (HTTP/JSON: the error record's nextOffset),
 *   and continuing from there, again and again, yields every tuple exactly
 *   once;
 * - the max_results clamp: no message carries more tuples than the cap.
 *
 * The upstream is the synthetic snapshot-metadata server: `t<N>` streams N
 * tuples of 4 KiB at offsets 0, 4096, …, so the ground truth is known.
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import {
  Code,
  ConnectError,
  createClient,
  type Transport,
} from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-web";
import { SnapshotMetadata } from "../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import { NodeGrpcRelayBackend } from "../src/adapter/node-http2/relay-backend.ts";
import { type RunningGateway, startGateway } from "../src/server/start.ts";
import { NEXT_OFFSET_KEY } from "../src/gateway/resumable-error.ts";
import { createUpstreamGrpcTransport } from "./support/grpc-transport.ts";
import { startSyntheticUpstream } from "./support/synthetic-upstream.ts";
import { TokenAuth } from "./support/token-auth.ts";

const BLOCK = 4096;
const NAMESPACE = "ns";

const auth = () =>
  new TokenAuth({
    "alice-token": { user: "alice", namespaces: [NAMESPACE] },
    "bob-token": { user: "bob", namespaces: [NAMESPACE] },
    "carol-token": { user: "carol", namespaces: [NAMESPACE] },
  });

type Protocol = "Connect" | "gRPC-Web" | "gRPC";
const RPC_PROTOCOLS: Protocol[] = ["Connect", "gRPC-Web", "gRPC"];

function transport(gw: RunningGateway, protocol: Protocol): Transport {
  switch (protocol) {
    case "Connect":
      return createConnectTransport({
        baseUrl: gw.httpUrl,
        useBinaryFormat: true,
      });
    case "gRPC-Web":
      return createGrpcWebTransport({ baseUrl: gw.httpUrl });
    case "gRPC":
      return createUpstreamGrpcTransport({ baseUrl: gw.grpcUrl });
  }
}

function client(gw: RunningGateway, protocol: Protocol) {
  return createClient(SnapshotMetadata, transport(gw, protocol));
}

const bearer = (user: string) => ({
  headers: { authorization: `Bearer ${user}-token` },
});

async function expectConnectError(
  p: Promise<unknown>,
  code: Code,
): Promise<ConnectError> {
  try {
    await p;
  } catch (e) {
    const err = ConnectError.from(e);
    equal(err.code, code, `${Code[err.code]}: ${err.rawMessage}`);
    return err;
  }
  throw new Error(`expected ${Code[code]}`);
}

/** The first message of an RPC stream, the stream left open. */
async function openRpc(
  gw: RunningGateway,
  protocol: Protocol,
  user: string,
  snapshotName: string,
) {
  const abort = new AbortController();
  const it = client(gw, protocol).getMetadataAllocated(
    { namespace: NAMESPACE, snapshotName, maxResults: 256 },
    { ...bearer(user), signal: abort.signal },
  )[Symbol.asyncIterator]();
  const first = await it.next();
  return { first, it, close: () => abort.abort() };
}

function ndjsonUrl(gw: RunningGateway, snapshot: string, query = "") {
  return `${gw.httpUrl}/v1/namespaces/${NAMESPACE}/snapshots/${snapshot}/allocated${query}`;
}

function limitedCount(gw: RunningGateway, reason: string): number {
  const m = new RegExp(
    `^cbt_gateway_limited_total\\{reason="${reason}"\\} (\\d+)$`,
    "m",
  ).exec(gw.gateway.metrics.render());
  return Number(m?.[1]);
}

async function waitFor(done: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

Deno.test("concurrent streams per caller and in total: ResourceExhausted / 429 before any upstream call", async (t) => {
  const upstream = await startSyntheticUpstream();
  const gw = await startGateway({
    host: "127.0.0.1",
    port: 0,
    grpcPort: 0,
    corsOrigins: [],
    maxStreams: 2,
    maxStreamsPerCaller: 1,
  }, {
    backend: new NodeGrpcRelayBackend({ url: upstream.url }),
    auth: auth(),
  });
  const held: { close: () => void }[] = [];
  try {
    // alice holds one stream open: her per-caller limit is reached. (Over
    // HTTP/2, so that closing it reaches the gateway at once: Deno's fetch
    // keeps an aborted HTTP/1.1 connection open.)
    held.push(await openRpc(gw, "gRPC", "alice", "t10000000"));
    equal(gw.gateway.limits.open, 1);

    await t.step(
      "a second stream of the same caller, on every protocol",
      async () => {
        const calls = upstream.sent.length;
        for (const protocol of RPC_PROTOCOLS) {
          const err = await expectConnectError(
            openRpc(gw, protocol, "alice", "t10"),
            Code.ResourceExhausted,
          );
          ok(/this caller already has 1 streams/.test(err.rawMessage));
        }
        const res = await fetch(ndjsonUrl(gw, "t10"), bearer("alice"));
        equal(res.status, 429);
        equal(res.headers.get("retry-after"), "1");
        equal((await res.json()).code, "resource_exhausted");
        equal(
          upstream.sent.length,
          calls,
          "a refused call reached the upstream",
        );
        equal(limitedCount(gw, "streams_per_caller"), 4);
      },
    );

    await t.step(
      "another caller still gets a stream; a third hits the total",
      async () => {
        held.push(await openRpc(gw, "Connect", "bob", "t10000000"));
        equal(gw.gateway.limits.open, 2);
        const calls = upstream.sent.length;
        for (const protocol of RPC_PROTOCOLS) {
          const err = await expectConnectError(
            openRpc(gw, protocol, "carol", "t10"),
            Code.ResourceExhausted,
          );
          ok(/maximum of 2 streams/.test(err.rawMessage));
        }
        const res = await fetch(ndjsonUrl(gw, "t10"), bearer("carol"));
        equal(res.status, 429);
        equal(res.headers.get("retry-after"), "1");
        await res.body?.cancel();
        equal(
          upstream.sent.length,
          calls,
          "a refused call reached the upstream",
        );
        equal(limitedCount(gw, "streams_total"), 4);
      },
    );

    await t.step("a finished stream frees its slot", async () => {
      held.shift()!.close();
      await waitFor(() => gw.gateway.limits.open === 1, "alice's slot freed");
      const tuples = [];
      for await (
        const m of client(gw, "gRPC-Web").getMetadataAllocated(
          { namespace: NAMESPACE, snapshotName: "t1000" },
          bearer("alice"),
        )
      ) tuples.push(m.blockMetadata.length);
      equal(tuples.reduce((a, n) => a + n, 0), 1000);
      const body = await (await fetch(
        ndjsonUrl(gw, "t10"),
        bearer("carol"),
      )).text();
      ok(body.includes('"type":"end"'), body);
    });
  } finally {
    for (const h of held) h.close();
    await gw.close();
    await upstream.close();
  }
});

Deno.test("max_results is clamped to --max-results", async () => {
  const upstream = await startSyntheticUpstream();
  const gw = await startGateway({
    host: "127.0.0.1",
    port: 0,
    grpcPort: 0,
    corsOrigins: [],
    maxResults: 100,
  }, { backend: new NodeGrpcRelayBackend({ url: upstream.url }) });
  try {
    for (const protocol of RPC_PROTOCOLS) {
      const sizes = [];
      for await (
        const m of client(gw, protocol).getMetadataAllocated({
          namespace: NAMESPACE,
          snapshotName: "t1000",
          maxResults: 5000,
        })
      ) sizes.push(m.blockMetadata.length);
      deepStrictEqual(sizes, Array(10).fill(100), protocol);
    }
    const records = (await (await fetch(
      ndjsonUrl(gw, "t1000", "?maxResults=5000"),
    )).text()).trim().split("\n").map((l) => JSON.parse(l));
    deepStrictEqual(
      records.filter((r) => r.type === "blocks").map((r) => r.blocks.length),
      Array(10).fill(100),
    );
  } finally {
    await gw.close();
    await upstream.close();
  }
});

/**
 * One segment of a stream under the duration limit: takes the first
 * message, waits out the limit (the client stalls), then reads on. Returns
 * the tuples' offsets and the offset the error says to resume from
 * (undefined when the segment completed the stream).
 */
type Segment = (
  startingOffset: number,
) => Promise<{ offsets: number[]; next?: number }>;

const LIMIT_S = 1;
const stallPastLimit = () =>
  new Promise((r) => setTimeout(r, LIMIT_S * 1000 + 300));

function rpcSegment(
  gw: RunningGateway,
  protocol: Protocol,
  snapshotName: string,
): Segment {
  return async (startingOffset) => {
    const offsets: number[] = [];
    let first = true;
    try {
      for await (
        const m of client(gw, protocol).getMetadataAllocated({
          namespace: NAMESPACE,
          snapshotName,
          startingOffset: BigInt(startingOffset),
          maxResults: 256,
        })
      ) {
        for (const b of m.blockMetadata) offsets.push(Number(b.byteOffset));
        if (first) await stallPastLimit();
        first = false;
      }
      return { offsets };
    } catch (e) {
      const err = ConnectError.from(e);
      equal(err.code, Code.ResourceExhausted, `${protocol}: ${err.message}`);
      ok(/maximum duration/.test(err.rawMessage), err.rawMessage);
      const next = err.metadata.get(NEXT_OFFSET_KEY);
      ok(next !== null, `${protocol}: no ${NEXT_OFFSET_KEY} in the error`);
      return { offsets, next: Number(next) };
    }
  };
}

function ndjsonSegment(gw: RunningGateway, snapshot: string): Segment {
  return async (startingOffset) => {
    const res = await fetch(
      ndjsonUrl(
        gw,
        snapshot,
        `?maxResults=256&startingOffset=${startingOffset}`,
      ),
    );
    equal(res.status, 200);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    const offsets: number[] = [];
    let text = "", stalled = false;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error("NDJSON stream ended without end or error");
      text += value;
      let nl;
      while ((nl = text.indexOf("\n")) >= 0) {
        const r = JSON.parse(text.slice(0, nl));
        text = text.slice(nl + 1);
        if (r.type === "blocks") {
          for (const b of r.blocks) offsets.push(b.offset);
          if (!stalled) await stallPastLimit();
          stalled = true;
        }
        if (r.type === "end") return { offsets };
        if (r.type === "error") {
          equal(r.code, "resource_exhausted", r.message);
          return { offsets, next: r.nextOffset };
        }
      }
    }
  };
}

Deno.test("the maximum stream duration ends streams resumably; resuming from the offset yields every tuple once", async (t) => {
  const upstream = await startSyntheticUpstream();
  const gw = await startGateway({
    host: "127.0.0.1",
    port: 0,
    grpcPort: 0,
    corsOrigins: [],
    maxStreamDurationSeconds: LIMIT_S,
  }, {
    // A small read-ahead bound, so each stalled segment gets a little of
    // the stream and the test resumes several times.
    backend: new NodeGrpcRelayBackend({
      url: upstream.url,
      readAheadBytes: 64 * 1024,
    }),
  });
  const tuples = 1_000_000;
  try {
    const segments: [string, Segment][] = [
      ...RPC_PROTOCOLS.map((p): [string, Segment] => [
        p,
        rpcSegment(gw, p, `t${tuples}`),
      ]),
      ["NDJSON", ndjsonSegment(gw, `t${tuples}`)],
    ];
    for (const [name, segment] of segments) {
      await t.step(name, async () => {
        const offsets: number[] = [];
        let cuts = 0;
        for (let from = 0;;) {
          const r = await segment(from);
          for (const o of r.offsets) offsets.push(o);
          if (r.next === undefined) break;
          cuts++;
          // Where the error says to resume is right after the last tuple received.
          equal(r.next, offsets.at(-1)! + BLOCK);
          from = r.next;
          ok(cuts < 50, "no progress");
        }
        ok(cuts >= 1, `${name}: the limit never cut the stream`);
        equal(offsets.length, tuples);
        offsets.forEach((o, i) => {
          if (o !== i * BLOCK) throw new Error(`${name}: tuple ${i} at ${o}`);
        });
      });
    }
    ok(limitedCount(gw, "stream_duration") >= segments.length);
  } finally {
    await gw.close();
    await upstream.close();
  }
});
