/**
 * What the gateway checks on every RPC request before connect-es's router
 * sees it (the router serves what the pass-through doesn't: ListSnapshots,
 * and the JSON flavours of gRPC-Web). connect-es reads a body without a
 * time bound, parses a malformed binary message as Internal, and arms its
 * deadline with a plain setTimeout; so, in front of it:
 *
 * - the body is read here, bounded in size and time, and the caller's
 *   deadline runs while it arrives (request-body.ts);
 * - a binary request message must decode (well-formed protobuf, each
 *   known field of its declared type), else InvalidArgument — the code the
 *   streaming RPCs give for the same bytes;
 * - a deadline too long for a timer (≥ 2^31 ms, legal in both protocols)
 *   is clamped to the longest one a timer holds (~24.8 days) instead of
 *   firing at once.
 *
 * The body is handed on as bytes, so connect-es does the rest as usual.
 */
import { type DescMessage, fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type Compression,
  createAsyncIterable,
  type UniversalHandler,
  type UniversalServerRequest,
  type UniversalServerResponse,
} from "@connectrpc/connect/protocol";
import {
  codeToHttpStatus,
  errorToJsonBytes,
} from "@connectrpc/connect/protocol-connect";
import { parseTimeout as parseGrpcTimeout } from "@connectrpc/connect/protocol-grpc";
import { protobufWireError } from "../wire/protobuf-check.ts";
import { envelopeLength } from "../wire/envelopes.ts";
import { MAX_TIMER_MS } from "./deadline.ts";
import { readRequestBody } from "./request-body.ts";

export interface GuardOptions {
  readMaxBytes: number;
  /** The encodings the router accepts, to look inside compressed requests. */
  compression: Compression[];
}

export function guardHandler(
  handler: UniversalHandler,
  options: GuardOptions,
): UniversalHandler {
  const guarded = async (
    req: UniversalServerRequest,
  ): Promise<UniversalServerResponse> => {
    const header = clampTimeout(new Headers(req.header));
    const timeoutMs = timeoutOf(header);
    const framing = framingOf(req.method, header);
    if (req.method === "GET") {
      // Connect unary GET: the message is in the query.
      const malformed = await malformedGetMessage(
        handler.method.input,
        new URL(req.url).searchParams,
        options,
      );
      if (malformed) return connectUnaryError(malformed);
      return handler({ ...req, header });
    }
    const deadline = timeoutMs === undefined
      ? undefined
      : deadlineSignal(timeoutMs);
    const body = readRequestBody(
      req.body as AsyncIterable<Uint8Array>,
      {
        // Envelope headers on top of the message limit.
        maxBytes: options.readMaxBytes + 5,
        signal: deadline
          ? AbortSignal.any([req.signal, deadline.signal])
          : req.signal,
      },
    ).finally(() => deadline?.clear()).then(async (bytes) => {
      const malformed = framing &&
        await malformedMessages(
          handler.method.input,
          bytes,
          framing,
          header,
          options,
        );
      if (malformed) throw malformed;
      return bytes;
    });
    body.catch(() => {}); // read (and reported) through the iterable
    return handler({
      ...req,
      header,
      body: (async function* () {
        yield await body;
      })(),
    });
  };
  return Object.assign(guarded, {
    protocolNames: handler.protocolNames,
    service: handler.service,
    method: handler.method,
    requestPath: handler.requestPath,
    allowedMethods: handler.allowedMethods,
    supportedContentType: handler.supportedContentType,
  });
}

/** How a binary request carries its message; undefined for JSON. */
interface Framing {
  enveloped: boolean;
  /** Header naming the request's encoding. */
  encodingHeader: string;
}

function framingOf(method: string, header: Headers): Framing | undefined {
  if (method !== "POST") return undefined;
  const ct = (header.get("content-type") ?? "").toLowerCase().split(";")[0]
    .trim();
  if (ct === "application/proto") {
    return { enveloped: false, encodingHeader: "content-encoding" };
  }
  if (ct === "application/connect+proto") {
    return { enveloped: true, encodingHeader: "connect-content-encoding" };
  }
  if (
    ct === "application/grpc-web" || ct === "application/grpc-web+proto" ||
    ct === "application/grpc" || ct === "application/grpc+proto"
  ) {
    return { enveloped: true, encodingHeader: "grpc-encoding" };
  }
  return undefined;
}

