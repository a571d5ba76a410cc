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
 *
 * `--paced` measures the paced bench's setup instead (bench/paced.ts: sidecar
 * stand-in at driver speed, TLS, `--backend kubernetes`); paths are then
 * grpc connect grpc-web ndjson sse, `--max-results 0` is the sidecar's
 * default, and `--short N` runs N 10-tuple streams per path instead of long
 * ones (the per-stream cost). `--cpu-prof` runs the gateway under
 * `deno run --cpu-prof` and prints where its busy time went
 * during the measured streams (bench/cpuprofile.ts); the .cpuprofile is
 * kept in the printed directory.
 */
import {
  fetchRpcStream,
  GrpcClient,
  type Protocol,
  type StreamQuery,
  type StreamResult,
} from "./clients.ts";
import { cpuSeconds } from "./processes.ts";
import { writeFullyAllocated } from "./volumes.ts";
import { startGatewayProcess } from "../tests/support/gateway-process.ts";
import { PACED_PATHS, startPacedRig } from "./paced.ts";
import { formatSummary, profileClock, summarize } from "./cpuprofile.ts";

const args = [...Deno.args];
const flag = (name: string) => {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const [, value] = args.splice(i, 2);
  return value;
};
const has = (name: string) => {
  const i = args.indexOf(name);
  if (i >= 0) args.splice(i, 1);
  return i >= 0;
};
const prof = has("--prof");
const cpuProf = has("--cpu-prof");
const paced = has("--paced");
const short = Number(flag("--short") ?? 0);
const reps = Number(flag("--reps") ?? 5);
/** A command run around the measured streams, `{pid}` = the gateway's, stopped with SIGINT (e.g. `strace -c -f -p {pid}`, `perf record -g -p {pid}`). */
const attach = flag("--attach");
const maxResults = Number(flag("--max-results") ?? 2048);
const paths = (args.length ? args : [
  "grpc",
  "connect",
  "grpc-web",
  ...(paced ? [] : ["connect-json"]),
]) as Protocol[];

const NS = "bench";
const BLOCKS = 262_144;

if (paced) {
  await profilePaced();
  Deno.exit(0);
}

async function profilePaced() {
  const tmp = await Deno.makeTempDir({ prefix: "cbt-profile-paced-" });
  const profDir = await Deno.makeTempDir({ prefix: "cbt-cpuprofile-" });
  const window = { from: 0, to: 0 };
  const rig = await startPacedRig(tmp, {
    tuples: [BLOCKS],
    gatewayDenoFlags: cpuProf
      ? ["--cpu-prof", "--cpu-prof-interval=100", `--cpu-prof-dir=${profDir}`]
      : [],
  });
  try {
    const tuples = short ? 10 : BLOCKS;
    const q: StreamQuery = {
      namespace: NS,
      snapshot: `p${tuples}`,
      maxResults: short ? 0 : maxResults,
    };
    const pathOf = (p: string) =>
      PACED_PATHS.find((x) => x.middle === "gateway" && x.protocol === p)!;
    const run = (p: string): Promise<StreamResult> => rig.run(pathOf(p), q);
    for (const p of paths) await run(p); // warm-up
    const cpu = new Map(paths.map((p) => [p, 0]));
    const times = short || 1;
    window.from = profileClock();
    for (let i = 0; i < reps; i++) {
      for (const p of paths) {
        for (let k = 0; k < times; k++) {
          const c0 = cpuSeconds(rig.gateway.pid);
          const r = await run(p);
          cpu.set(p, cpu.get(p)! + cpuSeconds(rig.gateway.pid) - c0);
          if (r.tuples !== tuples) throw new Error(`${p}: ${r.tuples} tuples`);
        }
      }
    }
    window.to = profileClock();
    for (const p of paths) {
      const streams = reps * times;
      console.log(
        short
          ? `${p.padEnd(9)} ${
            (cpu.get(p)! / streams * 1000).toFixed(1)
          } CPU ms / 10-tuple stream`
          : `${p.padEnd(9)} max_results ${maxResults}: ${
            (cpu.get(p)! / (streams * BLOCKS) * 1e6).toFixed(3)
          } CPU s / M tuples`,
      );
    }
  } finally {
    await rig.stop(); // the gateway writes its profile as it exits
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
  for (const e of Deno.readDirSync(profDir)) {
    if (!e.name.endsWith(".cpuprofile")) continue;
    const file = `${profDir}/${e.name}`;
    console.log(`\n${file}\n`);
    console.log(
      formatSummary(
        summarize(JSON.parse(await Deno.readTextFile(file)), 30, window),
      ),
    );
  }
}
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
