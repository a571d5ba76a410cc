/**
 * The edge bundle on real runtimes: builds `dist/cbt-gateway-edge.js` with
 * the project's own task, and starts it under workerd, Bun, Node or Deno
 * through the hosts in src/adapter/. workerd and Bun come from npm (`npx`,
 * pinned versions; .ci/run fetches them before the tests), Node is the one
 * on PATH.
 */
import { ROOT } from "./run.ts";

export const EDGE_RUNTIMES = ["workerd", "bun", "node", "deno"] as const;
export type EdgeRuntime = (typeof EDGE_RUNTIMES)[number];

export const BUNDLE = `${ROOT}/dist/cbt-gateway-edge.js`;
const WORKERD = "workerd@1.20261117.1";
const BUN = "bun@1.4.4";

export interface RunningEdge {
  runtime: EdgeRuntime;
  url: string;
  /** The host process (for the bench's CPU and memory figures). */
  pid: number;
  /** What the host printed so far (stdout and stderr). */
  output(): string;
  close(): Promise<void>;
}

let built: Promise<void> | undefined;

/** `deno task build:edge`, once per test process. */
export function buildEdgeBundle(): Promise<void> {
  return built ??= (async () => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["task", "build:edge"],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(
        `deno task build:edge failed: ${new TextDecoder().decode(out.stderr)}`,
      );
    }
  })();
}

const binaries = new Map<string, Promise<string>>();

/** The path of an npm package's binary, installed by npx on first use. */
function npxBinary(pkg: string, bin: string): Promise<string> {
  let found = binaries.get(pkg);
  if (!found) {
    found = (async () => {
      const out = await new Deno.Command("npx", {
        args: ["--yes", "-p", pkg, "-c", `readlink -f "$(command -v ${bin})"`],
        cwd: "/",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const path = new TextDecoder().decode(out.stdout).trim();
      if (!out.success || path === "") {
        throw new Error(
          `npx ${pkg}: ${new TextDecoder().decode(out.stderr)}`,
        );
      }
      return path;
    })();
    binaries.set(pkg, found);
  }
  return found;
}

/** A port nobody listens on right now (workerd can't report an ephemeral one). */
function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function command(
  runtime: EdgeRuntime,
): Promise<{ cmd: string; args: string[]; port?: number }> {
  switch (runtime) {
    case "deno":
      return {
        cmd: Deno.execPath(),
        args: [
          "run",
          "--allow-net",
          "--allow-env",
          "--allow-read",
          "src/adapter/deno/edge-host.ts",
          BUNDLE,
        ],
      };
    case "node":
      return { cmd: "node", args: ["src/adapter/node/edge-host.mjs", BUNDLE] };
    case "bun":
      return {
        cmd: await npxBinary(BUN, "bun"),
        args: ["src/adapter/bun/edge-host.ts", BUNDLE],
      };
    case "workerd": {
      const port = freePort();
      return {
        cmd: await npxBinary(WORKERD, "workerd"),
        args: [
          "serve",
          "src/adapter/workerd/edge.capnp",
          "--socket-addr",
          `http=127.0.0.1:${port}`,
        ],
        port,
      };
    }
  }
}

/** Starts the built bundle under `runtime`, configured by `env`. */
export async function startEdgeHost(
  runtime: EdgeRuntime,
  env: Record<string, string>,
): Promise<RunningEdge> {
  await buildEdgeBundle();
  const { cmd, args, port } = await command(runtime);
  const child = new Deno.Command(cmd, {
    args,
    cwd: ROOT,
    env: { ...env, CBT_GATEWAY_HOST: "127.0.0.1", CBT_GATEWAY_PORT: "0" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let output = "";
  const listening = Promise.withResolvers<string>();
  const drain = (stream: ReadableStream<Uint8Array>) =>
    stream.pipeThrough(new TextDecoderStream()).pipeTo(
      new WritableStream({
        write(text) {
          output += text;
          const url = /edge on \w+: (http:\/\/\S+)/.exec(output)?.[1];
          if (url) listening.resolve(url);
        },
      }),
    );
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
  const close = async () => {
    const kill = (signal: Deno.Signal) => {
      try {
        child.kill(signal);
      } catch { /* already gone */ }
    };
    kill("SIGTERM");
    // workerd drains open requests on SIGTERM; don't wait on a stuck one.
    const timer = setTimeout(() => kill("SIGKILL"), 5_000);
    await child.status;
    clearTimeout(timer);
    await drained;
  };
  try {
    const url = port === undefined
      ? await within(listening.promise, child.status, () => output)
      : `http://127.0.0.1:${port}`;
    await waitForHealthy(url, child.status, () => output);
    return { runtime, url, pid: child.pid, output: () => output, close };
  } catch (e) {
    await close();
    throw e;
  }
}

const START_TIMEOUT_MS = 30_000;

async function within<T>(
  ready: Promise<T>,
  exited: Promise<Deno.CommandStatus>,
  output: () => string,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      ready,
      exited.then((s) => {
        throw new Error(`edge host exited (${s.code}): ${output()}`);
      }),
      new Promise<never>((_, reject) =>
        timer = setTimeout(
          () => reject(new Error(`edge host did not start: ${output()}`)),
          START_TIMEOUT_MS,
        )
      ),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls /healthz until the edge answers (workerd prints nothing when up). */
async function waitForHealthy(
  url: string,
  exited: Promise<Deno.CommandStatus>,
  output: () => string,
): Promise<void> {
  let exitedEarly = false;
  exited.then(() => exitedEarly = true);
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (exitedEarly) throw new Error(`edge host exited: ${output()}`);
    try {
      const response = await fetch(`${url}/healthz`);
      await response.body?.cancel();
      if (response.ok) return;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) {
      throw new Error(`edge host at ${url} never became healthy: ${output()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
