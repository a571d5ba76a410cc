/**
 * The processes a benchmark measures besides cbt-gateway instances
 * (tests/support/gateway-process.ts): Debian's nginx as a child process, and
 * what /proc says about any of them (CPU time, resident memory, peak
 * resident memory).
 */
import { stopChild } from "../tests/support/run.ts";
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
 * relaying h2c gRPC to `upstream` with `grpc_pass`, long timeouts for long
 * streams and small buffers so it streams rather than stores.
 */
export async function startNginx(
  upstream: URL,
  dir: string,
): Promise<Child & { url: string }> {
  const port = freePort();
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
    listen 127.0.0.1:${port} http2;
    location / {
      grpc_pass grpc://${upstream.host};
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
    url: `http://127.0.0.1:${port}`,
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
