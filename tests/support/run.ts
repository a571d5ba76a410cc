/**
 * Child processes: run a command to completion (exit code and output), or
 * stop one that keeps running.
 */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function run(
  cmd: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string>; stdin?: Uint8Array } =
    {},
): Promise<RunResult> {
  const child = new Deno.Command(cmd, {
    args,
    cwd: options.cwd,
    env: { NO_COLOR: "1", ...options.env },
    stdin: options.stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin) {
    const writer = child.stdin.getWriter();
    await writer.write(options.stdin);
    await writer.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}

/** The project root (tests run from anywhere). */
export const ROOT = new URL("../..", import.meta.url).pathname.replace(
  /\/$/,
  "",
);

/** PATH with the project's npm binaries (buf, protoc-gen-es) first. */
export function pathWithNodeBin(): string {
  return `${ROOT}/node_modules/.bin:${Deno.env.get("PATH") ?? ""}`;
}

/**
 * Stops a running child: SIGTERM (a gateway shuts down gracefully on it),
 * SIGKILL if it is still there after `graceMs`; resolves with its status.
 */
export async function stopChild(
  child: Deno.ChildProcess,
  graceMs = 5000,
): Promise<Deno.CommandStatus> {
  try {
    child.kill("SIGTERM");
  } catch { /* already gone */ }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }, graceMs);
  try {
    return await child.status;
  } finally {
    clearTimeout(timer);
  }
}
