/**
 * Memory bounds of a gateway process (`--backend grpc`, run as a subprocess
 * so /proc shows its RSS alone):
 *
 * 1. A consumer 10× slower than the upstream over a long stream: gateway RSS
 *    stays flat, and what the upstream has sent stays within a few MiB of what
 *    the consumer has read (end-to-end backpressure, no unbounded buffer).
 *    Run over native gRPC and Connect JSON (the latter still goes through
 *    connect-es, whose 2.3.0 kept every message alive: this guards the pin).
 * 2. 200 concurrent streams, all open at once: RSS under a stated bound.
 *
 * The upstream is a synthetic snapshot-metadata server in this process that
 * generates an arbitrarily long FIXED_LENGTH stream (a file-backed volume
 * big enough for this would need tens of GB on disk) and counts what it
 * has written, honouring HTTP/2 flow control.
 */
import * as http2 from "node:http2";
import { equal, ok } from "node:assert/strict";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { scanMetadataMessage } from "../src/wire/metadata-message.ts";
import {
  type Envelope,
  EnvelopeSplitter,
  rawGrpcCall,
} from "../src/upstream/grpc-relay-call.ts";
import { memory, startGatewayProcess } from "../bench/processes.ts";
import { startSyntheticUpstream } from "./support/synthetic-upstream.ts";

const MiB = 2 ** 20;
const BLOCK = 4096;
const ALLOCATED = "/snapshotmetadata.SnapshotMetadata/GetMetadataAllocated";

/** Reads a stream, calling `pace(tuplesSoFar, bytesSoFar)` after each message. */
interface Reader {
  (
    snapshot: string,
    maxResults: number,
    pace: (tuples: number, bytes: number) => Promise<void>,
  ): Promise<number>;
}

function grpcReader(session: http2.ClientHttp2Session): Reader {
  return async (snapshot, maxResults, pace) => {
    const body = new Uint8Array([
      0x12,
      2,
      0x6e,
      0x73, // namespace "ns"
      0x1a,
      snapshot.length,
      ...new TextEncoder().encode(snapshot),
      0x28,
      ...varint(maxResults),
    ]);
    let tuples = 0, bytes = 0;
    for await (
      const m of rawGrpcCall(session, ALLOCATED, body, {
        signal: new AbortController().signal,
      })
    ) {
      tuples += scanMetadataMessage(m, () => {}).tuples;
      bytes += m.length + 5;
      await pace(tuples, bytes);
    }
    return tuples;
  };
}

function connectJsonReader(httpUrl: string): Reader {
  return async (snapshot, maxResults, pace) => {
    const res = await fetch(httpUrl + ALLOCATED, {
      method: "POST",
      headers: {
        "content-type": "application/connect+json",
        "connect-protocol-version": "1",
      },
      body: encodeEnvelope(
        0,
        new TextEncoder().encode(
          JSON.stringify({
            namespace: "ns",
            snapshotName: snapshot,
            maxResults,
          }),
        ),
      ),
    });
    equal(res.status, 200);
    const splitter = new EnvelopeSplitter();
    const out: Envelope[] = [];
    let tuples = 0, bytes = 0, ended = false;
    const dec = new TextDecoder();
    for await (const chunk of res.body!) {
      splitter.push(chunk, out);
      for (const e of out) {
        if (e.flags === 0) {
          tuples += JSON.parse(dec.decode(e.data)).blockMetadata.length;
          bytes += e.data.length + 5;
          await pace(tuples, bytes);
        } else {
          equal(JSON.parse(dec.decode(e.data)).error, undefined);
          ended = true;
        }
      }
      out.length = 0;
    }
    ok(ended, "Connect stream ended without its end frame");
    return tuples;
  };
}

