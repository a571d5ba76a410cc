/**
 * The paced bench (the headline of `deno task bench`): the gateway as it
 * runs in a cluster, fed at the real sidecar's pace.
 *
 *   upstream  = bench/paced-upstream.ts, its own process: one message per
 *               write at ~280k tuples/s, TLS with its own CA
 *   kube      = the fake API server of the tests (tests/support/fake-kube),
 *               in this process, with deploy/'s RBAC: VolumeSnapshots,
 *               their contents, the driver's SnapshotMetadataService
 *   gateway   = `--backend kubernetes --auth kubernetes`, TLS on both
 *               ports: every stream is caller auth (TokenReview +
 *               SubjectAccessReview, cached as the gateway caches them),
 *               discovery (VolumeSnapshot → content → driver → service), the
 *               gateway's minted token, and the TLS upstream leg
 *   nginx     = Debian's nginx, one process, TLS in, `grpc_pass grpcs://`
 *
 * Every stream opens its own client connection (TLS handshake included),
 * as a backup tool opening one per volume does. Paths run interleaved,
 * medians are reported, and every cost is also given as a ratio to nginx
 * measured in the same run.
 */
import {
  type Connection,
  fetchRpcStream,
  grpcStreamFresh,
  httpJsonStream,
  type StreamQuery,
  type StreamResult,
} from "./clients.ts";
import {
  type Child,
  cpuSeconds,
  startNginx,
  startPacedUpstream,
} from "./processes.ts";
import {
  type GatewayProcess,
  startGatewayProcess,
} from "../tests/support/gateway-process.ts";
import {
  issueServerCert,
  makeCertificateAuthority,
} from "../tests/support/certs.ts";
import { startFakeKube } from "../tests/support/fake-kube/server.ts";
import {
  GATEWAY_SA,
  loadManifests,
  policyFromRbac,
} from "../tests/support/kube-fixture.ts";

/** The real sidecar + hostpath driver's single-stream pace here. */
export const SIDECAR_TUPLES_PER_SECOND = 280_000;
const NS = "bench";
const DRIVER = "hostpath.csi.k8s.io";
const BLOCK = 4096;
const SHORT_TUPLES = 10;

export type PacedProtocol = "grpc" | "connect" | "grpc-web" | "ndjson" | "sse";

export interface PacedPath {
  name: string;
  /**
   * "baseline": the same gateway built from another commit (--baseline);
   * "relay": a gateway with `--backend grpc` straight to the stand-in, no
   * caller auth, no discovery (what Kubernetes mode adds, by difference).
   */
  middle: "none" | "nginx" | "gateway" | "baseline" | "relay";
  protocol: PacedProtocol;
  json: boolean;
}

export const PACED_PATHS: PacedPath[] = [
  { name: "direct", middle: "none", protocol: "grpc", json: false },
  { name: "nginx grpc_pass", middle: "nginx", protocol: "grpc", json: false },
  { name: "gateway gRPC", middle: "gateway", protocol: "grpc", json: false },
  {
    name: "gateway Connect",
    middle: "gateway",
    protocol: "connect",
    json: false,
  },
  {
    name: "gateway gRPC-Web",
    middle: "gateway",
    protocol: "grpc-web",
    json: false,
  },
  { name: "gateway NDJSON", middle: "gateway", protocol: "ndjson", json: true },
  { name: "gateway SSE", middle: "gateway", protocol: "sse", json: true },
  {
    name: "static relay gRPC (no auth, no discovery)",
    middle: "relay",
    protocol: "grpc",
    json: false,
  },
];

/** With --baseline <ref>: the binary paths once more, through the old gateway. */
export function baselinePaths(ref: string): PacedPath[] {
  return PACED_PATHS.filter((p) => p.middle === "gateway" && !p.json).map((
    p,
  ) => ({ ...p, name: `${p.name} @ ${ref}`, middle: "baseline" }));
}

/** JSON surfaces are compared with binary Connect (same HTTP/1.1 front). */
const JSON_REFERENCE = "gateway Connect";

