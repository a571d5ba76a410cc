/**
 * `deno task bench [--quick] [--paced-only | --bulk-only] [--baseline <ref>]`:
 * two benches in one run, each with every path interleaved (A B C … A B C …),
 * medians reported. `--baseline` adds paced rows for the gateway as of a git
 * ref (before/after of a change, measured side by side).
 *
 * Paced (the headline, bench/paced.ts): a sidecar stand-in at driver speed,
 * one message per write, TLS, the gateway in Kubernetes mode.
 *
 * Bulk (this file): the same stream as fast as the upstream can send it.
 *   upstream  = cbt-gateway serving the embedded store (its native gRPC port)
 *   gateway   = cbt-gateway with `--backend grpc` relaying to the upstream
 *   nginx     = Debian's nginx, `grpc_pass` to the upstream
 *
 * Each is its own process, so /proc gives each one's CPU time and peak RSS.
 * Writes bench/results/<time>.json, bench/results/latest.md and the tables in
 * docs/benchmark.md and README.md.
 */
import {
  fetchRpcStream,
  GrpcClient,
  httpJsonStream,
  type Protocol,
  type StreamQuery,
  type StreamResult,
} from "./clients.ts";
import {
  checkoutBaseline,
  cpuSeconds,
  memory,
  resetPeak,
  startNginx,
} from "./processes.ts";
import { writeFullyAllocated } from "./volumes.ts";
import { startGatewayProcess } from "../tests/support/gateway-process.ts";
import { startEdgeHost } from "../tests/support/edge-hosts.ts";
import {
  compactPaced,
  FULL_PLAN,
  pacedReport,
  QUICK_PLAN,
  runPaced,
} from "./paced.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const QUICK = Deno.args.includes("--quick");
const PACED = !Deno.args.includes("--bulk-only");
const BULK = !Deno.args.includes("--paced-only");
/** `--baseline <git ref>`: paced rows for the gateway as of that commit too. */
const BASELINE = (() => {
  const i = Deno.args.indexOf("--baseline");
  return i < 0 ? undefined : Deno.args[i + 1];
})();
const NS = "bench";
/** The reference sidecar's single-stream speed here (hostpath driver), tuples/s. */
const SIDECAR_TUPLES_PER_SECOND = 250_000;

interface Volume {
  label: string;
  snapshot: string;
  blocks: number;
  maxResults: number[];
  reps: number;
}

const VOLUMES: Volume[] = QUICK
  ? [{
    label: "256 MiB",
    snapshot: "q256m",
    blocks: 65_536,
    maxResults: [256, 2048],
    reps: 3,
  }]
  : [
    {
      label: "1 GiB",
      snapshot: "v1g",
      blocks: 262_144,
      maxResults: [256, 2048],
      reps: 5,
    },
    {
      label: "4 GiB",
      snapshot: "v4g",
      blocks: 1_048_576,
      maxResults: [2048],
      reps: 3,
    },
  ];

interface Path {
  name: string;
  /** Which process sits between client and upstream (its CPU is measured). */
  middle: "none" | "nginx" | "gateway" | "edge";
  protocol: Protocol;
  json: boolean;
}

const PATHS: Path[] = [
  {
    name: "direct gRPC → upstream",
    middle: "none",
    protocol: "grpc",
    json: false,
  },
  { name: "nginx grpc_pass", middle: "nginx", protocol: "grpc", json: false },
  { name: "gateway: gRPC", middle: "gateway", protocol: "grpc", json: false },
  {
    name: "gateway: Connect",
    middle: "gateway",
    protocol: "connect",
    json: false,
  },
  {
    name: "gateway: gRPC-Web",
    middle: "gateway",
    protocol: "grpc-web",
    json: false,
  },
  {
    name: "gateway: Connect JSON",
    middle: "gateway",
    protocol: "connect-json",
    json: true,
  },
  {
    name: "gateway: Connect JSON, lean client",
    middle: "gateway",
    protocol: "connect-json-lean",
    json: true,
  },
  {
    name: "gateway: NDJSON",
    middle: "gateway",
    protocol: "ndjson",
    json: true,
  },
  { name: "gateway: SSE", middle: "gateway", protocol: "sse", json: true },
  // The edge bundle on Deno in front of the gateway, as an edge tier in
  // front of an in-cluster one; compare with "gateway: Connect".
  {
    name: "edge → gateway: Connect",
    middle: "edge",
    protocol: "connect",
    json: false,
  },
];

