/**
 * What differs between the three binary protocols on a server stream, built
 * from connect-es's own protocol helpers: content types, compression headers
 * and how the stream ends (Connect end-stream JSON, gRPC-Web trailer frame,
 * gRPC HTTP trailers).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type Compression,
  compressionNegotiate,
  encodeEnvelope,
} from "@connectrpc/connect/protocol";
import {
  endStreamFlag,
  endStreamToJson,
  headerStreamAcceptEncoding,
  headerStreamEncoding,
} from "@connectrpc/connect/protocol-connect";
import {
  headerAcceptEncoding,
  headerEncoding,
  parseTimeout,
  setTrailerStatus,
} from "@connectrpc/connect/protocol-grpc";
import {
  trailerFlag,
  trailerSerialize,
} from "@connectrpc/connect/protocol-grpc-web";

export type BinaryProtocol = "connect" | "grpc-web" | "grpc";

/** Messages smaller than this are not worth compressing (connect-es's default). */
const COMPRESS_MIN_BYTES = 1024;
const FLAG_COMPRESSED = 0b00000001;

/** The binary protocol a request speaks, or undefined (JSON, unary, other). */
export function binaryProtocolOf(
  contentType: string | null,
): BinaryProtocol | undefined {
  const ct = (contentType ?? "").toLowerCase().split(";")[0].trim();
  if (ct === "application/connect+proto") return "connect";
  if (ct === "application/grpc-web+proto" || ct === "application/grpc-web") {
    return "grpc-web";
  }
  if (ct === "application/grpc+proto" || ct === "application/grpc") {
    return "grpc";
  }
  return undefined;
}

/** Whether a request is a Connect JSON stream (the pass-through serves it too). */
export function isConnectJson(contentType: string | null): boolean {
  return (contentType ?? "").toLowerCase().split(";")[0].trim() ===
    CONNECT_JSON_CONTENT_TYPE;
}

export const CONNECT_JSON_CONTENT_TYPE = "application/connect+json";

export const RESPONSE_CONTENT_TYPE: Record<BinaryProtocol, string> = {
  connect: "application/connect+proto",
  "grpc-web": "application/grpc-web+proto",
  grpc: "application/grpc+proto",
};

/** Request and response compression, as the client's headers ask. */
export function negotiate(
  protocol: BinaryProtocol,
  headers: Headers,
  available: Compression[],
): {
  request: Compression | null;
  response: Compression | null;
  /** Header that names the response encoding. */
  encodingHeader: string;
  error?: ConnectError;
} {
  const [encoding, accept] = protocol === "connect"
    ? [headerStreamEncoding, headerStreamAcceptEncoding]
    : [headerEncoding, headerAcceptEncoding];
  return {
    ...compressionNegotiate(
      available,
      headers.get(encoding),
      headers.get(accept),
      accept,
    ),
    encodingHeader: encoding,
  };
}

/** The client's deadline in ms, if it set one. */
export function timeoutOf(
  protocol: BinaryProtocol,
  headers: Headers,
): number | undefined {
  if (protocol === "connect") {
    const v = headers.get("connect-timeout-ms");
    if (v === null) return undefined;
    const n = Number(v);
    if (!/^\d{1,10}$/.test(v)) {
      throw new ConnectError(
        `protocol error: invalid connect timeout value: ${v}`,
        Code.InvalidArgument,
      );
    }
    return n;
  }
  const parsed = parseTimeout(
    headers.get("grpc-timeout"),
    Number.MAX_SAFE_INTEGER,
  );
  if (parsed.error) throw parsed.error;
  return parsed.timeoutMs;
}

/** Reads the one enveloped request message, decompressing it if flagged. */
export async function requestMessage(
  body: Uint8Array,
  compression: Compression | null,
  readMaxBytes: number,
): Promise<Uint8Array> {
  if (body.length < 5) {
    throw new ConnectError(
      "protocol error: missing request message",
      Code.InvalidArgument,
    );
  }
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const flags = body[0], length = view.getUint32(1);
  if (body.length !== 5 + length) {
    throw new ConnectError(
      "protocol error: expected exactly one request message",
      Code.InvalidArgument,
    );
  }
  const data = body.subarray(5);
  if ((flags & FLAG_COMPRESSED) === 0) return data;
  if (!compression) {
    throw new ConnectError(
      "protocol error: received compressed message without an encoding",
      Code.Internal,
    );
  }
  return await compression.decompress(data, readMaxBytes);
}

/** One response message as a frame, compressed when negotiated and worth it. */
export async function messageFrame(
  bytes: Uint8Array,
  compression: Compression | null,
): Promise<Uint8Array> {
  if (compression && bytes.length >= COMPRESS_MIN_BYTES) {
    return encodeEnvelope(FLAG_COMPRESSED, await compression.compress(bytes));
  }
  return encodeEnvelope(0, bytes);
}

/** The frame that ends a Connect or gRPC-Web stream (gRPC ends with HTTP trailers). */
export function endFrame(
  protocol: "connect" | "grpc-web",
  error: ConnectError | undefined,
): Uint8Array<ArrayBuffer> {
  if (protocol === "connect") {
    const json = JSON.stringify(
      endStreamToJson(new Headers(), error, undefined),
    );
    return encodeEnvelope(endStreamFlag, new TextEncoder().encode(json));
  }
  return encodeEnvelope(
    trailerFlag,
    trailerSerialize(setTrailerStatus(new Headers(), error)),
  );
}

/** gRPC status for HTTP trailers (or a Trailers-Only response's headers). */
export function grpcStatusHeaders(
  error: ConnectError | undefined,
): Record<string, string> {
  const out: Record<string, string> = {};
  setTrailerStatus(new Headers(), error).forEach((v, k) => (out[k] = v));
  return out;
}