export interface PacedPlan {
  /** Tuples in the long streams. */
  tuples: number;
  /** max_results of the long streams; 0 = the sidecar's default 256. */
  maxResults: number[];
  reps: number;
  /** 10-tuple streams per path (fixed cost, first-message latency). */
  shortReps: number;
}

export const FULL_PLAN: PacedPlan = {
  tuples: 262_144, // 1 GiB fully allocated
  maxResults: [0, 2048],
  reps: 5,
  shortReps: 30,
};

export const QUICK_PLAN: PacedPlan = {
  tuples: 32_768,
  maxResults: [0, 2048],
  reps: 2,
  shortReps: 4,
};

/** One stream: its client-side result and the middle process's CPU. */
interface PacedSample {
  tuplesPerSecond: number;
  firstMs: number;
  cpu: number;
  /** Native gRPC: messages per read at the client (1 = each came alone). */
  messagesPerRead?: number;
}

export interface LongRow {
  maxResults: number;
  path: string;
  tuplesPerSecond: number;
  vsDirect: number;
  cpuSecondsPerMillionTuples: number | null;
  /** Binary paths: CPU ÷ nginx's. JSON paths: CPU ÷ binary Connect's. */
  cpuRatio: number | null;
  samples: PacedSample[];
}

export interface ShortRow {
  path: string;
  cpuMsPerStream: number | null;
  cpuVsNginx: number | null;
  firstMs: number;
  addedFirstMs: number | null;
  samples: PacedSample[];
}

export interface PacedResult {
  plan: PacedPlan;
  rate: number;
  long: LongRow[];
  short: ShortRow[];
  targets: { target: string; value: string; met: boolean }[];
}

