/**
 * Reading a request body whole, the one way every front does it: bounded in
 * size, bounded in time, and with every way a body can fail turned into a
 * ConnectError with a code the client can act on.
 *
 * - larger than `maxBytes`: ResourceExhausted, read no further;
 * - cut short (fewer bytes than Content-Length, then half-close or reset; a
 *   broken chunked encoding): InvalidArgument — not `unknown`, it is the
 *   request that is broken;
 * - the caller's deadline passes first: DeadlineExceeded;
 * - not all there within `timeoutMs` (a slow-loris body): DeadlineExceeded,
 *   and the body is cancelled so the connection can be closed.
 *
 * Runtime-neutral: a Web ReadableStream or any async iterable of bytes.
 */
import { Code, ConnectError } from "@connectrpc/connect";

/** A request is a few hundred bytes; a client still sending after this is stalling. */
export const BODY_TIMEOUT_MS = 10_000;

export interface ReadBodyOptions {
  maxBytes: number;
  /** Aborts the read (client gone, or its deadline); its reason is thrown. */
  signal?: AbortSignal;
  /** The whole body must arrive within this (default BODY_TIMEOUT_MS). */
  timeoutMs?: number;
}

export async function readRequestBody(
  body: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array> | null,
  options: ReadBodyOptions,
): Promise<Uint8Array> {
  if (body === null) return new Uint8Array(0);
  // A Web stream is read through its own reader: reader.cancel() ends a
  // read still pending (a stalled body), where an async iterator's return()
  // would queue behind it and never run.
  const reader = body instanceof ReadableStream ? body.getReader() : undefined;
  const iterator: AsyncIterator<Uint8Array> = reader
    ? {
      next: async () => {
        const r = await reader.read();
        return r.done ? { done: true, value: undefined } : r;
      },
      return: async () => {
        await reader.cancel();
        reader.releaseLock();
        return { done: true, value: undefined };
      },
    }
    : body[Symbol.asyncIterator]();
  // Not Promise.withResolvers: the edge bundle also runs on Node 20.
  let reject!: (reason: unknown) => void;
  const stop = {
    promise: new Promise<never>((_, r) => (reject = r)),
    reject: (reason: unknown) => reject(reason),
  };
  stop.promise.catch(() => {}); // raced below; never unhandled
  const timeoutMs = options.timeoutMs ?? BODY_TIMEOUT_MS;
  const timer = setTimeout(
    () =>
      stop.reject(
        new ConnectError(
          `request body not received within ${timeoutMs / 1000} s`,
          Code.DeadlineExceeded,
        ),
      ),
    timeoutMs,
  );
  const onAbort = () => stop.reject(abortReason(options.signal!));
  options.signal?.addEventListener("abort", onAbort, { once: true });
  if (options.signal?.aborted) onAbort();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      let r: IteratorResult<Uint8Array>;
      try {
        r = await Promise.race([iterator.next(), stop.promise]);
      } catch (e) {
        throw e instanceof ConnectError ? e : new ConnectError(
          `request body ended early: ${(e as Error)?.message ?? e}`,
          Code.InvalidArgument,
        );
      }
      if (r.done) break;
      size += r.value.byteLength;
      if (size > options.maxBytes) {
        throw new ConnectError(
          `request body exceeds ${options.maxBytes} bytes`,
          Code.ResourceExhausted,
        );
      }
      chunks.push(r.value);
    }
  } catch (e) {
    // Stop reading, so the runtime closes the connection rather than wait
    // for the rest of a body nobody will read — on the next turn: Deno's
    // HTTP/1.1 server drains a body dropped before the answer is set, and
    // closes the connection for one dropped after (the answer is set within
    // this turn's microtasks). connect-es's iterable over a fetch body has
    // no return(); its throw() cancels the reader.
    setTimeout(() => {
      const stopped = iterator.return ? iterator.return() : iterator.throw?.(e);
      stopped?.catch(() => {});
    }, 0);
    throw e;
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener("abort", onAbort);
  }
  if (chunks.length === 1) return chunks[0];
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.byteLength;
  }
  return all;
}

function abortReason(signal: AbortSignal): ConnectError {
  return signal.reason instanceof ConnectError
    ? signal.reason
    : new ConnectError("the call was cancelled", Code.Canceled);
}
