/**
 * Fault runs (issue 13, item 1): FAULT_RUNS seeded runs (default 200; `deno
 * task soak` runs 1,000), each one stream through a fault proxy that
 * resets, truncates mid-frame, half-closes, delays, stalls or throttles at
 * a random byte — on the client side (in front of the gateway's HTTP or
 * gRPC port) or on the upstream side (between a relay-mode gateway process
 * and a synthetic upstream). Every run is compared with ground truth (the
 * upstream's plan `t<N>`: N blocks of 4 KiB at 0, 4096, …):
 *
 * - the tuples received are always an exact prefix: nothing lost,
 *   duplicated or reordered;
 * - a stream that says it ended well is complete;
 * - a fault that loses nothing (delay, stall, throttle) costs nothing: the
 *   stream completes;
 * - an upstream-side break is resumed by the gateway (relay/resume.ts, on by
 *   default): the stream completes. The one exception is a break before the
 *   gateway relayed any message, which resume leaves alone by design: then
 *   a clean Unavailable with no tuples at all;
 * - a client-side break leaves the client knowing the stream is incomplete
 *   (no end record / status), never a partial stream that looks whole.
 *
 * A failing run prints its seed and number: FAULT_SEED=<s> FAULT_RUN=<n>.
 */
import { equal } from "node:assert/strict";
import * as http2 from "node:http2";
import { startGatewayProcess } from "./support/gateway-process.ts";
import { startSyntheticUpstream } from "./support/synthetic-upstream.ts";
import {
  openStream,
  STREAM_PROTOCOLS,
  type StreamResult,
} from "./support/stream-clients.ts";
import {
  DESTRUCTIVE,
  FAULT_KINDS,
  type FaultPlan,
  startFaultProxy,
} from "./support/fault-proxy.ts";
import { Rng } from "./support/images.ts";
import { settle } from "./support/process-stats.ts";

const RUNS = Number(Deno.env.get("FAULT_RUNS") ?? 200);
const SEED = Number(Deno.env.get("FAULT_SEED") ?? Date.now() % 2 ** 31);
const ONLY = Deno.env.get("FAULT_RUN");
const BLOCKS = 1024;
const BLOCK = 4096;
const RUN_TIMEOUT_MS = 15_000;

/** What is wrong with one run's result, if anything. */
function judge(
  r: StreamResult,
  plan: FaultPlan,
  side: "client" | "upstream",
): string | undefined {
  for (let i = 0; i < r.offsets.length; i++) {
    if (r.offsets[i] !== i * BLOCK) {
      return `tuple ${i} at ${r.offsets[i]}, expected ${
        i * BLOCK
      } (lost, duplicated or reordered)`;
    }
  }
  if (r.offsets.length > BLOCKS) {
    return `${r.offsets.length} tuples, more than ${BLOCKS}`;
  }
  const complete = r.offsets.length === BLOCKS;
  if (r.code === "ok") {
    return complete
      ? undefined
      : `ended ok after ${r.offsets.length} of ${BLOCKS} tuples`;
  }
  if (r.code === "aborted") return `no end within ${RUN_TIMEOUT_MS} ms (hang)`;
  if (!DESTRUCTIVE.has(plan.kind)) {
    return `${plan.kind} lost the stream: ${r.code} ${r.message ?? ""}`;
  }
  if (side === "upstream") {
    // Only a break before the first message reaches the client this way;
    // any later one is resumed and must have completed above.
    if (r.code !== "unavailable" || r.offsets.length !== 0) {
      return `upstream break ended with ${r.code} ${
        r.message ?? ""
      } after ${r.offsets.length} tuples, expected a resumed, complete stream`;
    }
  }
  return undefined;
}