/** a ÷ b, or null when b is below the CPU clock's resolution (quick runs). */
function ratio(a: number, b: number): number | null {
  return b > 0 ? a / b : null;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Everything the paced paths need, started; `stop` undoes it all. */
export interface PacedRig {
  run(path: PacedPath, q: StreamQuery): Promise<StreamResult>;
  pid(path: PacedPath): number | undefined;
  gateway: GatewayProcess;
  /** The CA the gateway's and nginx's certificates chain to. */
  frontCaPem: string;
  /** The bench caller's bearer token. */
  callerToken: string;
  stop(): Promise<void>;
}

export async function startPacedRig(
  tmp: string,
  options: {
    rate?: number;
    tuples: number[];
    /** Extra deno flags for the gateway (e.g. --cpu-prof). */
    gatewayDenoFlags?: string[];
    /** A second gateway from this checkout (checkoutBaseline), same setup. */
    baselineRoot?: string;
  },
): Promise<PacedRig> {
  const stops: (() => Promise<unknown>)[] = [];
  let stopUpstream = () => Promise.resolve();
  const stop = async () => {
    // The sidecar stand-in goes first: Deno's node:http2 server aborts on an
    // assertion in nghttp2 when a client's GOAWAY arrives with streams just
    // closed, and the gateway (GOAWAY-shielded) takes the upstream leaving.
    await stopUpstream().catch(() => {});
    for (const s of stops.reverse()) await s().catch(() => {});
  };
  try {
    // Two PKIs, as in a cluster: the sidecar's own, and the front's.
    const sidecarCa = await makeCertificateAuthority(`${tmp}/sidecar-pki`, {
      commonName: "bench-sidecar-ca",
    });
    const frontCa = await makeCertificateAuthority(`${tmp}/front-pki`, {
      commonName: "bench-front-ca",
    });
    const names = { dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"] };
    const sidecarCert = await issueServerCert(sidecarCa, {
      name: "sidecar",
      ...names,
    });
    const frontCert = await issueServerCert(frontCa, {
      name: "front",
      ...names,
    });

    const upstream: Child & { address: string } = await startPacedUpstream(
      sidecarCert,
      options.rate ?? SIDECAR_TUPLES_PER_SECOND,
    );
    stopUpstream = upstream.stop;

    const kube = await startFakeKube({
      policy: [...policyFromRbac(await loadManifests()), {
        name: "bench-client-reads-bench",
        users: ["bench-client"],
        verbs: ["get", "list"],
        apiGroups: ["snapshot.storage.k8s.io"],
        resources: ["volumesnapshots"],
        namespaces: [NS],
      }],
      serviceAccounts: [GATEWAY_SA],
    });
    stops.push(() => kube.close());
    for (const n of new Set([...options.tuples, SHORT_TUPLES])) {
      kube.addSnapshot({
        namespace: NS,
        name: `p${n}`,
        driver: DRIVER,
        snapshotHandle: `vol/p${n}`,
        volumeHandle: "vol",
        sourcePvc: "pvc-vol",
        restoreSize: n * BLOCK,
      });
    }
    kube.addSnapshotMetadataService({
      driver: DRIVER,
      address: upstream.address,
      audience: "bench-sidecar",
      caCertPem: sidecarCa.certPem,
    });
    const kubeconfig = await kube.writeKubeconfig(
      kube.serviceAccountToken(GATEWAY_SA.namespace, GATEWAY_SA.name),
    );
    const gatewayArgs = [
      "--backend",
      "kubernetes",
      "--auth",
      "kubernetes",
      "--kubeconfig",
      kubeconfig,
      "--service-account",
      `${GATEWAY_SA.namespace}/${GATEWAY_SA.name}`,
      "--tls-cert",
      frontCert.certPath,
      "--tls-key",
      frontCert.keyPath,
    ];
    const gateway = await startGatewayProcess(gatewayArgs, {
      denoFlags: options.gatewayDenoFlags,
    });
    stops.push(gateway.stop);
    const baseline = options.baselineRoot
      ? await startGatewayProcess(gatewayArgs, { root: options.baselineRoot })
      : undefined;
    if (baseline) stops.push(baseline.stop);
    await Deno.writeTextFile(`${tmp}/sidecar-ca.pem`, sidecarCa.certPem);
    const relay = await startGatewayProcess([
      "--backend",
      "grpc",
      "--upstream-url",
      `https://${upstream.address}`,
      "--upstream-ca",
      `${tmp}/sidecar-ca.pem`,
      "--auth",
      "none",
      "--tls-cert",
      frontCert.certPath,
      "--tls-key",
      frontCert.keyPath,
    ]);
    stops.push(relay.stop);

    await Deno.mkdir(`${tmp}/nginx`);
    const nginx = await startNginx(
      new URL(`https://${upstream.address}`),
      `${tmp}/nginx`,
      frontCert,
    );
    stops.push(nginx.stop);

    const caller = kube.mintUserToken({ username: "bench-client" });
    const front: Connection = {
      caPem: frontCa.certPem,
      headers: { authorization: `Bearer ${caller}` },
    };
    // Direct and through nginx the sidecar sees the caller's security_token.
    const sidecarQuery = (q: StreamQuery) => ({ ...q, securityToken: caller });
    return {
      gateway,
      frontCaPem: frontCa.certPem,
      callerToken: caller,
      pid: (p) =>
        p.middle === "gateway"
          ? gateway.pid
          : p.middle === "baseline"
          ? baseline?.pid
          : p.middle === "relay"
          ? relay.pid
          : p.middle === "nginx"
          ? nginx.pid
          : undefined,
      run(p, q) {
        const g = p.middle === "baseline" ? baseline! : gateway;
        if (p.middle === "none") {
          return grpcStreamFresh(
            `https://${upstream.address}`,
            sidecarQuery(q),
            { caPem: sidecarCa.certPem },
          );
        }
        if (p.middle === "relay") {
          // The relay forwards the caller's security_token, as nginx does.
          return grpcStreamFresh(relay.grpcUrl, sidecarQuery(q), {
            caPem: frontCa.certPem,
          });
        }
        if (p.middle === "nginx") {
          return grpcStreamFresh(nginx.url, sidecarQuery(q), {
            caPem: frontCa.certPem,
          });
        }
        switch (p.protocol) {
          case "grpc":
            return grpcStreamFresh(g.grpcUrl, q, front);
          case "connect":
          case "grpc-web":
            return fetchRpcStream(g.httpUrl, p.protocol, q, front);
          case "ndjson":
          case "sse":
            return httpJsonStream(g.httpUrl, p.protocol, q, front);
        }
      },
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

async function measure(
  rig: PacedRig,
  p: PacedPath,
  q: StreamQuery,
  tuples: number,
): Promise<PacedSample> {
  const pid = rig.pid(p);
  const cpu0 = pid ? cpuSeconds(pid) : 0;
  const r = await rig.run(p, q);
  const cpu = pid ? cpuSeconds(pid) - cpu0 : 0;
  if (r.tuples !== tuples) {
    throw new Error(`${p.name}: ${r.tuples} tuples, expected ${tuples}`);
  }
  return {
    tuplesPerSecond: r.tuples / r.seconds,
    firstMs: r.firstBlockSeconds * 1000,
    cpu,
    messagesPerRead: r.runs ? r.messages! / r.runs : undefined,
  };
}

export async function runPaced(
  plan: PacedPlan,
  log: (line: string) => void,
  options: { rate?: number; baseline?: { ref: string; root: string } } = {},
): Promise<PacedResult> {
  const rate = options.rate ?? SIDECAR_TUPLES_PER_SECOND;
  const tmp = await Deno.makeTempDir({ prefix: "cbt-bench-paced-" });
  const rig = await startPacedRig(tmp, {
    rate,
    tuples: [plan.tuples],
    baselineRoot: options.baseline?.root,
  });
  const paths = [
    ...PACED_PATHS,
    ...(options.baseline ? baselinePaths(options.baseline.ref) : []),
  ];
  try {
    const long = (maxResults: number): StreamQuery => ({
      namespace: NS,
      snapshot: `p${plan.tuples}`,
      maxResults,
    });
    const short: StreamQuery = {
      namespace: NS,
      snapshot: `p${SHORT_TUPLES}`,
      maxResults: 0,
    };
    // Warm-up: JIT, discovery's first list, the upstream pool, caches.
    for (const p of paths) {
      for (let i = 0; i < 3; i++) await measure(rig, p, short, SHORT_TUPLES);
      await measure(rig, p, long(0), plan.tuples);
    }
    log("paced: warm");

    const longRows: LongRow[] = [];
    for (const maxResults of plan.maxResults) {
      const samples = new Map(
        paths.map((p) => [p.name, [] as PacedSample[]]),
      );
      for (let rep = 0; rep < plan.reps; rep++) {
        for (const p of paths) {
          samples.get(p.name)!.push(
            await measure(rig, p, long(maxResults), plan.tuples),
          );
        }
      }
      const tps = (name: string) =>
        median(samples.get(name)!.map((s) => s.tuplesPerSecond));
      const cpuPerM = (p: PacedPath) =>
        p.middle === "none" ? null : samples.get(p.name)!.reduce(
          (a, s) => a + s.cpu,
          0,
        ) / (plan.reps * plan.tuples) * 1e6;
      const nginxCpu = cpuPerM(PACED_PATHS[1])!;
      const jsonRef = cpuPerM(
        PACED_PATHS.find((p) => p.name === JSON_REFERENCE)!,
      )!;
      for (const p of paths) {
        const cpu = cpuPerM(p);
        longRows.push({
          maxResults,
          path: p.name,
          tuplesPerSecond: tps(p.name),
          vsDirect: tps(p.name) / tps("direct"),
          cpuSecondsPerMillionTuples: cpu,
          cpuRatio: cpu === null
            ? null
            : ratio(cpu, p.json ? jsonRef : nginxCpu),
          samples: samples.get(p.name)!,
        });
        log(
          `paced max_results ${maxResults} ${p.name}: ${
            Math.round(tps(p.name))
          } tuples/s, ${cpu?.toFixed(3) ?? "–"} CPU s / M tuples`,
        );
      }
    }

    const shortSamples = new Map(
      paths.map((p) => [p.name, [] as PacedSample[]]),
    );
    for (let rep = 0; rep < plan.shortReps; rep++) {
      for (const p of paths) {
        shortSamples.get(p.name)!.push(
          await measure(rig, p, short, SHORT_TUPLES),
        );
      }
    }
    const cpuMs = (p: PacedPath) =>
      p.middle === "none" ? null : shortSamples.get(p.name)!.reduce(
        (a, s) => a + s.cpu,
        0,
      ) / plan.shortReps * 1000;
    const first = (p: PacedPath) =>
      median(shortSamples.get(p.name)!.map((s) => s.firstMs));
    const directFirst = first(PACED_PATHS[0]);
    const nginxCpuMs = cpuMs(PACED_PATHS[1])!;
    const shortRows: ShortRow[] = paths.map((p) => {
      const cpu = cpuMs(p);
      return {
        path: p.name,
        cpuMsPerStream: cpu,
        cpuVsNginx: cpu === null ? null : ratio(cpu, nginxCpuMs),
        firstMs: first(p),
        addedFirstMs: p.middle === "none" ? null : first(p) - directFirst,
        samples: shortSamples.get(p.name)!,
      };
    });
    log("paced: short streams done");
    return {
      plan,
      rate,
      long: longRows,
      short: shortRows,
      targets: targets(longRows, shortRows),
    };
  } finally {
    await rig.stop();
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

const BINARY_GATEWAY = ["gateway gRPC", "gateway Connect", "gateway gRPC-Web"];

/** The issue's targets, each checked against this run's numbers. */
function targets(long: LongRow[], short: ShortRow[]) {
  const out: PacedResult["targets"] = [];
  const f = (n: number) => fmt(n, 2);
  for (const r of long) {
    const at = r.maxResults || 256;
    if (BINARY_GATEWAY.includes(r.path) && r.cpuRatio !== null) {
      out.push({
        target: `${r.path}, max_results ${at}: CPU ≤ 1.5× nginx`,
        value: `${f(r.cpuRatio!)}×`,
        met: r.cpuRatio! <= 1.5,
      });
    }
    if (r.path.startsWith("gateway") && !r.path.includes(" @ ")) {
      out.push({
        target: `${r.path}, max_results ${at}: throughput ≥ 0.95× direct`,
        value: `${f(r.vsDirect)}×`,
        met: r.vsDirect >= 0.95,
      });
    }
    if (
      (r.path === "gateway NDJSON" || r.path === "gateway SSE") &&
      r.cpuRatio !== null
    ) {
      out.push({
        target: `${r.path}, max_results ${at}: CPU ≤ 2× binary Connect`,
        value: `${f(r.cpuRatio!)}×`,
        met: r.cpuRatio! <= 2,
      });
    }
  }
  const nginx = short.find((r) => r.path === "nginx grpc_pass")!;
  for (const r of short) {
    if (!BINARY_GATEWAY.includes(r.path)) continue;
    if (r.cpuVsNginx !== null) {
      out.push({
        target: `${r.path}: fixed CPU per stream ≤ 2× nginx`,
        value: `${f(r.cpuVsNginx)}×`,
        met: r.cpuVsNginx <= 2,
      });
    }
    out.push({
      target: `${r.path}: added first-message latency ≤ nginx's + 5 ms`,
      value: `+${fmt(r.addedFirstMs!, 1)} ms (nginx +${
        fmt(nginx.addedFirstMs!, 1)
      } ms)`,
      met: r.addedFirstMs! <= nginx.addedFirstMs! + 5,
    });
  }
  return out;
}

export const fmt = (n: number | null, digits = 2) =>
  n === null
    ? "–"
    : n.toLocaleString("en-US", { maximumFractionDigits: digits });

export function pacedReport(r: PacedResult): string {
  const lines = [
    `Paced upstream: ${fmt(r.rate, 0)} tuples/s, one message per HTTP/2 DATA ` +
    `write, TLS on both legs; gateway in Kubernetes mode (caller ` +
    `TokenReview/SubjectAccessReview, discovery, minted token). Long streams: ` +
    `${
      fmt(r.plan.tuples, 0)
    } tuples, ${r.plan.reps} interleaved runs per path; ` +
    `short streams: ${SHORT_TUPLES} tuples, ${r.plan.shortReps} runs per path; ` +
    `every stream on a new client connection. Medians; CPU is the middle ` +
    `process's (nginx or the gateway), summed over all runs.`,
    "",
    "| max_results | path | tuples/s | vs direct | middle CPU s / M tuples | CPU vs nginx (JSON: vs binary Connect) |",
    "|---:|---|---:|---:|---:|---:|",
  ];
  for (const row of r.long) {
    lines.push(
      `| ${row.maxResults || "0 (256)"} | ${row.path} | ${
        fmt(row.tuplesPerSecond, 0)
      } | ${fmt(row.vsDirect)} | ${fmt(row.cpuSecondsPerMillionTuples, 3)} | ${
        row.cpuRatio === null
          ? "–"
          : `${fmt(row.cpuRatio)}×${
            row.path.startsWith("gateway NDJSON") ||
              row.path.startsWith("gateway SSE")
              ? " binary"
              : ""
          }`
      } |`,
    );
  }
  const direct = r.long.filter((row) => row.path === "direct");
  lines.push(
    "",
    "Pacing check: the direct client read " +
      direct.map((row) =>
        `${
          fmt(
            median(row.samples.map((s) => s.messagesPerRead ?? NaN)),
          )
        } messages per read at max_results ${row.maxResults || 256}`
      ).join(", ") +
      " (1 = every message arrived alone, as from the real sidecar).",
  );
  lines.push(
    "",
    `Per stream (${SHORT_TUPLES} tuples, new TLS connection each):`,
    "",
    "| path | middle CPU ms / stream | vs nginx | first message (ms) | added vs direct (ms) |",
    "|---|---:|---:|---:|---:|",
  );
  for (const row of r.short) {
    lines.push(
      `| ${row.path} | ${fmt(row.cpuMsPerStream, 1)} | ${
        row.cpuVsNginx === null ? "–" : `${fmt(row.cpuVsNginx)}×`
      } | ${fmt(row.firstMs, 1)} | ${
        row.addedFirstMs === null ? "–" : `+${fmt(row.addedFirstMs, 1)}`
      } |`,
    );
  }
  lines.push("", "Targets (this run):", "");
  for (const t of r.targets) {
    lines.push(`- ${t.met ? "met" : "**missed**"}: ${t.target}: ${t.value}`);
  }
  lines.push("");
  return lines.join("\n");
}

/** The result without per-sample arrays, numbers rounded (committed JSON). */
export function compactPaced(r: PacedResult) {
  const round = (n: number | null) =>
    n === null ? null : Math.round(n * 1000) / 1000;
  const samples = (ss: PacedSample[]) => ({
    tuplesPerSecond: ss.map((s) => Math.round(s.tuplesPerSecond)),
    firstMs: ss.map((s) => round(s.firstMs)),
    cpu: ss.map((s) => round(s.cpu)),
    messagesPerRead: ss.map((s) => round(s.messagesPerRead ?? null)),
  });
  return {
    ...r,
    long: r.long.map((row) => ({
      ...row,
      tuplesPerSecond: Math.round(row.tuplesPerSecond),
      vsDirect: round(row.vsDirect),
      cpuSecondsPerMillionTuples: round(row.cpuSecondsPerMillionTuples),
      cpuRatio: round(row.cpuRatio),
      samples: samples(row.samples),
    })),
    short: r.short.map((row) => ({
      ...row,
      cpuMsPerStream: round(row.cpuMsPerStream),
      cpuVsNginx: round(row.cpuVsNginx),
      firstMs: round(row.firstMs),
      addedFirstMs: round(row.addedFirstMs),
      samples: samples(row.samples),
    })),
  };
}
