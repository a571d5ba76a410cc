/**
 * `deno run -A bench/cpuprofile.ts <file.cpuprofile> [top]`: where a V8 CPU
 * profile (`deno run --cpu-prof`) spent its busy time — self time by
 * function and by layer (our src/, connect-es, Deno's node:http2 and other
 * node-compat code, Deno's web streams and HTTP server, Deno's native
 * bindings, V8's GC, native code V8 cannot attribute), as shares of the
 * non-idle time.
 */

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  startTime: number;
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  busyMs: number;
  idleMs: number;
  layers: { layer: string; share: number }[];
  functions: { name: string; layer: string; share: number }[];
}

/** Which part of the stack a frame belongs to, from its script URL. */
export function layerOf(f: CallFrame): string {
  const u = f.url;
  if (u === "") {
    if (f.functionName === "(garbage collector)") return "V8 GC";
    if (f.functionName === "(program)") return "native (unattributed)";
    // Deno's native bindings (ops) called from JS: no script URL.
    return "native bindings (socket I/O, TLS, nghttp2)";
  }
  if (u.includes("/src/")) return "gateway src/";
  if (u.includes("@connectrpc")) return "connect-es";
  if (u.includes("@bufbuild")) return "protobuf-es";
  if (u.includes("@kubernetes") || u.includes("node_modules")) {
    return "other npm";
  }
  if (/ext:deno_node\/.*http2|internal\/http2/.test(u)) return "node:http2";
  if (u.startsWith("ext:deno_node") || u.startsWith("node:")) {
    return "node compat (streams, net, tls, events)";
  }
  if (u.startsWith("ext:deno_http")) return "Deno.serve";
  if (u.startsWith("ext:deno_web") || u.startsWith("ext:deno_fetch")) {
    return "web streams, fetch";
  }
  if (u.startsWith("ext:")) return "other Deno runtime JS";
  return "other";
}

function shortUrl(url: string): string {
  const src = url.indexOf("/src/");
  if (src >= 0) return url.slice(src + 1);
  const nm = url.lastIndexOf("node_modules/");
  if (nm >= 0) return url.slice(nm + 13).replace(/^\.deno\/[^/]+\//, "");
  return url;
}

/**
 * Seconds on the clock V8 stamps profiles with (CLOCK_MONOTONIC, which is
 * /proc/uptime's on a machine that never suspends), to cut a window out of
 * another process's profile.
 */
export function profileClock(): number {
  return Number(Deno.readTextFileSync("/proc/uptime").split(" ")[0]);
}

/**
 * Self time per function and layer; with `window` (profileClock() seconds),
 * only samples taken inside it (the measured streams, not startup).
 */
export function summarize(
  profile: CpuProfile,
  top = 25,
  window?: { from: number; to: number },
): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i] ?? 0;
    t += dt;
    if (window && (t < window.from * 1e6 || t > window.to * 1e6)) continue;
    const id = profile.samples[i];
    self.set(id, (self.get(id) ?? 0) + dt);
  }
  let idle = 0, busy = 0;
  const fn = new Map<string, { layer: string; us: number }>();
  const layers = new Map<string, number>();
  for (const [id, us] of self) {
    const f = byId.get(id)!.callFrame;
    if (f.functionName === "(idle)") {
      idle += us;
      continue;
    }
    busy += us;
    const layer = layerOf(f);
    layers.set(layer, (layers.get(layer) ?? 0) + us);
    const name = f.url === ""
      ? f.functionName
      : `${f.functionName || "(anonymous)"} ${shortUrl(f.url)}:${
        f.lineNumber + 1
      }`;
    const e = fn.get(name) ?? { layer, us: 0 };
    e.us += us;
    fn.set(name, e);
  }
  return {
    busyMs: busy / 1000,
    idleMs: idle / 1000,
    layers: [...layers].sort((a, b) => b[1] - a[1]).map(([layer, us]) => ({
      layer,
      share: us / busy,
    })),
    functions: [...fn].sort((a, b) => b[1].us - a[1].us).slice(0, top).map((
      [name, e],
    ) => ({ name, layer: e.layer, share: e.us / busy })),
  };
}

export function formatSummary(s: ProfileSummary): string {
  const pct = (x: number) => `${(x * 100).toFixed(1)} %`;
  return [
    `busy ${s.busyMs.toFixed(0)} ms (idle ${s.idleMs.toFixed(0)} ms)`,
    "",
    "| layer | share of busy |",
    "|---|---:|",
    ...s.layers.map((l) => `| ${l.layer} | ${pct(l.share)} |`),
    "",
    "| function (self time) | layer | share |",
    "|---|---|---:|",
    ...s.functions.map((f) =>
      `| \`${f.name.replaceAll("|", "\\|")}\` | ${f.layer} | ${pct(f.share)} |`
    ),
  ].join("\n");
}

if (import.meta.main) {
  const [file, top] = Deno.args;
  if (!file) {
    console.error("usage: bench/cpuprofile.ts <file.cpuprofile> [top]");
    Deno.exit(2);
  }
  const profile = JSON.parse(await Deno.readTextFile(file)) as CpuProfile;
  console.log(formatSummary(summarize(profile, Number(top ?? 25))));
}