interface Sample extends StreamResult {
  middleCpu: number;
  middlePeak: number;
}

interface Row {
  volume: string;
  maxResults: number;
  path: string;
  tuplesPerSecond: number;
  firstBlockMs: number;
  cpuSecondsPerMillionTuples: number | null;
  peakRssMiB: number | null;
  streamsPerCore: number | null;
  streamsPerCoreAtSidecarSpeed: number | null;
  samples: Sample[];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function log(line: string) {
  console.error(`[bench] ${line}`);
}

async function main() {
  const started = performance.now();
  const paced = PACED ? await pacedRun() : undefined;
  const bulk = BULK ? await runBulk() : undefined;
  const result = {
    date: new Date().toISOString(),
    quick: QUICK,
    machine: machine(),
    deno: Deno.version.deno,
    seconds: (performance.now() - started) / 1000,
    paced: paced && compactPaced(paced),
    bulk: bulk && compactBulk(bulk),
  };
  const header = `Run ${result.date}${
    QUICK ? " (--quick)" : ""
  } on ${result.machine}, Deno ${result.deno}; ${
    Math.round(result.seconds)
  } s.`;
  const pacedMd = paced && `${header}\n\n${pacedReport(paced)}`;
  const bulkMd = bulk && `${header}\n\n${report(bulk)}`;
  const markdown = [pacedMd, bulkMd].filter(Boolean).join("\n");
  await Deno.mkdir(`${ROOT}/bench/results`, { recursive: true });
  const stamp = result.date.replace(/[:.]/g, "-");
  await Deno.writeTextFile(
    `${ROOT}/bench/results/${stamp}${QUICK ? "-quick" : ""}.json`,
    compactJson(result) + "\n",
  );
  await Deno.writeTextFile(`${ROOT}/bench/results/latest.md`, markdown);
  if (!QUICK) {
    if (pacedMd) await updateDoc("bench:paced", pacedMd);
    if (bulkMd) await updateDoc("bench", bulkMd);
  }
  console.log(markdown);
}

async function pacedRun() {
  const plan = QUICK ? QUICK_PLAN : FULL_PLAN;
  if (!BASELINE) return runPaced(plan, log);
  const dir = await Deno.makeTempDir({ prefix: "cbt-bench-baseline-" });
  try {
    const root = await checkoutBaseline(BASELINE, dir);
    return await runPaced(plan, log, { baseline: { ref: BASELINE, root } });
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Indented JSON with arrays of numbers on one line (the committed file stays short). */
function compactJson(value: unknown): string {
  return JSON.stringify(value, null, 1).replace(
    /\[\s+(-?[\d.e+-]+(?:,\s+-?[\d.e+-]+)*)\s+\]/g,
    (_, inner: string) => `[${inner.replace(/\s+/g, "")}]`,
  );
}

type BulkResult = {
  rows: Row[];
  store: Awaited<ReturnType<typeof storeSpeed>>;
  ratios: Record<string, number>[];
};

/** The bulk rows without per-sample arrays (the committed JSON stays small). */
function compactBulk(b: BulkResult) {
  return {
    ...b,
    rows: b.rows.map(({ samples, ...row }) => ({
      ...row,
      sampleTuplesPerSecond: samples.map((s) =>
        Math.round(s.tuples / s.seconds)
      ),
    })),
  };
}

async function runBulk(): Promise<BulkResult> {
  const tmp = await Deno.makeTempDir({ prefix: "cbt-bench-" });
  const stops: (() => Promise<void>)[] = [];
  const grpc = new GrpcClient();
  try {
    const dataDir = `${tmp}/data`;
    const files: Record<string, string> = {};
    for (const v of VOLUMES) {
      log(`writing ${v.label} fully allocated image`);
      files[v.snapshot] = await writeFullyAllocated(
        dataDir,
        NS,
        v.snapshot,
        `${v.snapshot}-full`,
        v.blocks,
      );
    }
    // A byte-identical copy of the first volume: its delta compares every block.
    const first = VOLUMES[0];
    const copy = files[first.snapshot].replace(/-full\.img$/, "-copy.img");
    await Deno.copyFile(files[first.snapshot], copy);

    const upstream = await startGatewayProcess([
      "--backend",
      "embedded",
      "--data-dir",
      dataDir,
    ]);
    stops.push(upstream.stop);
    const gateway = await startGatewayProcess([
      "--backend",
      "grpc",
      "--upstream-url",
      upstream.grpcUrl,
    ]);
    stops.push(gateway.stop);
    const edge = await startEdgeHost("deno", {
      CBT_GATEWAY_UPSTREAM_URL: gateway.httpUrl,
    });
    stops.push(edge.close);
    await Deno.mkdir(`${tmp}/nginx`);
    const nginx = await startNginx(new URL(upstream.grpcUrl), `${tmp}/nginx`);
    stops.push(nginx.stop);

    const run = (path: Path, q: StreamQuery): Promise<StreamResult> => {
      switch (path.protocol) {
        case "grpc":
          return grpc.stream(
            path.middle === "none"
              ? upstream.grpcUrl
              : path.middle === "nginx"
              ? nginx.url
              : gateway.grpcUrl,
            q,
          );
        case "ndjson":
        case "sse":
          return httpJsonStream(gateway.httpUrl, path.protocol, q);
        default:
          return fetchRpcStream(
            path.middle === "edge" ? edge.url : gateway.httpUrl,
            path.protocol,
            q,
          );
      }
    };

    // Warm up every path (JIT, connections, page cache); drop paths that
    // don't exist in this build (the HTTP/JSON surface may not be wired).
    const paths: Path[] = [];
    for (const p of PATHS) {
      try {
        for (const v of VOLUMES) await run(p, volumeQuery(v));
        paths.push(p);
      } catch (e) {
        log(`skipping ${p.name}: ${(e as Error).message.slice(0, 160)}`);
      }
    }

    const rows: Row[] = [];
    for (const v of VOLUMES) {
      for (const maxResults of v.maxResults) {
        const q = { ...volumeQuery(v), maxResults };
        const samples = new Map<string, Sample[]>(
          paths.map((p) => [p.name, []]),
        );
        for (let rep = 0; rep < v.reps; rep++) {
          for (const p of paths) {
            const pid = p.middle === "gateway"
              ? gateway.pid
              : p.middle === "edge"
              ? edge.pid
              : p.middle === "nginx"
              ? nginx.pid
              : undefined;
            if (pid) resetPeak(pid);
            const cpu0 = pid ? cpuSeconds(pid) : 0;
            const r = await run(p, q);
            const cpu1 = pid ? cpuSeconds(pid) : 0;
            if (r.tuples !== v.blocks) {
              throw new Error(
                `${p.name}: ${r.tuples} tuples, expected ${v.blocks}`,
              );
            }
            samples.get(p.name)!.push({
              ...r,
              middleCpu: cpu1 - cpu0,
              middlePeak: pid ? memory(pid).peak : 0,
            });
          }
        }
        const directTps = median(
          samples.get(PATHS[0].name)!.map((s) => s.tuples / s.seconds),
        );
        for (const p of paths) {
          const ss = samples.get(p.name)!;
          const tuples = ss.reduce((a, s) => a + s.tuples, 0);
          const cpu = ss.reduce((a, s) => a + s.middleCpu, 0);
          const cpuPerTuple = p.middle === "none" ? null : cpu / tuples;
          const row: Row = {
            volume: v.label,
            maxResults,
            path: p.name,
            tuplesPerSecond: median(ss.map((s) => s.tuples / s.seconds)),
            firstBlockMs: median(ss.map((s) => s.firstBlockSeconds * 1000)),
            cpuSecondsPerMillionTuples: cpuPerTuple === null
              ? null
              : cpuPerTuple * 1e6,
            peakRssMiB: p.middle === "none"
              ? null
              : Math.max(...ss.map((s) => s.middlePeak)) / 2 ** 20,
            streamsPerCore: cpuPerTuple ? 1 / (cpuPerTuple * directTps) : null,
            streamsPerCoreAtSidecarSpeed: cpuPerTuple
              ? 1 / (cpuPerTuple * SIDECAR_TUPLES_PER_SECOND)
              : null,
            samples: ss,
          };
          rows.push(row);
          log(
            `${v.label} max_results ${maxResults} ${p.name}: ${
              Math.round(row.tuplesPerSecond)
            } tuples/s`,
          );
        }
      }
    }

    const store = await storeSpeed(
      grpc,
      upstream.grpcUrl,
      first,
      files[first.snapshot],
      copy,
    );
    return { rows, store, ratios: targetRatios(rows) };
  } finally {
    grpc.close();
    for (const stop of stops.reverse()) await stop().catch(() => {});
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

function volumeQuery(v: Volume): StreamQuery {
  return { namespace: NS, snapshot: `${v.snapshot}-full`, maxResults: 2048 };
}

/** Embedded store: delta of two identical images (every block compared) vs `cmp`. */
async function storeSpeed(
  grpc: GrpcClient,
  upstreamUrl: string,
  v: Volume,
  a: string,
  b: string,
) {
  const bytes = v.blocks * 4096;
  const storeTimes: number[] = [], cmpTimes: number[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await grpc.stream(upstreamUrl, {
      namespace: NS,
      snapshot: `${v.snapshot}-copy`,
      baseSnapshotId: `${v.snapshot}/${v.snapshot}-full`,
      maxResults: 2048,
    });
    if (r.tuples !== 0) {
      throw new Error(`identical images: ${r.tuples} changed tuples`);
    }
    storeTimes.push(r.seconds);
    const t0 = performance.now();
    const out = await new Deno.Command("cmp", { args: [a, b] }).output();
    if (out.code !== 0) throw new Error("cmp: images differ");
    cmpTimes.push((performance.now() - t0) / 1000);
  }
  const store = median(storeTimes), cmp = median(cmpTimes);
  return {
    comparedBytes: bytes,
    storeGBps: bytes / store / 1e9,
    cmpGBps: bytes / cmp / 1e9,
    storeVsCmp: cmp / store,
  };
}

function targetRatios(rows: Row[]) {
  const out: Record<string, number>[] = [];
  const keys = new Set(rows.map((r) => `${r.volume}|${r.maxResults}`));
  for (const key of keys) {
    const [volume, maxResults] = key.split("|");
    const at = (name: string) =>
      rows.find((r) =>
        `${r.volume}|${r.maxResults}` === key && r.path === name
      );
    const direct = at("direct gRPC → upstream")!;
    const nginx = at("nginx grpc_pass");
    const binary = ["gateway: gRPC", "gateway: Connect", "gateway: gRPC-Web"]
      .map(at).filter((r) => r !== undefined);
    const json = [
      "gateway: Connect JSON",
      "gateway: Connect JSON, lean client",
      "gateway: NDJSON",
      "gateway: SSE",
    ]
      .map(at).filter((r) => r !== undefined);
    const connect = at("gateway: Connect");
    const ratios: Record<string, number> = {};
    for (const r of binary) {
      ratios[`${r.path} / direct tuples/s`] = r.tuplesPerSecond /
        direct.tuplesPerSecond;
    }
    const gw = at("gateway: gRPC");
    if (gw && nginx) {
      ratios["gateway gRPC CPU / nginx CPU"] = gw.cpuSecondsPerMillionTuples! /
        nginx.cpuSecondsPerMillionTuples!;
    }
    const edge = at("edge → gateway: Connect");
    if (edge && connect) {
      ratios["edge → gateway: Connect / gateway: Connect tuples/s"] =
        edge.tuplesPerSecond / connect.tuplesPerSecond;
    }
    for (const r of json) {
      if (connect) {
        ratios[`${r.path} / Connect binary tuples/s`] = r.tuplesPerSecond /
          connect.tuplesPerSecond;
      }
    }
    out.push({ volume, maxResults: Number(maxResults), ...ratios } as never);
  }
  return out;
}

function machine(): string {
  const cpu = /model name\s*:\s*(.+)/.exec(
    Deno.readTextFileSync("/proc/cpuinfo"),
  )?.[1] ?? "unknown CPU";
  return `${cpu}, ${navigator.hardwareConcurrency} cores, ${Deno.build.os}`;
}

const fmt = (n: number | null, digits = 2) =>
  n === null
    ? "–"
    : n.toLocaleString("en-US", { maximumFractionDigits: digits });

function report(r: BulkResult): string {
  const lines = [
    `Bulk upstream (as fast as it can send, h2c, \`--backend grpc\` relay). ` +
    `Medians of interleaved runs; CPU and peak RSS are ` +
    `of the process in the middle (nginx or the gateway), CPU summed over all runs.`,
    "",
    "| volume | max_results | path | tuples/s | first block (ms) | middle CPU s / M tuples | middle peak RSS (MiB) | full-speed streams per core | … at sidecar speed (250k tuples/s) |",
    "|---|---:|---|---:|---:|---:|---:|---:|---:|",
  ];
  for (const row of r.rows) {
    lines.push(
      `| ${row.volume} | ${row.maxResults} | ${row.path} | ${
        fmt(row.tuplesPerSecond, 0)
      } | ` +
        `${fmt(row.firstBlockMs, 1)} | ${
          fmt(row.cpuSecondsPerMillionTuples, 3)
        } | ` +
        `${fmt(row.peakRssMiB, 0)} | ${fmt(row.streamsPerCore, 1)} | ${
          fmt(row.streamsPerCoreAtSidecarSpeed, 1)
        } |`,
    );
  }
  lines.push("", "Target ratios (same run):", "");
  for (const ratio of r.ratios) {
    const { volume, maxResults, ...rest } = ratio as Record<
      string,
      number | string
    >;
    lines.push(
      `- ${volume}, max_results ${maxResults}: ` +
        Object.entries(rest).map(([k, v]) => `${k} **${fmt(v as number)}**`)
          .join("; "),
    );
  }
  lines.push(
    "",
    `Embedded store: delta of two identical ${
      fmt(r.store.comparedBytes / 2 ** 30, 2)
    } GiB images ` +
      `(every block compared) at **${
        fmt(r.store.storeGBps)
      } GB/s** through its gRPC port; ` +
      `\`cmp\` on the same files: ${fmt(r.store.cmpGBps)} GB/s ` +
      `(store = ${fmt(r.store.storeVsCmp)}× cmp's speed).`,
    "",
  );
  return lines.join("\n");
}

/**
 * Replaces one generated block (between `<!-- marker:begin/end -->`) of
 * docs/benchmark.md and of the README's Performance section with the new
 * tables, then formats both so `deno fmt --check` stays clean.
 */
async function updateDoc(marker: string, markdown: string) {
  const begin = `<!-- ${marker}:begin -->`, end = `<!-- ${marker}:end -->`;
  const files = [`${ROOT}/docs/benchmark.md`, `${ROOT}/README.md`];
  for (const file of files) {
    const doc = await Deno.readTextFile(file);
    const i = doc.indexOf(begin), j = doc.indexOf(end);
    if (i < 0 || j < i) {
      throw new Error(`${file} has no ${begin} … ${end} block`);
    }
    await Deno.writeTextFile(
      file,
      doc.slice(0, i + begin.length) + "\n" + markdown + doc.slice(j),
    );
  }
  const fmt = await new Deno.Command(Deno.execPath(), {
    args: ["fmt", ...files],
    stdout: "null",
    stderr: "inherit",
  }).output();
  if (!fmt.success) throw new Error("deno fmt failed on the updated docs");
}

await main();
