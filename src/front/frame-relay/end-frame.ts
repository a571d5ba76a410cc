/**
 * How a server stream ends, per protocol: Connect's end-stream JSON frame,
 * gRPC-Web's trailer frame, gRPC's HTTP trailers.
 */
import type { ConnectError } from "@connectrpc/connect";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import {
  endStreamFlag,
  endStreamToJson,
} from "@connectrpc/connect/protocol-connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import {
  trailerFlag,
  trailerSerialize,
} from "@connectrpc/connect/protocol-grpc-web";

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
