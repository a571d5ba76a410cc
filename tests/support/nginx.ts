/**
 * Debian's nginx as a real proxy in tests: a child process on a temp prefix
 * dir, loopback ports picked free (and picked again if another process takes
 * one first), readiness polled from nginx's own log, always stopped and
 * cleaned up. `gatewayNginxConfig` renders the shipped deploy/nginx config
 * for test ports, changing nothing else.
 */
import { ROOT } from "./run.ts";

export const NGINX = "/usr/sbin/nginx";
export const SHIPPED_CONFIG = `${ROOT}/deploy/nginx/cbt-gateway.conf`;

export interface RunningNginx {
  /** The loopback ports the config was rendered with, in order. */
  ports: number[];
  prefix: string;
  errorLog(): Promise<string>;
  accessLog(): Promise<string>;
  close(): Promise<void>;
}

/**
 * The http {} context around the config under test, like Debian's
 * /etc/nginx/nginx.conf — including its `gzip on`, here widened to every
 * type the gateway streams, the worst a parent config can do.
 */
function mainConfig(prefix: string, include: string): string {
  return `worker_processes 1;
events { worker_connections 256; }
http {
    sendfile on;
    tcp_nopush on;
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log ${prefix}/access.log;
    client_body_temp_path ${prefix}/tmp/body;
    proxy_temp_path ${prefix}/tmp/proxy;
    fastcgi_temp_path ${prefix}/tmp/fastcgi;
    uwsgi_temp_path ${prefix}/tmp/uwsgi;
    scgi_temp_path ${prefix}/tmp/scgi;
    gzip on;
    gzip_min_length 1;
    gzip_types application/x-ndjson text/event-stream application/json
               application/proto application/connect+proto application/connect+json
               application/grpc-web+proto application/grpc-web-text+proto;
    include ${include};
}
`;
}

/** A loopback port that was free a moment ago. */
function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function readOr(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch {
    return "";
  }
}

const START_ATTEMPTS = 5;
const READY_TIMEOUT_MS = 10_000;

/**
 * Starts nginx with `render(ports)` (http-context text) on `portCount` free
 * loopback ports. Retries with new ports when a bind fails because another
 * process took a port between picking and binding.
 */
export async function startNginx(
  portCount: number,
  render: (ports: number[]) => string | Promise<string>,
): Promise<RunningNginx> {
  for (let attempt = 1;; attempt++) {
    const prefix = await Deno.makeTempDir({ prefix: "cbt-nginx-" });
    // Workers drop root to nobody; they must reach the prefix.
    await Deno.chmod(prefix, 0o755);
    try {
      const ports = Array.from({ length: portCount }, freePort);
      const started = await tryStart(prefix, ports, await render(ports));
      if (started) return started;
      if (attempt >= START_ATTEMPTS) {
        throw new Error(`nginx: no free ports after ${attempt} attempts`);
      }
    } catch (err) {
      await Deno.remove(prefix, { recursive: true });
      throw err;
    }
    await Deno.remove(prefix, { recursive: true });
  }
}