function varint(n: number): number[] {
  const out = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("gateway memory stays bounded under slow consumers and many streams", async (t) => {
  const upstream = await startSyntheticUpstream();
  const gw = await startGatewayProcess([
    "--backend",
    "grpc",
    "--upstream-url",
    upstream.url,
  ]);
  const session = http2.connect(gw.grpcUrl);
  session.on("error", () => {});
  try {
    const grpc = grpcReader(session);

    // The upstream → gateway → consumer speed with nobody holding back.
    const fastTuples = 1_000_000;
    const t0 = performance.now();
    equal(
      await grpc(`t${fastTuples}`, 2048, () => Promise.resolve()),
      fastTuples,
    );
    const fastRate = fastTuples / ((performance.now() - t0) / 1000);

    await t.step("a consumer 10x slower: RSS flat, lag bounded", async () => {
      // Each slow stream runs ~30 s at a tenth of the fast rate (two at once).
      const seconds = 30;
      const rate = fastRate / 10;
      const total = Math.round((rate * seconds) / 2048) * 2048;
      const samples: number[] = [];
      let maxLag = 0;
      const sampler = setInterval(() => samples.push(memory(gw.pid).rss), 500);
      const slow = (reader: Reader, streamIndex: () => number) => {
        const start = performance.now();
        return reader(`t${total}`, 2048, async (tuples, bytes) => {
          const lag = upstream.sent[streamIndex()] - bytes;
          if (lag > maxLag) maxLag = lag;
          const due = (tuples / rate) * 1000 - (performance.now() - start);
          if (due > 0) await sleep(due);
        });
      };
      const grpcIndex = upstream.sent.length;
      const jsonIndex = grpcIndex + 1;
      const grpcDone = slow(grpc, () => grpcIndex);
      // Keep the stream order deterministic: the JSON request goes second.
      while (upstream.sent.length <= grpcIndex) await sleep(5);
      const jsonDone = slow(connectJsonReader(gw.httpUrl), () => jsonIndex);
      const [a, b] = await Promise.all([grpcDone, jsonDone]);
      clearInterval(sampler);
      equal(a, total);
      equal(b, total);
      const wireBytes = upstream.sent[grpcIndex];
      // After the first quarter (JIT, buffers filling), RSS must not climb.
      const settled = samples.slice(Math.floor(samples.length / 4));
      const baseline = Math.min(...settled.slice(0, 4));
      const peak = Math.max(...settled);
      console.log(
        `fast ${
          Math.round(fastRate)
        } tuples/s; slow streams of ${total} tuples ` +
          `(${(total * BLOCK / 2 ** 30).toFixed(1)} GiB volume, ${
            (wireBytes / MiB).toFixed(1)
          } MiB on the wire) ` +
          `at ${Math.round(rate)} tuples/s each; gateway RSS ${
            (baseline / MiB).toFixed(0)
          } → ` +
          `peak ${(peak / MiB).toFixed(0)} MiB; max upstream lead ${
            (maxLag / MiB).toFixed(1)
          } MiB`,
      );
      ok(
        peak - baseline < 64 * MiB,
        `gateway RSS grew ${
          ((peak - baseline) / MiB).toFixed(0)
        } MiB during slow streams`,
      );
      // Windows and buffers on two hops, not the stream: well under its size.
      ok(
        maxLag < 16 * MiB,
        `upstream ran ${(maxLag / MiB).toFixed(1)} MiB ahead`,
      );
      ok(
        maxLag < wireBytes / 2,
        "the test stream is too short to show backpressure",
      );
    });

    await t.step("200 concurrent streams stay under 448 MiB RSS", async () => {
      const n = 200, each = 200_000;
      const sessions = Array.from({ length: 4 }, () => {
        const s = http2.connect(gw.grpcUrl);
        s.on("error", () => {});
        return s;
      });
      let opened = 0;
      const allOpen = Promise.withResolvers<void>();
      let peak = 0;
      const results = await Promise.all(
        Array.from({ length: n }, (_, i) => {
          let first = true;
          return grpcReader(sessions[i % sessions.length])(
            `t${each}`,
            256,
            async () => {
              if (!first) return;
              first = false;
              // Hold every stream after its first message until all are open.
              if (++opened === n) allOpen.resolve();
              await allOpen.promise;
              peak = Math.max(peak, memory(gw.pid).rss);
            },
          );
        }),
      );
      for (const s of sessions) s.close();
      for (const r of results) equal(r, each);
      console.log(
        `200 streams open: gateway RSS ${(peak / MiB).toFixed(0)} MiB`,
      );
      ok(
        peak < 448 * MiB,
        `gateway RSS ${(peak / MiB).toFixed(0)} MiB with 200 streams`,
      );
    });
  } finally {
    session.close();
    await gw.stop();
    await upstream.close();
  }
});
