/**
 * cbt-gateway as its own process: `src/main.ts` run the way `deno task
 * start` runs it, on ephemeral loopback ports, ready once it has printed
 * both URLs. For tests that need a real process (a crash must not take the
 * test runner down, memory is read from /proc) and for the benchmarks.
 */
import { ROOT, stopChild } from "./run.ts";

export interface GatewayProcess {
  pid: number;
  /** Connect, gRPC-Web, HTTP/JSON. */
  httpUrl: string;
  /** Native gRPC (HTTP/2). */
  grpcUrl: string;
  /** The exit status once the process has ended; `undefined` while it runs. */
  exited(): Deno.CommandStatus | undefined;
  /** SIGTERM (SIGKILL after 5 s), then waits for the exit. */
  stop(): Promise<void>;
}

/** How long a gateway may take to start listening before it is killed. */
const START_TIMEOUT_MS = 30_000;

/** Starts `src/main.ts` with `args` (plus ephemeral ports); resolves once it listens. */
export async function startGatewayProcess(
  args: string[],
  options: {
    denoFlags?: string[];
    /** The checkout to run (another one for a baseline); default this one. */
    root?: string;
  } = {},
): Promise<GatewayProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      // As `deno task start` runs it (see deno.json).
      "--unstable-no-legacy-abort",
      "--allow-all",
      ...options.denoFlags ?? [],
      `${options.root ?? ROOT}/src/main.ts`,
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--grpc-port",
      "0",
      ...args,
    ],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "inherit",
    stdin: "null",
  }).spawn();
  let status: Deno.CommandStatus | undefined;
  const done = child.status.then((s) => status = s);
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const killer = setTimeout(() => child.kill("SIGKILL"), START_TIMEOUT_MS);
  let text = "";
  let httpUrl: string | undefined, grpcUrl: string | undefined;
  try {
    while (!httpUrl || !grpcUrl) {
      const { value, done } = await lines.read();
      if (done) throw new Error(`gateway exited before listening:\n${text}`);
      text += value;
      httpUrl ??= /HTTP\/JSON:\s+(\S+)/.exec(text)?.[1];
      grpcUrl ??= /native gRPC \(HTTP\/2\):\s+(\S+)/.exec(text)?.[1];
    }
  } catch (e) {
    await stopChild(child);
    throw e;
  } finally {
    clearTimeout(killer);
  }
  // Keep draining stdout (the access log) so the child never blocks on a full pipe.
  const drained = (async () => {
    while (!(await lines.read()).done) { /* discard */ }
  })().catch(() => {});
  return {
    pid: child.pid,
    httpUrl,
    grpcUrl,
    exited: () => status,
    async stop() {
      if (!status) await stopChild(child);
      await done;
      await drained;
    },
  };
}
