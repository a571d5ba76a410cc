/**
 * One gRPC call over node:http2 whose response messages come back as raw
 * bytes, not decoded objects: the relay forwards them as they are. Plain
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

/** Messages larger than this are refused (a 2048-tuple message is ~25 KB). */
const READ_MAX_BYTES = 16 * 1024 * 1024;
/** Stop reading from the socket while this much is waiting for the consumer. */
const HIGH_WATER_BYTES = 256 * 1024;

export interface RawCallOptions {
  signal: AbortSignal;
  /** Extra request headers (authorization). */
  headers?: Record<string, string>;
}

function toHeaders(h: http2.IncomingHttpHeaders): Headers {
  const out = new Headers();
  for (const [k, v] of Object.entries(h)) {
    if (k.startsWith(":") || v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) out.append(k, one);
  }
  return out;
}

/** One enveloped message: gRPC, gRPC-Web and Connect streams share the shape. */
export interface Envelope {
  flags: number;
  data: Uint8Array;
}

/**
 * Splits a byte stream into enveloped messages (1 byte flags, 4 bytes
 * big-endian length, payload). Pushes complete ones; keeps the rest.
 */
export class EnvelopeSplitter {
  #pending: Uint8Array = new Uint8Array(0);

  constructor(readonly readMaxBytes = READ_MAX_BYTES) {}

  push(chunk: Uint8Array, out: Envelope[]): void {
    let buf = chunk;
    if (this.#pending.length > 0) {
      buf = new Uint8Array(this.#pending.length + chunk.length);
      buf.set(this.#pending);
      buf.set(chunk, this.#pending.length);
    }
    let pos = 0;
    while (buf.length - pos >= 5) {
      const len = ((buf[pos + 1] << 24) >>> 0) + (buf[pos + 2] << 16) +
        (buf[pos + 3] << 8) + buf[pos + 4];
      if (len > this.readMaxBytes) {
        throw new ConnectError(
          `message of ${len} bytes exceeds ${this.readMaxBytes}`,
          Code.ResourceExhausted,
        );
      }
      if (buf.length - pos - 5 < len) break;
      out.push({ flags: buf[pos], data: buf.subarray(pos + 5, pos + 5 + len) });
      pos += 5 + len;
    }
    // Copy the tail so a large chunk is not kept alive by a few bytes.
    this.#pending = pos === buf.length ? new Uint8Array(0) : buf.slice(pos);
  }

  get buffered(): number {
    return this.#pending.length;
  }
}

/**
 * Calls `path` with one request message and yields the response messages.
 * Ends cleanly only on grpc-status 0; any other end is a ConnectError.
 */
export async function* rawGrpcCall(
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
  const splitter = new EnvelopeSplitter();
  const queue: Envelope[] = [];
  let head = 0;
  let queuedBytes = 0;
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
    responseHeaders = toHeaders(h);
  });
  stream.on("data", (chunk: Uint8Array) => {
    const before = queue.length;
    try {
      splitter.push(chunk, queue);
    } catch (e) {
      failure ??= e;
      stream.close(http2.constants.NGHTTP2_CANCEL);
    }
    for (let i = before; i < queue.length; i++) {
      // Compression was not offered, so a flagged message is a broken peer.
      if (queue[i].flags !== 0) {
        failure ??= new ConnectError(
          `upstream sent a message with flags ${queue[i].flags}`,
          Code.Internal,
        );
        queue.length = i;
        stream.close(http2.constants.NGHTTP2_CANCEL);
        break;
      }
      queuedBytes += queue[i].data.length;
    }
    if (queuedBytes > HIGH_WATER_BYTES) stream.pause();
    notify();
  });
  stream.on("trailers", (t) => {
    trailers = toHeaders(t);
  });
  stream.on("end", () => {
    ended = true;
    notify();
  });
  stream.on("error", (e) => {
    failure ??= e;
    notify();
  });
  stream.on("close", () => {
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
      if (head < queue.length) {
        const message = queue[head].data;
        queue[head++] = undefined as unknown as Envelope;
        queuedBytes -= message.length;
        if (head === queue.length) {
          queue.length = 0;
          head = 0;
        }
        if (stream.isPaused() && queuedBytes < HIGH_WATER_BYTES / 2) {
          stream.resume();
        }
        yield message;
        continue;
      }
      if (failure !== undefined) throw asConnectError(failure, options.signal);
      if (ended) break;
      await new Promise<void>((resolve) => (wake = resolve));
    }
    if (httpStatus !== 200) {
      throw new ConnectError(
        `upstream answered HTTP ${httpStatus}`,
        codeFromHttpStatus(httpStatus),
      );
    }
    if (splitter.buffered > 0) {
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

function asConnectError(e: unknown, signal: AbortSignal): ConnectError {
  if (e instanceof ConnectError) return e;
  if (signal.aborted) {
    return new ConnectError("call cancelled by the client", Code.Canceled);
  }
  return new ConnectError(
    `upstream connection failed: ${(e as Error)?.message ?? String(e)}`,
    Code.Unavailable,
  );
}
