/**
 * The read-ahead bound (`--read-ahead-bytes`, README "Long streams and
 * failures"): clients on every protocol stall mid-stream on a long
 * synthetic volume, and the upstream — which counts what it has been able
 * to write, honouring HTTP/2 flow control — stops within the bound plus
 * the documented slack. Gateway RSS stays O(streams × bound). Then stalled
 * clients read on and get their whole stream.
 *
 * Clients speak HTTP/2 (node:http2, default 64 KiB stream window) to both
 * ports, so the only buffers between the gateway and the stalled reader are
 * that window and the client's 16 KiB read buffer. One more client speaks
 * HTTP/1.1 over a bare TCP socket: there the kernel's socket buffers hold
 * whatever the gateway wrote (up to tcp_wmem's 4 MiB on loopback), so the
 * test reads their fill from `ss` and counts it as slack.
 *
 * What the clients have consumed is counted as zero (they took one DATA
 * frame, less than one upstream message), so the check is conservative.
 */
import * as http2 from "node:http2";
import { equal, ok } from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { GetMetadataAllocatedRequestSchema } from "../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import { memory } from "../bench/processes.ts";
import { startGatewayProcess } from "./support/gateway-process.ts";
import { startSyntheticUpstream } from "./support/synthetic-upstream.ts";
import { EnvelopeSplitter } from "./support/envelope-splitter.ts";
import { scanMetadataMessage } from "../src/wire/metadata-message.ts";

const MiB = 2 ** 20;
const BOUND = 1 * MiB;
/**
 * Bytes the upstream may have written beyond the bound without the gateway
 * holding them: the client's stream window (64 KiB) and read buffer
 * (16 KiB), the upstream's own write buffer and socket (it lives in this
 * process), and one message in flight on each hop.
 */
const SLACK = 512 * 1024;
/** 2M tuples: ~22 MiB of upstream stream, 20× the bound. */
const TUPLES = 2_000_000;
const SNAPSHOT = `t${TUPLES}`;
const MAX_RESULTS = 2048;
const ALLOCATED = "/snapshotmetadata.SnapshotMetadata/GetMetadataAllocated";
const STREAMS_PER_PROTOCOL = 4;

const requestBytes = () =>
  toBinary(
    GetMetadataAllocatedRequestSchema,
    create(GetMetadataAllocatedRequestSchema, {
      namespace: "ns",
      snapshotName: SNAPSHOT,
      maxResults: MAX_RESULTS,
    }),
  );

interface Protocol {
  name: string;
  port: "http" | "grpc";
  headers: http2.OutgoingHttpHeaders;
  body?: Uint8Array;
}

const PROTOCOLS: Protocol[] = [
  {
    name: "gRPC",
    port: "grpc",
    headers: {
      ":method": "POST",
      ":path": ALLOCATED,
      "content-type": "application/grpc+proto",
      te: "trailers",
    },
    body: encodeEnvelope(0, requestBytes()),
  },
  {
    name: "Connect",
    port: "http",
    headers: {
      ":method": "POST",
      ":path": ALLOCATED,
      "content-type": "application/connect+proto",
      "connect-protocol-version": "1",
    },
    body: encodeEnvelope(0, requestBytes()),
  },
  {
    name: "gRPC-Web",
    port: "http",
    headers: {
      ":method": "POST",
      ":path": ALLOCATED,
      "content-type": "application/grpc-web+proto",
    },
    body: encodeEnvelope(0, requestBytes()),
  },
  {
    name: "Connect JSON",
    port: "http",
    headers: {
      ":method": "POST",
      ":path": ALLOCATED,
      "content-type": "application/connect+json",
      "connect-protocol-version": "1",
    },
    body: encodeEnvelope(
      0,
      new TextEncoder().encode(JSON.stringify({
        namespace: "ns",
        snapshotName: SNAPSHOT,
        maxResults: MAX_RESULTS,
      })),
    ),
  },
  {
    name: "NDJSON",
    port: "http",
    headers: {
      ":method": "GET",
      ":path":
        `/v1/namespaces/ns/snapshots/${SNAPSHOT}/allocated?maxResults=${MAX_RESULTS}`,
    },
  },
  {
    name: "SSE",
    port: "http",
    headers: {
      ":method": "GET",
      ":path":
        `/v1/namespaces/ns/snapshots/${SNAPSHOT}/allocated?maxResults=${MAX_RESULTS}`,
      accept: "text/event-stream",
    },
  },
];

