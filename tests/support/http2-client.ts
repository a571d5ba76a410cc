/**
 * A connect-es `UniversalClientFn` over node:http2 that reads each response
 * from the stream's events ('data', 'trailers', 'end', 'close') instead of
 * the stream's async iterator.
 *
 * Why not connect-node's client: under Deno a short response (HEADERS, DATA,
 * trailers with END_STREAM) is often received in full — and the
 * Http2Stream's `closed` flag, which means "the HTTP/2 stream is closed", set —
 * before the first read. `Readable[Symbol.asyncIterator]` attaches
 * `finished()` lazily on its first `next()`; `finished()` takes
 * `stream.closed === true` for "the Node stream is closed", sees that 'end'
 * was never emitted (the data is still buffered) and fails the call with
 * ERR_STREAM_PREMATURE_CLOSE. Listening from the moment the stream exists
 * never asks that question.
 *
 * Connections come from connect-node's `Http2SessionManager` (one session
 * per origin, keepalive PINGs, reconnect after GOAWAY or errors).
 */
import * as http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import type {
  UniversalClientFn,
  UniversalClientRequest,
  UniversalClientResponse,
} from "@connectrpc/connect/protocol";
import { webHeaders } from "../../src/adapter/node-http2/headers.ts";
import type { Http2SessionManager } from "@connectrpc/connect-node";

/** Response bytes buffered per call before the stream is paused (HTTP/2 flow control then stops the server). */
export const DEFAULT_HIGH_WATER_MARK = 256 * 1024;

export interface Http2ClientOptions {
  highWaterMark?: number;
}

export function createHttp2Client(
  sessions: Http2SessionManager,
  options: Http2ClientOptions = {},
): UniversalClientFn {
  const highWaterMark = options.highWaterMark ?? DEFAULT_HIGH_WATER_MARK;
  return async function request(
    req: UniversalClientRequest,
  ): Promise<UniversalClientResponse> {
    const url = new URL(req.url);
    if (url.origin !== sessions.authority) {
      throw new ConnectError(
        `cannot send ${req.url} over the session to ${sessions.authority}`,
        Code.Internal,
      );
    }
    const stream = await openStream(
      sessions,
      req.method,
      url.pathname + url.search,
      nodeHeaders(req.header),
      req.signal,
    );
    const exchange = new Exchange(stream, sessions, highWaterMark, req.signal);
    void exchange.send(req.body);
    return exchange.response;
  };
}

/**
 * A new stream on the session (connecting first if need be). The call's
 * signal applies while connecting too: a deadline must not wait out a TCP
 * or TLS handshake that never finishes.
 */
function openStream(
  sessions: Http2SessionManager,
  method: string,
  path: string,
  headers: http2.OutgoingHttpHeaders,
  signal: AbortSignal | undefined,
): Promise<http2.ClientHttp2Stream> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const onAbort = () => reject(abortError(signal!));
    signal?.addEventListener("abort", onAbort, { once: true });
    sessions.request(method, path, headers, {}).then((stream) => {
      signal?.removeEventListener("abort", onAbort);
      if (signal?.aborted) stream.close(http2.constants.NGHTTP2_CANCEL);
      else resolve(stream);
    }, (e) => {
      signal?.removeEventListener("abort", onAbort);
      reject(connectFailure(sessions.authority, e));
    });
  });
}

/** One request/response on one HTTP/2 stream. */
class Exchange {
  readonly response: Promise<UniversalClientResponse>;
  readonly #stream: http2.ClientHttp2Stream;
  readonly #sessions: Http2SessionManager;
  readonly #highWaterMark: number;
  readonly #trailer = new Headers();
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #ended = false; // 'end': every DATA frame was delivered
  #trailersSeen = false;
  #closed = false;
  #failure: ConnectError | undefined;
  #wake: (() => void) | undefined;
  #rejectResponse: (e: ConnectError) => void = () => {};

