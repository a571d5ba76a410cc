/**
 * The error a backend ends a stream with when its upstream's address or CA
 * changed under it (a watched SnapshotMetadataService moved): retryable, so
 * resume (relay/resume.ts) reopens the call where the service is now, and
 * counts it as "service_changed".
 */
import { Code, ConnectError } from "@connectrpc/connect";

const SERVICE_CHANGED = Symbol("service changed");

export function serviceChanged(message: string): ConnectError {
  const e = new ConnectError(message, Code.Unavailable);
  Object.defineProperty(e, SERVICE_CHANGED, { value: true });
  return e;
}

export function isServiceChanged(e: unknown): boolean {
  return e instanceof ConnectError &&
    (e as unknown as Record<symbol, unknown>)[SERVICE_CHANGED] === true;
}