Deno.test(`fault proxy: ${RUNS} seeded runs, every one exact, resumed, or a clean error (seed ${SEED})`, async () => {
  const upstream = await startSyntheticUpstream();
  const upstreamProxy = startFaultProxy({
    port: Number(new URL(upstream.url).port),
  });
  const gw = await startGatewayProcess([
    "--backend",
    "grpc",
    "--upstream-url",
    `http://127.0.0.1:${upstreamProxy.port}`,
  ]);
  const httpProxy = startFaultProxy({ port: Number(new URL(gw.httpUrl).port) });
  const grpcProxy = startFaultProxy({ port: Number(new URL(gw.grpcUrl).port) });
  console.log(`fault seed ${SEED} (replay: FAULT_SEED=${SEED})`);
  const failures: string[] = [];
  const tally = new Map<string, number>();
  try {
    // Bytes a whole stream takes downstream of each proxy, per protocol, so
    // faults land anywhere in it (and some after its end).
    const size = new Map<string, number>();
    for (const protocol of STREAM_PROTOCOLS) {
      for (const side of ["client", "upstream"] as const) {
        const proxy = side === "upstream"
          ? upstreamProxy
          : protocol === "grpc"
          ? grpcProxy
          : httpProxy;
        proxy.arm({ kind: "delay", at: Number.MAX_SAFE_INTEGER, ms: 0 });
        const session = http2.connect(
          `http://127.0.0.1:${
            side === "client" ? grpcProxy.port : new URL(gw.grpcUrl).port
          }`,
        );
        session.on("error", () => {});
        const r = await openStream(protocol, {
          httpUrl: side === "client"
            ? `http://127.0.0.1:${httpProxy.port}`
            : gw.httpUrl,
          grpcSession: () => session,
        }, {
          namespace: "ns",
          snapshot: `t${BLOCKS}`,
          maxResults: 128,
          timeoutMs: RUN_TIMEOUT_MS,
        });
        session.close();
        equal(r.code, "ok", `clean run ${protocol}`);
        size.set(`${side}/${protocol}`, Math.max(r.bytes, 4096));
      }
    }
    const runs = ONLY !== undefined
      ? [Number(ONLY)]
      : Array.from({ length: RUNS }, (_, i) => i);
    for (const run of runs) {
      const rng = new Rng((SEED * 7919 + run * 104729 + 1) >>> 0);
      rng.next();
      const protocol = STREAM_PROTOCOLS[rng.int(STREAM_PROTOCOLS.length)];
      const side = rng.int(2) === 0 ? "client" : "upstream";
      const kind = FAULT_KINDS[rng.int(FAULT_KINDS.length)];
      const plan: FaultPlan = {
        kind,
        at: rng.int(Math.ceil(size.get(`${side}/${protocol}`)! * 1.1)),
        ms: kind === "stall"
          ? 300 + rng.int(700)
          : kind === "throttle"
          ? 1 + rng.int(2)
          : 10 + rng.int(150),
      };
      const proxy = side === "upstream"
        ? upstreamProxy
        : protocol === "grpc"
        ? grpcProxy
        : httpProxy;
      for (const p of [upstreamProxy, httpProxy, grpcProxy]) p.arm(undefined);
      proxy.arm(plan);
      // A connection of its own per run: a broken one must not carry over.
      const session = http2.connect(
        `http://127.0.0.1:${
          side === "client" ? grpcProxy.port : new URL(gw.grpcUrl).port
        }`,
      );
      session.on("error", () => {});
      const r = await openStream(protocol, {
        httpUrl: side === "client"
          ? `http://127.0.0.1:${httpProxy.port}`
          : gw.httpUrl,
        grpcSession: () => session,
      }, {
        namespace: "ns",
        snapshot: `t${BLOCKS}`,
        maxResults: 128,
        timeoutMs: RUN_TIMEOUT_MS,
      });
      session.close();
      const verdict = judge(r, plan, side);
      const outcome = r.code === "ok" ? "complete" : `${r.code}`;
      tally.set(
        `${side} ${kind} → ${outcome}`,
        (tally.get(`${side} ${kind} → ${outcome}`) ?? 0) + 1,
      );
      if (verdict) {
        failures.push(
          `FAULT_SEED=${SEED} FAULT_RUN=${run} ${side} ${protocol} ${kind}@${plan.at} (${plan.ms} ms): ${verdict}`,
        );
      }
    }
    for (const p of [upstreamProxy, httpProxy, grpcProxy]) p.arm(undefined);
    const open = await settle(() => upstream.openStreams(), 0, 10_000);
    console.log(
      `fault runs: ${runs.length}, ${failures.length} failed; upstream open streams after: ${open}\n  ${
        [...tally].sort().map(([k, n]) => `${k}: ${n}`).join("\n  ")
      }`,
    );
    equal(failures.length, 0, failures.slice(0, 30).join("\n"));
    equal(open, 0, "upstream streams left open");
  } finally {
    for (const p of [upstreamProxy, httpProxy, grpcProxy]) await p.close();
    await gw.stop();
    await upstream.close();
  }
});

/**
 * The proxy itself: a throttle ends when the proxy is re-armed. The gateway
 * keeps its upstream connection across runs; a throttle that outlived its
 * run once slowed a later run to 512 bytes per stall-length pause (the
 * "1 in 100 stall runs never ends" finding).
 */
Deno.test("fault proxy: a throttle belongs to its run and ends when re-armed", async () => {
  const server = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  // Per byte the client sends, the server answers with 4 KiB.
  const serving = (async () => {
    for await (const conn of server) {
      (async () => {
        const one = new Uint8Array(1);
        while ((await conn.read(one)) !== null) {
          await conn.write(new Uint8Array(4096).fill(one[0]));
        }
        conn.close();
      })().catch(() => {});
    }
  })().catch(() => {});
  const proxy = startFaultProxy({
    port: (server.addr as Deno.NetAddr).port,
  });
  const client = await Deno.connect({
    hostname: "127.0.0.1",
    port: proxy.port,
  });
  const readBytes = async (n: number) => {
    const buf = new Uint8Array(n);
    for (let at = 0; at < n;) {
      const got = await client.read(buf.subarray(at));
      if (got === null) throw new Error(`closed after ${at} of ${n} bytes`);
      at += got;
    }
    return buf;
  };
  try {
    proxy.arm({ kind: "throttle", at: 0, ms: 1 });
    await client.write(Uint8Array.of(1));
    equal((await readBytes(4096)).every((b) => b === 1), true);
    equal(proxy.fired(), true, "the throttle fired");
    // Re-armed with a plan that never fires but has a long pause: a
    // throttle still in force would take 8 × 60 s for the next 4 KiB.
    proxy.arm({ kind: "stall", at: Number.MAX_SAFE_INTEGER, ms: 60_000 });
    await client.write(Uint8Array.of(2));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const next = await Promise.race([
      readBytes(4096),
      new Promise<undefined>((r) =>
        timer = setTimeout(() => r(undefined), 10_000)
      ),
    ]);
    clearTimeout(timer);
    equal(
      next?.every((b) => b === 2),
      true,
      "the next 4 KiB passed unthrottled",
    );
  } finally {
    client.close();
    await proxy.close();
    server.close();
    await serving;
  }
});