/** A client stream that took its first DATA frame and stopped reading. */
interface Stalled {
  protocol: string;
  /** Index of its call in the upstream's `sent`. */
  upstreamIndex: number;
  stream: http2.ClientHttp2Stream;
  /** Resolves with the tuples received once the stream has ended. */
  tuples: Promise<number>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `read` until it stops changing for a second (or 30 s pass). */
async function settled(read: () => number): Promise<number> {
  let last = read(), still = 0;
  for (const end = Date.now() + 30_000; Date.now() < end && still < 5;) {
    await sleep(200);
    const now = read();
    still = now === last ? still + 1 : 0;
    last = now;
  }
  return last;
}

/** Bytes queued in the kernel for a loopback connection (both ends), via `ss`. */
async function socketQueued(localPort: number, peerPort: number) {
  const out = await new Deno.Command("ss", {
    args: ["-tnH", "state", "established"],
  }).output();
  let queued = 0;
  for (const line of new TextDecoder().decode(out.stdout).split("\n")) {
    const [recvQ, sendQ, local, peer] = line.trim().split(/\s+/);
    const ends = [local, peer].map((a) => Number(a?.split(":").pop()));
    if (
      ends.includes(localPort) && ends.includes(peerPort)
    ) queued += Number(recvQ) + Number(sendQ);
  }
  return queued;
}

Deno.test("a stalled client stalls its upstream within the read-ahead bound, on every protocol", async (t) => {
  const upstream = await startSyntheticUpstream();
  const gw = await startGatewayProcess([
    "--backend",
    "grpc",
    "--upstream-url",
    upstream.url,
    "--read-ahead-bytes",
    String(BOUND),
  ]);
  const sessions = {
    http: http2.connect(gw.httpUrl),
    grpc: http2.connect(gw.grpcUrl),
  };
  for (const s of Object.values(sessions)) s.on("error", () => {});
  const stalled: Stalled[] = [];
  let tcp: Deno.TcpConn | undefined;
  try {
    // Warm up (JIT, buffers), then take the baseline.
    const warmUp = upstream.sent.length;
    const whole = sessions.grpc.request(PROTOCOLS[0].headers);
    whole.end(PROTOCOLS[0].body);
    equal(await countTuples(whole, "gRPC"), TUPLES);
    const streamBytes = upstream.sent[warmUp];
    await settled(() => memory(gw.pid).rss);
    const baseline = memory(gw.pid).rss;

    for (const protocol of PROTOCOLS) {
      for (let i = 0; i < STREAMS_PER_PROTOCOL; i++) {
        // One at a time, so the upstream's call order is ours.
        const upstreamIndex = upstream.sent.length;
        const stream = sessions[protocol.port].request(protocol.headers);
        stream.end(protocol.body);
        const tuples = countTuples(stream, protocol.name);
        tuples.catch(() => {}); // most are cancelled at the end
        await new Promise<void>((resolve) =>
          stream.once("data", () => {
            stream.pause();
            resolve();
          })
        );
        stalled.push({
          protocol: protocol.name,
          upstreamIndex,
          stream,
          tuples,
        });
      }
    }
    const total = await settled(() =>
      stalled.reduce((a, s) => a + upstream.sent[s.upstreamIndex], 0)
    );
    const rss = memory(gw.pid).rss;

    await t.step("each stalled stream: upstream lead ≤ bound + slack", () => {
      const leads = new Map<string, number>();
      for (const s of stalled) {
        const lead = upstream.sent[s.upstreamIndex];
        leads.set(s.protocol, Math.max(leads.get(s.protocol) ?? 0, lead));
        ok(
          lead <= BOUND + SLACK,
          `${s.protocol}: upstream ran ${(lead / MiB).toFixed(2)} MiB ahead`,
        );
        // The stream is long enough that an unbounded relay would show.
        ok(lead * 10 < streamBytes, `${s.protocol}: stream too short`);
      }
      console.log(
        `read-ahead bound ${
          BOUND / MiB
        } MiB; largest upstream lead while stalled: ` +
          [...leads].map(([p, l]) => `${p} ${(l / MiB).toFixed(2)} MiB`)
            .join(", ") +
          `; ${stalled.length} stalled streams, ${
            (total / MiB).toFixed(1)
          } MiB sent in all`,
      );
    });

    await t.step("gateway RSS is O(streams × bound)", () => {
      const grew = rss - baseline;
      console.log(
        `gateway RSS ${(baseline / MiB).toFixed(0)} MiB idle → ${
          (rss / MiB).toFixed(0)
        } MiB with ${stalled.length} stalled streams`,
      );
      // Per stream: the bound, plus the JSON fronts' expansion of the one
      // run they are writing (~4.6× a quarter of the bound); plus 48 MiB
      // for the allocator and JIT.
      ok(
        grew < stalled.length * 3 * BOUND + 48 * MiB,
        `gateway RSS grew ${(grew / MiB).toFixed(0)} MiB`,
      );
    });

    await t.step(
      "stalled clients read on and get the whole stream",
      async () => {
        for (const name of ["gRPC", "Connect", "NDJSON"]) {
          const s = stalled.find((x) => x.protocol === name)!;
          s.stream.resume();
          equal(await s.tuples, TUPLES, name);
          equal(upstream.sent[s.upstreamIndex], streamBytes, name);
        }
      },
    );

    await t.step(
      "HTTP/1.1: lead ≤ bound + slack + the kernel's socket buffers",
      async () => {
        const port = Number(new URL(gw.httpUrl).port);
        tcp = await Deno.connect({ hostname: "127.0.0.1", port });
        const upstreamIndex = upstream.sent.length;
        const body = encodeEnvelope(0, requestBytes());
        await tcp.write(new TextEncoder().encode(
          `POST ${ALLOCATED} HTTP/1.1\r\nhost: 127.0.0.1\r\n` +
            "content-type: application/connect+proto\r\n" +
            `connect-protocol-version: 1\r\ncontent-length: ${body.length}\r\n\r\n`,
        ));
        await tcp.write(body);
        await tcp.read(new Uint8Array(1024)); // headers and a little more
        const lead = await settled(() => upstream.sent[upstreamIndex]);
        const kernel = await socketQueued(tcp.localAddr.port, port);
        console.log(
          `HTTP/1.1 Connect client stalled: upstream lead ${
            (lead / MiB).toFixed(2)
          } MiB, of which ${(kernel / MiB).toFixed(2)} MiB in socket buffers`,
        );
        ok(
          lead - kernel <= BOUND + SLACK,
          `upstream ran ${((lead - kernel) / MiB).toFixed(2)} MiB ahead`,
        );
        ok(lead * 2 < streamBytes, "stream too short");
      },
    );
  } finally {
    tcp?.close();
    for (const s of stalled) s.stream.close(http2.constants.NGHTTP2_CANCEL);
    for (const s of Object.values(sessions)) s.close();
    await gw.stop();
    await upstream.close();
  }
});

/**
 * Counts the tuples a client stream delivers, from its first byte; resolves
 * at its end. Pausing the stream pauses the count.
 */
function countTuples(
  stream: http2.ClientHttp2Stream,
  protocol: string,
): Promise<number> {
  return new Promise((resolve, reject) => {
    let tuples = 0;
    const splitter = new EnvelopeSplitter();
    const envelopes: { flags: number; data: Uint8Array }[] = [];
    let text = "";
    const decoder = new TextDecoder();
    const record = (json: string) => {
      const r = JSON.parse(json);
      if (r.type === "blocks") tuples += r.blocks.length;
      if (r.type === "error") throw new Error(r.message);
    };
    stream.on("data", (chunk: Uint8Array) => {
      try {
        if (protocol === "NDJSON" || protocol === "SSE") {
          text += decoder.decode(chunk, { stream: true });
          let nl;
          while ((nl = text.indexOf("\n")) >= 0) {
            const line = text.slice(0, nl);
            text = text.slice(nl + 1);
            if (protocol === "NDJSON") record(line);
            else if (line.startsWith("data: ")) record(line.slice(6));
          }
          return;
        }
        splitter.push(chunk, envelopes);
        for (const e of envelopes) {
          if (e.flags !== 0) continue;
          tuples += protocol === "Connect JSON"
            ? JSON.parse(decoder.decode(e.data)).blockMetadata.length
            : scanMetadataMessage(e.data, () => {}).tuples;
        }
        envelopes.length = 0;
      } catch (e) {
        stream.close(http2.constants.NGHTTP2_CANCEL);
        reject(e);
      }
    });
    stream.on("end", () => resolve(tuples));
    stream.on("error", reject);
  });
}