/** nginx up on `ports`, or undefined when a port was taken (caller retries). */
async function tryStart(
  prefix: string,
  ports: number[],
  config: string,
): Promise<RunningNginx | undefined> {
  await Deno.writeTextFile(`${prefix}/gateway.conf`, config);
  await Deno.writeTextFile(
    `${prefix}/nginx.conf`,
    mainConfig(prefix, `${prefix}/gateway.conf`),
  );
  await Deno.mkdir(`${prefix}/tmp`);
  const errorLogPath = `${prefix}/error.log`;
  const child = new Deno.Command(NGINX, {
    args: [
      "-p",
      prefix,
      "-c",
      `${prefix}/nginx.conf`,
      "-e",
      errorLogPath,
      "-g",
      `daemon off; pid ${prefix}/nginx.pid; error_log ${errorLogPath} notice;`,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const exited = child.output();
  let exitedEarly = false;
  exited.then(() => (exitedEarly = true), () => (exitedEarly = true));

  const running: RunningNginx = {
    ports,
    prefix,
    errorLog: () => readOr(errorLogPath),
    accessLog: () => readOr(`${prefix}/access.log`),
    close: () => stop(child, exited, prefix),
  };
  // The master binds every listener before it starts a worker, so this line
  // means all ports are ours.
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!exitedEarly) {
    if ((await running.errorLog()).includes("start worker process")) {
      return running;
    }
    if (Date.now() > deadline) {
      await stop(child, exited, undefined);
      throw new Error(
        `nginx not ready in ${READY_TIMEOUT_MS} ms:\n${await running
          .errorLog()}`,
      );
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const out = await exited;
  const log = (await running.errorLog()) + new TextDecoder().decode(out.stderr);
  if (/bind\(\) to .* failed \(98: Address already in use\)/.test(log)) {
    return undefined;
  }
  throw new Error(`nginx exited with ${out.code}:\n${log}`);
}

/** Fast shutdown (SIGTERM: the master stops its worker and exits). */
async function stop(
  child: Deno.ChildProcess,
  exited: Promise<Deno.CommandOutput>,
  prefix: string | undefined,
): Promise<void> {
  const workers = await workerPids(child.pid);
  try {
    child.kill("SIGTERM");
  } catch { /* already gone */ }
  const timeout = new Promise<"timeout">((r) => {
    const t = setTimeout(() => r("timeout"), 5000);
    exited.finally(() => clearTimeout(t));
  });
  if (
    await Promise.race([exited.then(() => "done" as const), timeout]) ===
      "timeout"
  ) {
    for (const pid of [child.pid, ...workers]) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* already gone */ }
    }
    await exited;
  }
  if (prefix) await Deno.remove(prefix, { recursive: true });
}

/** The master's children, so a hung master can't leave a worker behind. */
async function workerPids(pid: number): Promise<number[]> {
  const text = await readOr(`/proc/${pid}/task/${pid}/children`);
  return text.trim().split(/\s+/).filter((s) => s !== "").map(Number);
}

export interface GatewayNginxPorts {
  /** nginx's listeners. */
  listenHttp: number;
  listenGrpc: number;
  /** The gateway's --port and --grpc-port. */
  gatewayHttp: number;
  gatewayGrpc: number;
  /** nginx time syntax, e.g. "2s": both proxy_read_timeout and grpc_read_timeout. */
  readTimeout: string;
  /** More replicas: each adds a `server` line to both upstream blocks. */
  replicas?: { gatewayHttp: number; gatewayGrpc: number }[];
}

/**
 * deploy/nginx/cbt-gateway.conf with its ports and read timeouts replaced —
 * each replaced line must occur exactly once, so a changed config fails here
 * instead of silently testing something else.
 */
export async function gatewayNginxConfig(
  o: GatewayNginxPorts,
): Promise<string> {
  let text = await Deno.readTextFile(SHIPPED_CONFIG);
  const replace: [RegExp, string][] = [
    [/^(\s*)listen 80;$/m, `$1listen 127.0.0.1:${o.listenHttp};`],
    [
      /^(\s*)listen 50051 http2;$/m,
      `$1listen 127.0.0.1:${o.listenGrpc} http2;`,
    ],
    [
      /^(\s*)server 127\.0\.0\.1:8080;$/m,
      (o.replicas ?? []).reduce(
        (lines, r) => `${lines}\n$1server 127.0.0.1:${r.gatewayHttp};`,
        `$1server 127.0.0.1:${o.gatewayHttp};`,
      ),
    ],
    [
      /^(\s*)server 127\.0\.0\.1:8081;$/m,
      (o.replicas ?? []).reduce(
        (lines, r) => `${lines}\n$1server 127.0.0.1:${r.gatewayGrpc};`,
        `$1server 127.0.0.1:${o.gatewayGrpc};`,
      ),
    ],
    [
      /^(\s*)proxy_read_timeout 1h;$/m,
      `$1proxy_read_timeout ${o.readTimeout};`,
    ],
    [/^(\s*)grpc_read_timeout 1h;$/m, `$1grpc_read_timeout ${o.readTimeout};`],
  ];
  for (const [pattern, replacement] of replace) {
    const all = new RegExp(pattern.source, "gm");
    const count = [...text.matchAll(all)].length;
    if (count !== 1) {
      throw new Error(
        `${SHIPPED_CONFIG}: expected one line matching ${pattern}, found ${count}`,
      );
    }
    text = text.replace(pattern, replacement);
  }
  return text;
}
