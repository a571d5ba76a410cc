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
import { Code, ConnectError } from "@connectrpc/connect";

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

/**
 * The error as one stream ends with it, carrying that stream's resume
 * offset: a copy, since one error (e.g. shutdown) may end many streams.
 */
export function attachNextOffset(
  error: ConnectError,
  nextOffset: number,
): ConnectError {
  const metadata = new Headers(error.metadata);
  metadata.set(NEXT_OFFSET_KEY, String(nextOffset));
  const copy = new ConnectError(
    error.rawMessage,
    error.code,
    metadata,
    undefined,
    error.cause,
  );
  copy.details.push(...error.details);
  Object.defineProperty(copy, RESUMABLE, { value: true });
  return copy;
}

/** What a server shutting down ends its running streams with. */
export function shutdownError(): ConnectError {
  return resumableError("the server is shutting down", Code.Unavailable);
}
