/**
 * One native gRPC call over node:http2 with whatever bytes the test wants to
 * send (enveloped or not), returning the status it ends with and the
 * messages it got — for requests no generated client would send.
 */
import * as http2 from "node:http2";
import { GRPC_CODES } from "./raw-http.ts";

export interface GrpcReply {
  /** Connect code name ("ok", "invalid_argument", …); "no-status" if none. */
  code: string;
  message: string;
  /** Response body bytes (the enveloped messages). */
  bodyBytes: number;
  /** Whether the call ended with an RST_STREAM instead of a status. */
  reset: boolean;
}

export async function grpcExchange(
  session: http2.ClientHttp2Session,
  path: string,
  body: Uint8Array,
  options: {
    headers?: Record<string, string>;
    waitMs?: number;
    /** Abort after this many response bytes (a client going away). */
    abortAfterBytes?: number;
    /** Don't end the request body (a stalled upload). */
    stallBody?: boolean;
  } = {},
): Promise<GrpcReply> {
  const stream = session.request({
    ":method": "POST",
    ":path": path,
    "content-type": "application/grpc+proto",
    te: "trailers",
    ...options.headers,
  });
  let status: string | undefined, message = "", bodyBytes = 0;
  stream.on("response", (h) => {
    if (h["grpc-status"] !== undefined) {
      status = String(h["grpc-status"]);
      message = decodeURIComponent(String(h["grpc-message"] ?? ""));
    }
  });
  stream.on("trailers", (t) => {
    status = String(t["grpc-status"]);
    message = decodeURIComponent(String(t["grpc-message"] ?? ""));
  });
  stream.on("data", (c: Uint8Array) => {
    bodyBytes += c.length;
    if (
      options.abortAfterBytes !== undefined &&
      bodyBytes >= options.abortAfterBytes
    ) stream.close(http2.constants.NGHTTP2_CANCEL);
  });
  if (options.stallBody) stream.write(body);
  else stream.end(body);
  const timer = setTimeout(
    () => stream.close(http2.constants.NGHTTP2_CANCEL),
    options.waitMs ?? 15_000,
  );
  await new Promise<void>((resolve) => {
    stream.on("close", () => resolve());
    stream.on("error", () => {});
    // The server has said all it will (status included): done, even if our
    // own side was left open on purpose.
    stream.on("end", () => stream.close());
  });
  clearTimeout(timer);
  return {
    code: status === undefined ? "no-status" : GRPC_CODES[Number(status)] ??
      `grpc-${status}`,
    message,
    bodyBytes,
    reset: status === undefined,
  };
}