  constructor(
    stream: http2.ClientHttp2Stream,
    sessions: Http2SessionManager,
    highWaterMark: number,
    signal: AbortSignal | undefined,
  ) {
    this.#stream = stream;
    this.#sessions = sessions;
    this.#highWaterMark = highWaterMark;
    this.response = new Promise((resolve, reject) => {
      this.#rejectResponse = reject;
      stream.once("response", (headers) => {
        resolve({
          status: Number(headers[":status"] ?? 0),
          header: webHeaders(headers),
          body: this.#body(),
          trailer: this.#trailer,
        });
      });
    });
    // Deno may deliver DATA before 'response': listen from the start.
    stream.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(chunk);
      this.#buffered += chunk.byteLength;
      if (this.#buffered >= this.#highWaterMark) stream.pause();
      this.#notify();
    });
    stream.on("trailers", (headers) => {
      webHeaders(headers).forEach((value, key) =>
        this.#trailer.append(key, value)
      );
      this.#trailersSeen = true;
      this.#notify();
    });
    stream.on("end", () => {
      this.#ended = true;
      this.#notify();
    });
    stream.on("error", (e: unknown) => this.#fail(streamFailure(stream, e)));
    stream.on("close", () => {
      this.#closed = true;
      if (!this.#ended) this.#fail(streamFailure(stream, undefined));
      this.#notify();
      signal?.removeEventListener("abort", onAbort);
    });
    const onAbort = () => this.#fail(abortError(signal!));
    signal?.addEventListener("abort", onAbort, { once: true });
  }

  /** Writes the request body (honoring 'drain'), then half-closes. */
  async send(body: AsyncIterable<Uint8Array> | undefined): Promise<void> {
    const stream = this.#stream;
    try {
      for await (const chunk of body ?? []) {
        if (this.#failure || stream.destroyed) return;
        if (!stream.write(chunk)) {
          await new Promise<void>((resolve) => {
            const done = () => {
              stream.off("drain", done).off("close", done);
              resolve();
            };
            stream.on("drain", done).on("close", done);
          });
        }
      }
      if (!stream.destroyed) stream.end();
    } catch (e) {
      this.#fail(ConnectError.from(e, Code.Internal));
    }
  }

  async *#body(): AsyncGenerator<Uint8Array> {
    try {
      for (;;) {
        if (this.#failure) throw this.#failure;
        const chunk = this.#chunks.shift();
        if (chunk) {
          this.#buffered -= chunk.byteLength;
          if (this.#buffered < this.#highWaterMark && this.#stream.isPaused()) {
            this.#stream.resume();
          }
          this.#sessions.notifyResponseByteRead(this.#stream);
          yield chunk;
          continue;
        }
        if (this.#complete()) return;
        await new Promise<void>((resolve) => (this.#wake = resolve));
      }
    } finally {
      // A reader that stops early no longer wants the stream.
      this.#fail(new ConnectError("response body abandoned", Code.Canceled));
    }
  }

  /**
   * Trailers are emitted before 'end', but a Trailers-Only response has
   * none: then 'close' (right after 'end') settles it.
   */
  #complete(): boolean {
    return this.#ended && (this.#trailersSeen || this.#closed);
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** First failure wins; resets the stream. A complete response can't fail any more. */
  #fail(error: ConnectError): void {
    if (this.#failure || this.#complete()) return;
    this.#failure = error;
    this.#chunks = [];
    this.#rejectResponse(error);
    if (!this.#stream.closed && !this.#stream.destroyed) {
      // A client that gives up (cancel, deadline) sends CANCEL (gRPC's
      // PROTOCOL-HTTP2.md); anything else is a fault on our side.
      const c = http2.constants;
      const gaveUp = error.code === Code.Canceled ||
        error.code === Code.DeadlineExceeded;
      this.#stream.close(gaveUp ? c.NGHTTP2_CANCEL : c.NGHTTP2_INTERNAL_ERROR);
    }
    this.#notify();
  }
}

function abortError(signal: AbortSignal): ConnectError {
  return ConnectError.from(
    signal.reason ?? "the operation was aborted",
    Code.Canceled,
  );
}

function connectFailure(authority: string, e: unknown): ConnectError {
  const cause = ConnectError.from(e);
  if (cause.code === Code.Canceled) return cause;
  return new ConnectError(
    `cannot connect to ${authority}: ${cause.rawMessage}`,
    Code.Unavailable,
    undefined,
    undefined,
    e,
  );
}

/** RST_STREAM codes with a gRPC meaning (grpc/doc/PROTOCOL-HTTP2.md "Errors"). */
const RST_STREAM_CODES = new Map<number, Code>([
  [http2.constants.NGHTTP2_CANCEL, Code.Canceled],
  [http2.constants.NGHTTP2_REFUSED_STREAM, Code.Unavailable],
  [http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, Code.ResourceExhausted],
  [http2.constants.NGHTTP2_INADEQUATE_SECURITY, Code.PermissionDenied],
]);

/**
 * The stream ended without its response. A reset's code decides the gRPC
 * code (unlisted ones are Internal); a stream closed without a reset went
 * down with its connection.
 */
function streamFailure(
  stream: http2.ClientHttp2Stream,
  e: unknown,
): ConnectError {
  const rst = stream.rstCode ?? http2.constants.NGHTTP2_NO_ERROR;
  const reset = rst !== http2.constants.NGHTTP2_NO_ERROR;
  const code = reset
    ? RST_STREAM_CODES.get(rst) ?? Code.Internal
    : Code.Unavailable;
  const detail = e instanceof Error
    ? e.message
    : "closed before the response ended";
  return new ConnectError(
    `HTTP/2 stream ${detail}${reset ? ` (RST_STREAM ${rst})` : ""}`,
    code,
    undefined,
    undefined,
    e,
  );
}

function nodeHeaders(header: Headers): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = {};
  header.forEach((value, key) => (out[key] = value));
  return out;
}
