/**
 * The gateway's native-gRPC client Transport for upstreams (a CSI driver's
 * snapshot-metadata sidecar, or another cbt-gateway): connect-es's gRPC
 * protocol over our own node:http2 client (see http2-client.ts for why not
 * connect-node's `createGrpcTransport`).
 *
 * `http://` speaks h2c; `https://` speaks TLS with ALPN h2, trusting only
 * `ca` when given (the sidecar's private CA), never the system roots too.
 */
import type { Interceptor, Transport } from "@connectrpc/connect";
import { validateReadWriteMaxBytes } from "@connectrpc/connect/protocol";
import { createTransport } from "@connectrpc/connect/protocol-grpc";
import { compressionGzip, Http2SessionManager } from "@connectrpc/connect-node";
import { createHttp2Client } from "./http2-client.ts";

/**
 * Keepalive PING after this long without response bytes on an open stream.
 * grpc-go servers answer PINGs more frequent than every 5 minutes (their
 * default enforcement policy) with GOAWAY "too_many_pings".
 */
export const DEFAULT_PING_INTERVAL_MS = 5 * 60 * 1000;

export interface UpstreamGrpcTransportOptions {
  /** `http://host:port` (h2c) or `https://host:port` (TLS, ALPN h2). */
  baseUrl: string;
  /** PEM CA bundle; with https, the only roots trusted. */
  ca?: string;
  /** TLS SNI and the name the server certificate must carry (default: the URL's host). */
  serverName?: string;
  /** Largest response message accepted (default ~4 GiB, connect's maximum). */
  readMaxBytes?: number;
  pingIntervalMs?: number;
  /** A PING unanswered this long closes the connection (default 15 s). */
  pingTimeoutMs?: number;
  /**
   * Share one connection between transports. The caller then owns it:
   * `close()` leaves it open.
   */
  sessionManager?: Http2SessionManager;
  interceptors?: Interceptor[];
}

export interface UpstreamGrpcTransport extends Transport {
  /** Closes the connection (and every stream on it) unless it was passed in. */
  close(): void;
}

export function createUpstreamGrpcTransport(
  options: UpstreamGrpcTransportOptions,
): UpstreamGrpcTransport {
  const sessions = options.sessionManager ??
    createUpstreamSessionManager(options);
  const transport = createTransport({
    baseUrl: options.baseUrl,
    httpClient: createHttp2Client(sessions),
    useBinaryFormat: true,
    interceptors: options.interceptors ?? [],
    acceptCompression: [compressionGzip],
    sendCompression: null,
    ...validateReadWriteMaxBytes(options.readMaxBytes, undefined, undefined),
  });
  return {
    unary: transport.unary.bind(transport),
    stream: transport.stream.bind(transport),
    close() {
      if (!options.sessionManager) sessions.abort();
    },
  };
}

/** One HTTP/2 connection (re-established on demand) to the URL's origin. */
export function createUpstreamSessionManager(
  options: Pick<
    UpstreamGrpcTransportOptions,
    "baseUrl" | "ca" | "serverName" | "pingIntervalMs" | "pingTimeoutMs"
  >,
): Http2SessionManager {
  const url = new URL(options.baseUrl);
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error(
      `upstream URL must be http:// (h2c) or https:// (TLS), got ${options.baseUrl}`,
    );
  }
  if (
    url.protocol === "http:" &&
    (options.ca !== undefined || options.serverName !== undefined)
  ) {
    throw new Error(
      `ca and serverName need an https:// upstream URL, got ${options.baseUrl}`,
    );
  }
  return new Http2SessionManager(url, {
    pingIntervalMs: options.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS,
    pingTimeoutMs: options.pingTimeoutMs,
  }, {
    ca: options.ca,
    servername: options.serverName,
    rejectUnauthorized: true,
  });
}
