/**
 * Polling, never a fixed sleep: a test waits for what it needs (a server
 * that noticed a disconnect, a file that closed, a watch that reconnected)
 * by checking it every few milliseconds, and fails after a bound.
 */

export interface WaitOptions {
  /** Fail after this long (default 10 s: generous, so a loaded machine doesn't fail it). */
  timeoutMs?: number;
  /** Pause between checks (default 10 ms). */
  intervalMs?: number;
}

/**
 * Resolves once `condition` holds; rejects with "timed out waiting for
 * <what>" after `timeoutMs`. The condition may be async (e.g. a scrape).
 */
export async function waitFor(
  what: string,
  condition: () => boolean | Promise<boolean>,
  options: WaitOptions = {},
): Promise<void> {
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 10));
  }
}
