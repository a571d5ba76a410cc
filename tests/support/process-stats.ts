/**
 * What /proc says about a child process that resource tests watch: open
 * file descriptors (sockets included), and a poll that waits for a reading
 * to come down to a bound (closed sockets are released asynchronously).
 */
export function openFds(pid: number): number {
  let n = 0;
  for (const _ of Deno.readDirSync(`/proc/${pid}/fd`)) n++;
  return n;
}

/**
 * Reads `measure` until it is ≤ `bound` or `timeoutMs` passes; returns the
 * last reading either way (the caller asserts on it).
 */
export async function settle(
  measure: () => number,
  bound: number,
  timeoutMs = 5000,
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = measure();
    if (value <= bound || Date.now() > deadline) return value;
    await new Promise((r) => setTimeout(r, 50));
  }
}
