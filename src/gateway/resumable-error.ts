/**
 * Errors a client can continue after: they carry the offset to send as
 * `starting_offset` in the metadata key `cbt-next-offset`, which every binary
 * protocol delivers (Connect end-of-stream metadata, gRPC and gRPC-Web
 * trailers); HTTP/JSON's error record has it as `nextOffset`.
 *
 * The offset is only known when the error reaches the client (messages
 * already queued still go out before it), so the checked stream attaches
 * it then.
 */
import { type Code, ConnectError } from "@connectrpc/connect";

/** The metadata key (trailer) carrying the offset to resume from. */
export const NEXT_OFFSET_KEY = "cbt-next-offset";

/** Marks errors that end a stream which the client should resume. */
const RESUMABLE = Symbol("resumable");

/** An error that ends a stream resumably (e.g. the gateway's duration cap). */
export function resumableError(message: string, code: Code): ConnectError {
  const e = new ConnectError(message, code);
  Object.defineProperty(e, RESUMABLE, { value: true });
  return e;
}

export function isResumable(e: unknown): e is ConnectError {
  return e instanceof ConnectError &&
    (e as unknown as Record<symbol, unknown>)[RESUMABLE] === true;
}

/** Sets (or replaces) the resume offset an error carries. */
export function attachNextOffset(
  error: ConnectError,
  nextOffset: number,
): ConnectError {
  error.metadata.set(NEXT_OFFSET_KEY, String(nextOffset));
  return error;
}
