/**
 * Two gateway processes behind Debian's nginx, running the shipped
 * deploy/nginx/cbt-gateway.conf with both as upstream servers (README
 * "Long streams and failures"):
 *
 * - a stream ticket minted by one replica is honoured by the other (they
 *   share --ticket-secret); a replica with another key refuses it;
 * - SIGTERM to one replica while streams run: its streams end with
 *   Unavailable carrying the offset to resume from (NDJSON error record,
 *   Connect end-of-stream metadata and gRPC trailers `cbt-next-offset`,
 *   through nginx), resuming from there reaches the other replica and
 *   completes the stream exactly; new streams all go to the survivor.
 *
 * The replicas relay to a synthetic upstream whose `t<N>` streams have N
 * tuples at 0, 4096, …, so every stream's ground truth is known.
 */
import { equal, ok } from "node:assert/strict";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { SnapshotMetadata } from "../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import {
  type GatewayProcess,
  startGatewayProcess,
} from "./support/gateway-process.ts";
import { NEXT_OFFSET_KEY } from "../src/gateway/resumable-error.ts";
import { createUpstreamGrpcTransport } from "./support/grpc-transport.ts";
import { gatewayNginxConfig, startNginx } from "./support/nginx.ts";
import { startSyntheticUpstream } from "./support/synthetic-upstream.ts";

const BLOCK = 4096;
const SECRET = "replicas-share-this-key-of-32-bytes-or-more";

const portOf = (url: string) => Number(new URL(url).port);

/** nginx (shipped config) in front of every gateway given. */
function nginxFor(gateways: GatewayProcess[]) {
  const [first, ...more] = gateways;
  return startNginx(2, ([listenHttp, listenGrpc]) =>
    gatewayNginxConfig({
      listenHttp,
      listenGrpc,
      gatewayHttp: portOf(first.httpUrl),
      gatewayGrpc: portOf(first.grpcUrl),
      replicas: more.map((g) => ({
        gatewayHttp: portOf(g.httpUrl),
        gatewayGrpc: portOf(g.grpcUrl),
      })),
      readTimeout: "60s",
    }));
}

Deno.test("replicas share stream tickets", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "cbt-replicas-" });
  const gateways: GatewayProcess[] = [];
  try {
    // Sequentially: the first seeds the demo into the shared data dir.
    for (const secret of [SECRET, SECRET, "x" + SECRET]) {
      gateways.push(
        await startGatewayProcess([
          "--data-dir",
          dataDir,
          "--ticket-secret",
          secret,
        ]),
      );
    }
    const [a, b, stranger] = gateways;
    const snapshot = "/v1/namespaces/demo/snapshots/snap-2";
    const minted = await fetch(`${a.httpUrl}${snapshot}/stream-tickets`, {
      method: "POST",
    });
    equal(minted.status, 201);
    const { ticket } = await minted.json();
    const redeem = (gw: GatewayProcess) =>
      fetch(
        `${gw.httpUrl}${snapshot}/allocated?ticket=${
          encodeURIComponent(ticket)
        }`,
      );
    const atB = await redeem(b);
    equal(atB.status, 200);
    const records = (await atB.text()).trim().split("\n").map((l) =>
      JSON.parse(l)
    );
    equal(records.at(-1).type, "end");
    ok(records.at(-1).tuples > 0);
    // The check can fail: a replica with another key refuses the ticket.
    const atStranger = await redeem(stranger);
    equal(atStranger.status, 401);
    await atStranger.body?.cancel();
  } finally {
    await Promise.all(gateways.map((g) => g.stop()));
    await Deno.remove(dataDir, { recursive: true });
  }
});

/** A stream taken one message (or record) at a time. */
interface Reading {
  name: string;
  offsets: number[];
  /** Reads the rest; the resume offset if it ended with a resumable error. */
  rest(): Promise<number | undefined>;
}

async function rpcReading(
  name: string,
  client: ReturnType<typeof createClient<typeof SnapshotMetadata>>,
  snapshotName: string,
  startingOffset = 0,
): Promise<Reading> {
  const it = client.getMetadataAllocated({
    namespace: "ns",
    snapshotName,
    startingOffset: BigInt(startingOffset),
    maxResults: 2048,
  })[Symbol.asyncIterator]();
  const offsets: number[] = [];
  const take = (m: { blockMetadata: { byteOffset: bigint }[] }) => {
    for (const b of m.blockMetadata) offsets.push(Number(b.byteOffset));
  };
  const first = await it.next();
  if (!first.done) take(first.value);
  return {
    name,
    offsets,
    async rest() {
      try {
        for (let r = await it.next(); !r.done; r = await it.next()) {
          take(r.value);
        }
        return undefined;
      } catch (e) {
        const err = ConnectError.from(e);
        equal(err.code, Code.Unavailable, `${name}: ${err.message}`);
        const next = err.metadata.get(NEXT_OFFSET_KEY);
        ok(next !== null, `${name}: no ${NEXT_OFFSET_KEY}: ${err.message}`);
        return Number(next);
      }
    },
  };
}

