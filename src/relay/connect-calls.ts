/**
 * Connect calls over fetch, binary. A server-streaming call's response
 * messages come back as the upstream's bytes: runs of whole envelopes, never
 * decoded, so an edge tier relays them to its clients as they are (gRPC,
 * gRPC-Web and Connect streams frame messages the same way). A unary call
 * returns its one message's bytes.
 *
 * The Connect protocol ends a stream with an end-of-stream envelope (flag
 * 0b10) whose JSON carries the error, if any; an HTTP body that ends without
 * one was cut. So every end is one of: clean, the upstream's own error with
 * its code, Unavailable for a cut connection (retryable, see relay/resume),
 * Canceled when our caller went away.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import {
  codeFromHttpStatus,
  endStreamFlag,
  endStreamFromJson,
  errorFromJsonBytes,
} from "@connectrpc/connect/protocol-connect";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import {
  EnvelopeError,
  envelopeLength,
  EnvelopeQueue,
} from "../wire/envelopes.ts";

/** Messages larger than this are refused (a 2048-tuple message is ~25 KB). */
const READ_MAX_BYTES = 16 * 1024 * 1024;

export interface ConnectCallOptions {
  signal: AbortSignal;
  /** Extra request headers (authorization). */
  headers?: Record<string, string>;
  fetch?: typeof fetch;
}

/**
 * Calls `url` with one binary request message and yields the response as
 * runs of whole envelopes with flags 0. Nothing is sent before the first
 * `next()`; `return()` (the consumer stopped) cancels the HTTP request.
 */
export async function* connectStreamRuns(
  url: string,
  request: Uint8Array,
  options: ConnectCallOptions,
): AsyncGenerator<Uint8Array> {
  const { signal } = options;
  signal.throwIfAborted();
  let response: Response;
  try {
    response = await (options.fetch ?? fetch)(url, {
      method: "POST",
      headers: {
        "content-type": "application/connect+proto",
        "connect-protocol-version": "1",
        ...options.headers,
      },
      body: encodeEnvelope(0, request),
      signal,
    });
  } catch (e) {
    throw callError(e, signal, "upstream connection failed");
  }
  const contentType = response.headers.get("content-type") ?? "";
  if (response.status !== 200 || !response.body) {
    // Connect sends stream errors in the end-of-stream message with 200;
    // anything else is a proxy or a server that isn't a Connect endpoint.
    await response.body?.cancel().catch(() => {});
    throw new ConnectError(
      `upstream answered HTTP ${response.status}`,
      codeFromHttpStatus(response.status),
    );
  }
  if (!contentType.startsWith("application/connect+proto")) {
    await response.body.cancel().catch(() => {});
    throw new ConnectError(
      `upstream answered ${JSON.stringify(contentType)}, not a Connect stream`,
      Code.Internal,
    );
  }
  const reader = response.body.getReader();
  // Flags are checked here, per envelope: 0 is data, endStreamFlag ends.
  const queue = new EnvelopeQueue(READ_MAX_BYTES, true);
  let ended = false;
  try {
    for (;;) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch (e) {
        throw callError(e, signal, "upstream stream broke");
      }
      if (chunk.done) {
        throw signal.aborted
          ? callError(undefined, signal, "")
          : new ConnectError(
            "upstream stream ended before its end-of-stream message",
            Code.Unavailable,
          );
      }
      try {
        queue.push(chunk.value);
      } catch (e) {
        throw asEnvelopeError(e);
      }
      if (queue.complete === 0) continue;
      const run = queue.take();
      const split = splitAtEndOfStream(run);
      if (split.data.length > 0) yield split.data;
      if (split.end) {
        ended = true;
        const { error } = endStreamFromJson(split.end);
        if (error) throw error;
        return;
      }
    }
  } finally {
    if (!ended) reader.cancel().catch(() => {});
  }
}

/**
 * Calls a unary method with one binary request message; returns the
 * response message, or throws the upstream's error with its code.
 */
export async function connectUnary(
  url: string,
  request: Uint8Array<ArrayBuffer>,
  options: ConnectCallOptions,
): Promise<Uint8Array> {
  const { signal } = options;
  let response: Response;
  let body: Uint8Array;
  try {
    response = await (options.fetch ?? fetch)(url, {
      method: "POST",
      headers: {
        "content-type": "application/proto",
        "connect-protocol-version": "1",
        ...options.headers,
      },
      body: request,
      signal,
    });
    body = new Uint8Array(await response.arrayBuffer());
  } catch (e) {
    throw callError(e, signal, "upstream connection failed");
  }
  if (response.status === 200) return body;
  // Connect unary errors are JSON with an HTTP status; keep the JSON's code.
  throw errorFromJsonBytes(
    body,
    undefined,
    new ConnectError(
      `upstream answered HTTP ${response.status}`,
      codeFromHttpStatus(response.status),
    ),
  );
}

/**
 * A run's data envelopes, and the end-of-stream message's payload if the
 * run holds it. Any other flag (compression, which is never offered here)
 * is a broken peer.
 */
function splitAtEndOfStream(
  run: Uint8Array,
): { data: Uint8Array; end?: Uint8Array } {
  let pos = 0;
  while (pos < run.length) {
    const flags = run[pos];
    const end = pos + 5 + envelopeLength(run, pos);
    if (flags === endStreamFlag) {
      return { data: run.subarray(0, pos), end: run.subarray(pos + 5, end) };
    }
    if (flags !== 0) {
      throw new ConnectError(
        `upstream sent a message with flags ${flags}`,
        Code.Internal,
      );
    }
    pos = end;
  }
  return { data: run };
}

function asEnvelopeError(e: unknown): unknown {
  if (!(e instanceof EnvelopeError)) return e;
  return new ConnectError(
    `upstream sent a ${e.message}`,
    e.tooLarge ? Code.ResourceExhausted : Code.Internal,
  );
}

/** Our caller's cancel wins; any other transport failure is Unavailable. */
function callError(
  e: unknown,
  signal: AbortSignal,
  what: string,
): ConnectError {
  if (signal.aborted) {
    return signal.reason instanceof ConnectError
      ? signal.reason
      : new ConnectError("call cancelled by the client", Code.Canceled);
  }
  if (e instanceof ConnectError) return e;
  return new ConnectError(
    `${what}: ${(e as Error)?.message ?? String(e)}`,
    Code.Unavailable,
  );
}
