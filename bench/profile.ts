/**
 * `deno run -A bench/profile.ts [--prof] [--reps N] [--max-results N] [paths…]`:
 * where the relay gateway's CPU goes. Starts an embedded upstream and a
 * `--backend grpc` gateway (with `--prof`, under V8's sampling profiler),
 * streams a fully allocated 1 GiB volume over the chosen paths (default:
 * grpc connect grpc-web connect-json) and prints the gateway's CPU seconds
 * per million tuples for each. With `--prof`, the V8 log of the gateway is
 * left in the printed directory; summarise it with
 * `node --prof-process --preprocess <log> > p.json` or
 * `node --prof-process <log>`. `--attach '<command with {pid}>'` runs a
 * tool on the gateway around the measured streams (strace -c, perf record).
 */
import { fetchRpcStream, GrpcClient, type Protocol } from "./clients.ts";
import { cpuSeconds } from "./processes.ts";
import { writeFullyAllocated } from "./volumes.ts";
import { startGatewayProcess } from "../tests/support/gateway-process.ts";

const args = [...Deno.args];
const flag = (name: string) => {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const [, value] = args.splice(i, 2);
  return value;
};
const prof = args.includes("--prof");
if (prof) args.splice(args.indexOf("--prof"), 1);
const reps = Number(flag("--reps") ?? 5);
/** A command run around the measured streams, `{pid}` = the gateway's, stopped with SIGINT (e.g. `strace -c -f -p {pid}`, `perf record -g -p {pid}`). */
const attach = flag("--attach");
const maxResults = Number(flag("--max-results") ?? 2048);
const paths = (args.length ? args : [
  "grpc",
  "connect",
  "grpc-web",
  "connect-json",
]) as Protocol[];

const NS = "bench";
const BLOCKS = 262_144;
const tmp = await Deno.makeTempDir({ prefix: "cbt-profile-" });
const grpc = new GrpcClient();
const stops: (() => Promise<void>)[] = [];
try {
  await writeFullyAllocated(`${tmp}/data`, NS, "v", "full", BLOCKS);
  const upstream = await startGatewayProcess([
    "--backend",
    "embedded",
    "--data-dir",
    `${tmp}/data`,
  ]);
  stops.push(upstream.stop);
  const gateway = await startGatewayProcess(
    ["--backend", "grpc", "--upstream-url", upstream.grpcUrl],
    {
      denoFlags: prof ? [`--v8-flags=--prof,--logfile=${tmp}/v8.log`] : [],
    },
  );
  stops.push(gateway.stop);
  const q = { namespace: NS, snapshot: "full", maxResults };
  const run = (p: Protocol) =>
    p === "grpc"
      ? grpc.stream(gateway.grpcUrl, q)
      : fetchRpcStream(gateway.httpUrl, p as "connect", q);
  for (const p of paths) await run(p); // warm-up
  const tool = attach
    ? new Deno.Command("sh", {
      args: ["-c", `exec ${attach.replaceAll("{pid}", String(gateway.pid))}`],
      stdout: "inherit",
      stderr: "inherit",
    }).spawn()
    : undefined;
  if (tool) await new Promise((r) => setTimeout(r, 1000)); // let it attach
  const cpu = new Map(paths.map((p) => [p, 0]));
  const secs = new Map(paths.map((p) => [p, [] as number[]]));
  for (let i = 0; i < reps; i++) {
    for (const p of paths) {
      const c0 = cpuSeconds(gateway.pid);
      const r = await run(p);
      cpu.set(p, cpu.get(p)! + cpuSeconds(gateway.pid) - c0);
      secs.get(p)!.push(r.seconds);
      if (r.tuples !== BLOCKS) throw new Error(`${p}: ${r.tuples} tuples`);
    }
  }
  if (tool) {
    tool.kill("SIGINT");
    await tool.status;
  }
  for (const p of paths) {
    const s = secs.get(p)!.sort((a, b) => a - b);
    console.log(
      `${p.padEnd(13)} max_results ${maxResults}: ${
        (cpu.get(p)! / (reps * BLOCKS) * 1e6).toFixed(3)
      } CPU s / M tuples, ${
        Math.round(BLOCKS / s[Math.floor(s.length / 2)])
      } tuples/s`,
    );
  }
  if (prof) {
    grpc.close(); // before the gateway goes: a GOAWAY on an open client session can crash Deno's node:http2
    await gateway.stop();
    stops.pop();
    const keep = await Deno.makeTempDir({ prefix: "cbt-v8log-" });
    for (const e of Deno.readDirSync(tmp)) {
      if (e.name.endsWith(".log")) {
        await Deno.rename(`${tmp}/${e.name}`, `${keep}/${e.name}`);
      }
    }
    console.log(`V8 log(s) in ${keep}`);
  }
} finally {
  grpc.close();
  for (const stop of stops.reverse()) await stop().catch(() => {});
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
}
