/**
 * `deno run --allow-all bench/resume.ts [--quick]`: what transparent resume
 * costs and what it saves. One fully allocated volume, served by an
 * embedded-store gateway behind the sidecar-like proxy
 * (tests/support/sidecar-proxy.mjs), relayed by a `--backend grpc` gateway
 * with `--resume on` and one with `--resume off`, read over native gRPC and
 * NDJSON:
 *
 * - no faults: the decorator's overhead on a healthy stream (medians);
 * - the proxy ends every upstream stream after `capMs`, as the sidecar's
 *   --max-streaming-duration-min does: how long the whole stream takes with
 *   resume, how many resumes, and how far it gets without.
 *
 * Prints a Markdown table (README "Long streams and failures").
 */
import { GrpcClient, httpJsonStream, type StreamResult } from "./clients.ts";
import {
  type GatewayProcess,
  startGatewayProcess,
} from "../tests/support/gateway-process.ts";
import { writeFullyAllocated } from "./volumes.ts";
import {
  type SidecarUpstream,
  startSidecarUpstream,
} from "../tests/support/sidecar-upstream.ts";

const QUICK = Deno.args.includes("--quick");
const NS = "bench";
const BLOCKS = QUICK ? 65_536 : 262_144; // 256 MiB or 1 GiB, fully allocated
const REPS = QUICK ? 3 : 5;
const MAX_RESULTS = 2048;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function resumes(gw: GatewayProcess): Promise<number> {
  const text = await (await fetch(`${gw.httpUrl}/metrics`)).text();
  let n = 0;
  for (
    const m of text.matchAll(/^cbt_gateway_resumes_total\{[^}]*\} (\d+)$/gm)
  ) {
    n += Number(m[1]);
  }
  return n;
}

const dataDir = await Deno.makeTempDir({ prefix: "cbt-bench-resume-" });
const stops: (() => Promise<void>)[] = [];
try {
  await writeFullyAllocated(dataDir, NS, "vol", "v", BLOCKS);
  const upstream = await startGatewayProcess(["--data-dir", dataDir]);
  stops.push(() => upstream.stop());
  const proxy: SidecarUpstream = await startSidecarUpstream({
    upstreamUrl: upstream.grpcUrl,
  });
  stops.push(() => proxy.close());
  const relay = (resume: "on" | "off") =>
    startGatewayProcess([
      "--backend",
      "grpc",
      "--upstream-url",
      proxy.url,
      "--resume",
      resume,
    ]);
  const on = await relay("on");
  stops.push(() => on.stop());
  const off = await relay("off");
  stops.push(() => off.stop());
  const grpc = new GrpcClient();
  stops.push(() => Promise.resolve(grpc.close()));
  const q = { namespace: NS, snapshot: "v", maxResults: MAX_RESULTS };
  const read = (gw: GatewayProcess, protocol: "grpc" | "ndjson") =>
    protocol === "grpc"
      ? grpc.stream(gw.grpcUrl, q)
      : httpJsonStream(gw.httpUrl, "ndjson", q);

  const rows: string[] = [];
  // Healthy streams, interleaved on/off.
  for (const protocol of ["grpc", "ndjson"] as const) {
    const seconds: Record<string, number[]> = { on: [], off: [] };
    await proxy.plan({});
    // Warm both (connections, page cache, JIT); not counted.
    await read(on, protocol);
    await read(off, protocol);
    for (let i = 0; i < REPS; i++) {
      for (const [name, gw] of [["on", on], ["off", off]] as const) {
        const r = await read(gw, protocol);
        if (r.tuples !== BLOCKS) throw new Error(`${name}: ${r.tuples} tuples`);
        seconds[name].push(r.seconds);
      }
    }
    const [a, b] = [median(seconds.on), median(seconds.off)];
    rows.push(
      `| ${protocol}, no faults | ${b.toFixed(3)} s | ${a.toFixed(3)} s | ` +
        `${(((a - b) / b) * 100).toFixed(1)} % | 0 |`,
    );
  }
  // The upstream's stream cap, far shorter than the stream.
  for (const capMs of [250, 100]) {
    for (const protocol of ["grpc", "ndjson"] as const) {
      await proxy.plan({ capMs });
      const before = await resumes(on);
      const times: number[] = [];
      let r: StreamResult | undefined;
      for (let i = 0; i < REPS; i++) {
        r = await read(on, protocol);
        if (r.tuples !== BLOCKS) throw new Error(`on: ${r.tuples} tuples`);
        times.push(r.seconds);
      }
      const perStream = (await resumes(on) - before) / REPS;
      let without = "";
      try {
        const cut = await read(off, protocol);
        without = `${cut.tuples} tuples (complete?)`;
      } catch (e) {
        without = `cut: ${(e as Error).message.slice(0, 60)}`;
      }
      rows.push(
        `| ${protocol}, upstream cap ${capMs} ms | ${without} | ${
          median(times).toFixed(3)
        } s, whole | — | ${perStream.toFixed(1)} |`,
      );
    }
  }
  console.log(
    `${BLOCKS} tuples (${(BLOCKS * 4096) / 2 ** 30} GiB fully allocated), ` +
      `max_results ${MAX_RESULTS}, medians of ${REPS}\n`,
  );
  console.log(
    "| stream | --resume off | --resume on | overhead | resumes per stream |",
  );
  console.log("| --- | --- | --- | --- | --- |");
  for (const row of rows) console.log(row);
} finally {
  for (const stop of stops.reverse()) await stop().catch(() => {});
  await Deno.remove(dataDir, { recursive: true });
}