async function malformedMessages(
  schema: DescMessage,
  bytes: Uint8Array,
  framing: Framing,
  header: Headers,
  options: GuardOptions,
): Promise<ConnectError | undefined> {
  const compression = compressionOf(
    header.get(framing.encodingHeader),
    options,
  );
  if (!framing.enveloped) {
    return await check(schema, bytes, compression, options);
  }
  // The same answer the pass-through gives (connect-es would say
  // Unimplemented for a unary call without a message).
  if (bytes.length === 0) {
    return new ConnectError(
      "protocol error: missing request message",
      Code.InvalidArgument,
    );
  }
  let pos = 0;
  while (pos < bytes.length) {
    const end = pos + 5 +
      (pos + 5 <= bytes.length ? envelopeLength(bytes, pos) : 0);
    if (pos + 5 > bytes.length || end > bytes.length) {
      return new ConnectError(
        "protocol error: incomplete envelope",
        Code.InvalidArgument,
      );
    }
    const flags = bytes[pos];
    if (flags <= 1) {
      const error = await check(
        schema,
        bytes.subarray(pos + 5, end),
        flags === 1 ? compression ?? null : undefined,
        options,
      );
      if (error) return error;
    }
    pos = end;
  }
  return undefined;
}

async function malformedGetMessage(
  schema: DescMessage,
  query: URLSearchParams,
  options: GuardOptions,
): Promise<ConnectError | undefined> {
  if (query.get("encoding") !== "proto") return undefined;
  let bytes: Uint8Array;
  try {
    const text = query.get("message") ?? "";
    bytes = query.get("base64") === "1"
      ? Uint8Array.from(
        atob(
          text.replaceAll("-", "+").replaceAll("_", "/").padEnd(
            Math.ceil(text.length / 4) * 4,
            "=",
          ),
        ),
        (c) => c.charCodeAt(0),
      )
      : new TextEncoder().encode(text);
  } catch {
    return new ConnectError(
      "protocol error: message is not base64",
      Code.InvalidArgument,
    );
  }
  return await check(
    schema,
    bytes,
    compressionOf(query.get("compression"), options),
    options,
  );
}

/** undefined: not compressed; null: an encoding this check can't open. */
function compressionOf(
  name: string | null,
  options: GuardOptions,
): Compression | null | undefined {
  if (name === null || name === "" || name === "identity") return undefined;
  return options.compression.find((c) => c.name === name) ?? null;
}

async function check(
  schema: DescMessage,
  message: Uint8Array,
  compression: Compression | null | undefined,
  options: GuardOptions,
): Promise<ConnectError | undefined> {
  // Compressed without an encoding, or not decompressible: connect-es
  // answers those itself, as the specs prescribe (Internal).
  if (compression === null) return undefined;
  if (compression !== undefined) {
    try {
      message = await compression.decompress(message, options.readMaxBytes);
    } catch {
      return undefined;
    }
  }
  try {
    const malformed = protobufWireError(message);
    if (malformed) throw new Error(malformed);
    // Well-formed, but each known field must have its declared type too.
    fromBinary(schema, message);
  } catch (e) {
    return new ConnectError(
      `cannot decode request: ${(e as Error).message}`,
      Code.InvalidArgument,
    );
  }
  return undefined;
}

function connectUnaryError(error: ConnectError): UniversalServerResponse {
  const body = errorToJsonBytes(error, {});
  return {
    status: codeToHttpStatus(error.code),
    header: new Headers({
      "content-type": "application/json",
      "content-length": String(body.byteLength),
    }),
    body: createAsyncIterable([body]),
  };
}

/** The caller's deadline in ms, if valid (invalid ones are connect-es's to refuse). */
function timeoutOf(header: Headers): number | undefined {
  const connect = header.get("connect-timeout-ms");
  if (connect !== null) {
    return /^\d{1,10}$/.test(connect) ? Number(connect) : undefined;
  }
  return parseGrpcTimeout(header.get("grpc-timeout"), Number.MAX_SAFE_INTEGER)
    .timeoutMs;
}

function clampTimeout(header: Headers): Headers {
  const ms = timeoutOf(header);
  if (ms === undefined || ms <= MAX_TIMER_MS) return header;
  if (header.has("connect-timeout-ms")) {
    header.set("connect-timeout-ms", String(MAX_TIMER_MS));
  } else {
    header.set("grpc-timeout", `${Math.floor(MAX_TIMER_MS / 1000)}S`);
  }
  return header;
}

/** Aborts with DeadlineExceeded after `timeoutMs`, until `clear()`. */
function deadlineSignal(
  timeoutMs: number,
): { signal: AbortSignal; clear(): void } {
  const controller = new AbortController();
  const timer = setTimeout(
    () =>
      controller.abort(
        new ConnectError("the operation timed out", Code.DeadlineExceeded),
      ),
    Math.min(timeoutMs, MAX_TIMER_MS),
  );
  return { signal: controller.signal, clear: () => clearTimeout(timer) };
}