async function ndjsonReading(
  name: string,
  url: string,
): Promise<Reading> {
  const res = await fetch(url);
  equal(res.status, 200, name);
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  const offsets: number[] = [];
  let text = "";
  /** Next record, or undefined at the end of the body. */
  const record = async () => {
    for (;;) {
      const nl = text.indexOf("\n");
      if (nl >= 0) {
        const r = JSON.parse(text.slice(0, nl));
        text = text.slice(nl + 1);
        if (r.type === "blocks") {
          for (const b of r.blocks) offsets.push(b.offset);
        }
        return r;
      }
      const { value, done } = await reader.read();
      if (done) return undefined;
      text += value;
    }
  };
  while ((await record())?.type !== "blocks") { /* header */ }
  return {
    name,
    offsets,
    async rest() {
      for (;;) {
        const r = await record();
        if (r === undefined) throw new Error(`${name}: cut without a record`);
        if (r.type === "end") return undefined;
        if (r.type === "error") {
          equal(r.code, "unavailable", `${name}: ${r.message}`);
          return r.nextOffset;
        }
      }
    },
  };
}

Deno.test("SIGTERM to one replica: its streams end resumably, resume on the other, new streams go there", async () => {
  const upstream = await startSyntheticUpstream();
  const gateways: GatewayProcess[] = [];
  let nginx;
  try {
    for (let i = 0; i < 2; i++) {
      gateways.push(
        await startGatewayProcess([
          "--backend",
          "grpc",
          "--upstream-url",
          upstream.url,
          "--ticket-secret",
          SECRET,
        ]),
      );
    }
    nginx = await nginxFor(gateways);
    const httpUrl = `http://127.0.0.1:${nginx.ports[0]}`;
    const grpcUrl = `http://127.0.0.1:${nginx.ports[1]}`;
    const tuples = 400_000;
    const snapshot = `t${tuples}`;
    const connect = createClient(
      SnapshotMetadata,
      createConnectTransport({ baseUrl: httpUrl, useBinaryFormat: true }),
    );
    const grpc = createClient(
      SnapshotMetadata,
      createUpstreamGrpcTransport({ baseUrl: grpcUrl }),
    );
    const ndjson = (from: number) =>
      `${httpUrl}/v1/namespaces/ns/snapshots/${snapshot}/allocated?maxResults=2048&startingOffset=${from}`;

    // Two of each, so round robin puts one of each on each replica; each
    // client takes its first message and stalls.
    const readings: Reading[] = [];
    for (let i = 0; i < 2; i++) {
      readings.push(await ndjsonReading(`NDJSON ${i}`, ndjson(0)));
      readings.push(await rpcReading(`Connect ${i}`, connect, snapshot));
      readings.push(await rpcReading(`gRPC ${i}`, grpc, snapshot));
    }
    const [doomed, survivor] = gateways;
    const stopped = doomed.stop(); // SIGTERM, then waits for the exit

    let cut = 0;
    for (const r of readings) {
      let next = await r.rest();
      while (next !== undefined) {
        cut++;
        // Where to resume is right after the last tuple received.
        equal(next, r.offsets.at(-1)! + BLOCK, r.name);
        const resumed = r.name.startsWith("NDJSON")
          ? await ndjsonReading(r.name, ndjson(next))
          : await rpcReading(
            r.name,
            r.name.startsWith("gRPC") ? grpc : connect,
            snapshot,
            next,
          );
        next = await resumed.rest();
        for (const o of resumed.offsets) r.offsets.push(o);
      }
      equal(r.offsets.length, tuples, r.name);
      r.offsets.forEach((o, i) => {
        if (o !== i * BLOCK) throw new Error(`${r.name}: tuple ${i} at ${o}`);
      });
    }
    console.log(
      `SIGTERM cut ${cut} of ${readings.length} running streams; each resumed on the other replica`,
    );
    ok(cut >= 3, `only ${cut} streams were cut by the SIGTERM`);
    await stopped;

    // The survivor takes every new stream, whichever replica nginx tries first.
    for (let i = 0; i < 4; i++) {
      const r = await ndjsonReading(`new NDJSON ${i}`, ndjson(0));
      equal(await r.rest(), undefined);
      const c = await rpcReading(`new Connect ${i}`, connect, "t5000");
      equal(await c.rest(), undefined);
      equal(c.offsets.length, 5000);
      const g = await rpcReading(`new gRPC ${i}`, grpc, "t5000");
      equal(await g.rest(), undefined);
      equal(g.offsets.length, 5000);
    }
    ok(survivor.pid > 0);
  } finally {
    await nginx?.close();
    await Promise.all(gateways.map((g) => g.stop()));
    await upstream.close();
  }
});
