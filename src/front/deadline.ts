/**
 * Client deadlines as timers. `setTimeout` fires at once for a delay of
 * 2^31 ms or more (~24.8 days), yet Connect allows up to 10 digits of
 * milliseconds and gRPC 8 digits of hours: such a legal, long deadline
 * must not end the call at once. Longer waits go in steps.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Calls `fire` after `ms`; returns the cancel function. */
export function setDeadlineTimer(ms: number, fire: () => void): () => void {
  let timer: ReturnType<typeof setTimeout>;
  const arm = (left: number) => {
    timer = setTimeout(
      () => left > MAX_TIMER_MS ? arm(left - MAX_TIMER_MS) : fire(),
      Math.min(left, MAX_TIMER_MS),
    );
  };
  arm(ms);
  return () => clearTimeout(timer);
}
