/**
 * The processes a benchmark measures besides cbt-gateway instances
 * (tests/support/gateway-process.ts): Debian's nginx as a child process, and
 * what /proc says about any of them (CPU time, resident memory, peak
 * resident memory).
 */
import { ROOT, stopChild } from "../tests/support/run.ts";
import { waitFor } from "../tests/support/wait.ts";

const CLOCK_TICKS = 100; // getconf CLK_TCK on Linux

export interface Child {
  pid: number;
  stop(): Promise<void>;
}

/** A free loopback port (nginx can't listen on port 0 and report it). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/**
 * nginx as a single process (`master_process off`, so its CPU is one pid's)
 * relaying gRPC to `upstream` with `grpc_pass`, long timeouts for long
 * streams and small buffers so it streams rather than stores. An https
 * upstream is reached with `grpcs://`; with `tls` nginx serves TLS too.
 */
export async function startNginx(
  upstream: URL,
  dir: string,
  tls?: { certPath: string; keyPath: string },
): Promise<Child & { url: string }> {
  const port = freePort();
  const scheme = upstream.protocol === "https:" ? "grpcs" : "grpc";
  const conf = `master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  server {
    listen 127.0.0.1:${port}${tls ? " ssl" : ""} http2;${
    tls
      ? `
    ssl_certificate ${tls.certPath};
    ssl_certificate_key ${tls.keyPath};`
      : ""
  }
    location / {
      grpc_pass ${scheme}://${upstream.host};
      grpc_read_timeout 1h;
      grpc_send_timeout 1h;
      grpc_buffer_size 64k;
    }
  }
}
`;
  await Deno.writeTextFile(`${dir}/nginx.conf`, conf);
  const child = new Deno.Command("/usr/sbin/nginx", {
    args: [
      "-p",
      dir,
      "-e",
      `${dir}/error.log`,
      "-c",
      `${dir}/nginx.conf`,
      "-g",
      "daemon off;",
    ],
    stdout: "null",
    stderr: "inherit",
    stdin: "null",
  }).spawn();
  // Ready when the port accepts connections.
  try {
    await waitFor("nginx to accept connections", async () => {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port })).close();
        return true;
      } catch {
        return false;
      }
    }, { intervalMs: 20 });
  } catch (e) {
    await stopChild(child);
    throw e;
  }
  return {
    pid: child.pid,
    url: `${tls ? "https" : "http"}://127.0.0.1:${port}`,
    stop: async () => {
      await stopChild(child);
    },
  };
}

/** User + system CPU seconds a process has used so far. */
export function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // Fields after the parenthesised command name; utime and stime are 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** Current and peak resident set, in bytes. */
export function memory(pid: number): { rss: number; peak: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = (name: string) =>
    Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0) *
    1024;
  return { rss: kb("VmRSS"), peak: kb("VmHWM") };
}

/** Resets the peak resident set (VmHWM) so the next reading covers one run. */
export function resetPeak(pid: number): void {
  try {
    Deno.writeTextFileSync(`/proc/${pid}/clear_refs`, "5");
  } catch { /* not permitted here: peaks then cover the whole process life */ }
}

/**
 * bench/paced-upstream.ts as its own process (a sidecar stand-in at driver
 * speed, TLS); resolves with its `127.0.0.1:<port>` once it listens.
 */
export async function startPacedUpstream(
  tls: { certPath: string; keyPath: string },
  tuplesPerSecond: number,
): Promise<Child & { address: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      `${ROOT}/bench/paced-upstream.ts`,
      "--cert",
      tls.certPath,
      "--key",
      tls.keyPath,
      "--rate",
      String(tuplesPerSecond),
    ],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "inherit",
    stdin: "null",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const deadline = setTimeout(() => child.kill("SIGKILL"), 30_000);
  let text = "", address: string | undefined;
  while (!address) {
    const { value, done } = await lines.read();
    if (done) {
      clearTimeout(deadline);
      throw new Error(`paced upstream exited before listening:\n${text}`);
    }
    text += value;
    address = /paced upstream: (\S+)/.exec(text)?.[1];
  }
  clearTimeout(deadline);
  (async () => {
    while (!(await lines.read()).done) { /* discard */ }
  })().catch(() => {});
  return {
    pid: child.pid,
    address,
    stop: async () => {
      await stopChild(child);
    },
  };
}

/**
 * The gateway as of git `ref`, unpacked beside the bench (src/, gen/,
 * deno.json, deno.lock; node_modules shared), for before/after rows in one
 * run. Returns its root; the caller removes `dir`.
 */
export async function checkoutBaseline(
  ref: string,
  dir: string,
): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const archive = new Deno.Command("git", {
    args: ["-C", ROOT, "archive", ref, "src", "gen", "deno.json", "deno.lock"],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const tar = new Deno.Command("tar", {
    args: ["-x", "-C", dir],
    stdin: "piped",
    stderr: "inherit",
  }).spawn();
  await archive.stdout.pipeTo(tar.stdin);
  const [a, t] = await Promise.all([archive.output(), tar.status]);
  if (!a.success || !t.success) {
    throw new Error(
      `git archive ${ref}: ${new TextDecoder().decode(a.stderr)}`,
    );
  }
  await Deno.symlink(`${ROOT}/node_modules`, `${dir}/node_modules`);
  return dir;
}
