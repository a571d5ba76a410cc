/**
 * Soak (issue 13, item 4): SOAK_STREAMS concurrent full-speed streams
 * (default 200, as CI runs it), spread over every protocol, through a
 * gateway process in relay mode in front of a synthetic upstream. Each
 * stream is read to its end and checked against ground truth — the
 * upstream's plan, `t<N>`: N blocks of 4 KiB at offsets 0, 4096, … — so
 * nothing lost, duplicated or reordered. With SOAK_SECONDS > 0 (`deno task
 * soak`: 500 streams for 10 minutes) every worker keeps opening streams
 * until the time is up. No errors allowed; the gateway's peak RSS is
 * reported.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import * as http2 from "node:http2";
import { memory } from "../bench/processes.ts";
import { startGatewayProcess } from "./support/gateway-process.ts";
import { startSyntheticUpstream } from "./support/synthetic-upstream.ts";
import {
  openStream,
  STREAM_PROTOCOLS,
  type StreamTarget,
} from "./support/stream-clients.ts";

const STREAMS = Number(Deno.env.get("SOAK_STREAMS") ?? 200);
const SECONDS = Number(Deno.env.get("SOAK_SECONDS") ?? 0);
/** Blocks per stream: enough for many messages, few enough for CI. */
const BLOCKS = Number(Deno.env.get("SOAK_BLOCKS") ?? 16384);
const BLOCK = 4096;
const MiB = 2 ** 20;
/** A ceiling for the peak RSS (measured: see README "Reliability"). */
const PEAK_RSS_BOUND = 768 * MiB;

Deno.test(`soak: ${STREAMS} concurrent full-speed streams${SECONDS ? ` for ${SECONDS} s` : ""}, every one complete and exact`, async () => {
  const upstream = await startSyntheticUpstream();
  const gw = await startGatewayProcess([
    "--backend",
    "grpc",
    "--upstream-url",
    upstream.url,
  ]);
  const sessions: http2.ClientHttp2Session[] = [];
  // Streams share a few HTTP/2 connections, as real clients would.
  const target = (i: number): StreamTarget => ({
    httpUrl: gw.httpUrl,
    grpcSession: () => {
      const k = i % 4;
      if (!sessions[k] || sessions[k].closed || sessions[k].destroyed) {
        sessions[k] = http2.connect(gw.grpcUrl);
        sessions[k].on("error", () => {});
      }
      return sessions[k];
    },
  });
  const expected = Array.from({ length: BLOCKS }, (_, i) => i * BLOCK);
  const failures: string[] = [];
  let completed = 0, tuples = 0;
  const until = Date.now() + SECONDS * 1000;
  const started = performance.now();
  try {
    await Promise.all(
      Array.from({ length: STREAMS }, async (_, i) => {
        const protocol = STREAM_PROTOCOLS[i % STREAM_PROTOCOLS.length];
        do {
          const r = await openStream(protocol, target(i), {
            namespace: "ns",
            snapshot: `t${BLOCKS}`,
            maxResults: 2048,
            timeoutMs: 300_000,
          });
          if (r.code !== "ok") {
            failures.push(`${protocol} #${i}: ${r.code} ${r.message ?? ""}`);
            return;
          }
          try {
            deepEqual(r.offsets, expected);
          } catch {
            failures.push(
              `${protocol} #${i}: ${r.offsets.length} tuples, not the ${BLOCKS} expected in order`,
            );
            return;
          }
          completed++;
          tuples += r.offsets.length;
        } while (Date.now() < until);
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    const peak = memory(gw.pid).peak;
    console.log(
      `soak: ${STREAMS} concurrent streams, ${completed} completed exact (${tuples} tuples) in ${
        seconds.toFixed(1)
      } s; ${failures.length} failed; gateway peak RSS ${
        (peak / MiB).toFixed(0)
      } MiB`,
    );
    equal(failures.length, 0, failures.slice(0, 20).join("\n"));
    ok(completed >= STREAMS);
    ok(peak <= PEAK_RSS_BOUND, `peak RSS ${(peak / MiB).toFixed(0)} MiB`);
  } finally {
    for (const s of sessions) s?.close();
    await gw.stop();
    await upstream.close();
  }
});
