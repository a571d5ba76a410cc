/**
 * One gRPC call over node:http2 whose response messages come back as raw
 * bytes, not decoded objects — as runs of whole envelopes, so the relay
 * forwards them as they are, several per write. Plain
 * 'data'/'end' events with pause/resume (connect-node's transport sometimes
 * fails with "Premature close" inside Deno), a bounded queue for
 * backpressure, the status from trailers (or a Trailers-Only response), and
 * the caller's signal cancels the HTTP/2 stream.
 */
import * as http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import {
  codeFromHttpStatus,
  validateTrailer,
} from "@connectrpc/connect/protocol-grpc";
import {
  EnvelopeError,
  EnvelopeQueue,
  messagesOfRuns,
} from "../../wire/envelopes.ts";
import { webHeaders } from "./headers.ts";

/** Messages larger than this are refused (a 2048-tuple message is ~25 KB). */
const READ_MAX_BYTES = 16 * 1024 * 1024;
/** Stop reading from the socket while this much is waiting for the consumer. */
const HIGH_WATER_BYTES = 256 * 1024;

export interface RawCallOptions {
  signal: AbortSignal;
  /** Extra request headers (authorization). */
  headers?: Record<string, string>;
}

/**
 * One call's response as runs of whole envelopes (flags 0), as many as have
 * arrived per run: the relay checks them in place and forwards each run with
 * one write. Ends cleanly only on grpc-status 0; any other end is a
 * ConnectError.
 */
export async function* rawGrpcRuns(
  session: http2.ClientHttp2Session,
  path: string,
  request: Uint8Array,
  options: RawCallOptions,
): AsyncGenerator<Uint8Array> {
  options.signal.throwIfAborted();
  const stream = session.request({
    ":method": "POST",
    ":path": path,
    "content-type": "application/grpc+proto",
    te: "trailers",
    ...options.headers,
  });
  const queue = new EnvelopeQueue(READ_MAX_BYTES);
  let responseHeaders: Headers | undefined;
  let httpStatus = 0;
  let trailers = new Headers();
  let ended = false;
  let failure: unknown;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };

  stream.on("response", (h) => {
    httpStatus = Number(h[":status"]);
    responseHeaders = webHeaders(h);
  });
  stream.on("data", (chunk: Uint8Array) => {
    if (failure !== undefined) return;
    try {
      queue.push(chunk);
    } catch (e) {
      // Compression was not offered, so a flagged message is a broken peer.
      failure = asEnvelopeError(e);
      stream.close(http2.constants.NGHTTP2_CANCEL);
    }
    // Count whole messages only: pausing on a partial one would deadlock.
    if (queue.complete > HIGH_WATER_BYTES) stream.pause();
    // Wake the consumer only for whole messages (a 2048-tuple message spans
    // two DATA frames).
    if (queue.complete > 0 || failure !== undefined) notify();
  });
  stream.on("trailers", (t) => {
    trailers = webHeaders(t);
  });
  stream.on("end", () => {
    ended = true;
    notify();
  });
  // REFUSED_STREAM before any response: the upstream never ran the call
  // (RFC 9113 §8.7), e.g. it raced the upstream's GOAWAY. Say so precisely,
  // so the caller may send it again.
  const refusedUnanswered = () =>
    responseHeaders === undefined && !options.signal.aborted &&
    stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM;
  stream.on("error", (e) => {
    failure ??= refusedUnanswered() ? refusedStream() : e;
    notify();
  });
  stream.on("close", () => {
    if (refusedUnanswered()) failure = refusedStream();
    if (!ended && failure === undefined) {
      failure = options.signal.aborted
        ? new ConnectError("call cancelled by the client", Code.Canceled)
        : new ConnectError(
          `upstream stream closed before its end (HTTP/2 code ${stream.rstCode})`,
          Code.Unavailable,
        );
    }
    notify();
  });
  const onAbort = () => stream.close(http2.constants.NGHTTP2_CANCEL);
  options.signal.addEventListener("abort", onAbort, { once: true });
  stream.end(encodeEnvelope(0, request));

  try {
    for (;;) {
      if (queue.complete > 0) {
        const run = queue.take();
        if (stream.isPaused()) stream.resume();
        yield run;
        continue;
      }
      if (failure !== undefined) throw callError(failure, options.signal);
      if (ended) break;
      await new Promise<void>((resolve) => (wake = resolve));
    }
    if (httpStatus !== 200) {
      throw new ConnectError(
        `upstream answered HTTP ${httpStatus}`,
        codeFromHttpStatus(httpStatus),
      );
    }
    if (queue.size > 0) {
      throw new ConnectError(
        "upstream stream ended inside a message",
        Code.Internal,
      );
    }
    // A Trailers-Only response carries its status in the headers.
    const header = responseHeaders ?? new Headers();
    validateTrailer(trailers.has("grpc-status") ? trailers : header, header);
  } finally {
    options.signal.removeEventListener("abort", onAbort);
    if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
  }
}

const REFUSED = Symbol("refused before any response");

function refusedStream(): ConnectError {
  const e = new ConnectError(
    "upstream refused the stream before answering (REFUSED_STREAM)",
    Code.Unavailable,
  );
  Object.defineProperty(e, REFUSED, { value: true });
  return e;
}

/** True for a call the upstream refused unanswered: it never ran there. */
export function wasRefused(e: unknown): boolean {
  return e instanceof ConnectError &&
    (e as unknown as Record<symbol, unknown>)[REFUSED] === true;
}

/**
 * Starts a call with `open`; if the upstream refused it unanswered, starts
 * it once more (`open` picks the connection anew, so a session that just
 * got a GOAWAY is not used twice). Safe because a refused call never ran.
 */
export async function* retryIfRefused<T>(
  open: () => AsyncGenerator<T>,
): AsyncGenerator<T> {
  const first = open();
  let r: IteratorResult<T>;
  try {
    r = await first.next();
  } catch (e) {
    if (!wasRefused(e)) throw e;
    yield* open();
    return;
  }
  if (r.done) return;
  yield r.value;
  yield* first;
}

/**
 * Calls `path` with one request message and yields the response messages
 * (payloads only, one by one).
 */
export function rawGrpcCall(
  session: http2.ClientHttp2Session,
  path: string,
  request: Uint8Array,
  options: RawCallOptions,
): AsyncGenerator<Uint8Array> {
  return messagesOfRuns(rawGrpcRuns(session, path, request, options));
}

export function asEnvelopeError(e: unknown): unknown {
  if (!(e instanceof EnvelopeError)) return e;
  return new ConnectError(
    `upstream sent a ${e.message}`,
    e.tooLarge ? Code.ResourceExhausted : Code.Internal,
  );
}

/** Why a call failed, as a ConnectError (a cancelled call says so). */
function callError(e: unknown, signal: AbortSignal): ConnectError {
  if (e instanceof ConnectError) return e;
  if (signal.aborted) {
    return new ConnectError("call cancelled by the client", Code.Canceled);
  }
  return new ConnectError(
    `upstream connection failed: ${(e as Error)?.message ?? String(e)}`,
    Code.Unavailable,
  );
}
