/**
 * Native gRPC over HTTP/2 (h2c, or TLS with ALPN h2) through node:http2 and
 * connect-node's adapter: a fetch Response has no trailers, so gRPC can't go
 * through the fetch front. Connect and gRPC-Web work on this port too.
 */
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { compressionGzip, connectNodeAdapter } from "@connectrpc/connect-node";
import { registerServices } from "../front/connect-services.ts";
import { createNodePassthrough } from "../front/passthrough/node-passthrough.ts";
import type { Gateway } from "../gateway/gateway.ts";
import { DEFAULT_READ_MAX_BYTES } from "./fetch-handler.ts";

export interface GrpcServerOptions {
  hostname: string;
  port: number;
  /** PEM; with both, the port speaks TLS (ALPN h2) instead of h2c. */
  tlsCert?: string;
  tlsKey?: string;
  shutdownSignal?: AbortSignal;
}

export interface RunningGrpcServer {
  port: number;
  url: string;
  close(): Promise<void>;
}

export async function startGrpcServer(
  gateway: Gateway,
  options: GrpcServerOptions,
): Promise<RunningGrpcServer> {
  const adapter = connectNodeAdapter({
    routes: registerServices(gateway),
    acceptCompression: [compressionGzip],
    readMaxBytes: DEFAULT_READ_MAX_BYTES,
    shutdownSignal: options.shutdownSignal,
  });
  // Binary server streams skip connect-es's decode/re-encode of every message.
  const passthrough = createNodePassthrough(gateway, {
    compression: [compressionGzip],
    readMaxBytes: DEFAULT_READ_MAX_BYTES,
  });
  const handler = (
    req: http2.Http2ServerRequest,
    res: http2.Http2ServerResponse,
  ) => {
    if (!passthrough(req, res)) adapter(req, res);
  };
  const tls = options.tlsCert !== undefined && options.tlsKey !== undefined;
  const server = tls
    ? http2.createSecureServer(
      { cert: options.tlsCert, key: options.tlsKey, allowHTTP1: false },
      handler,
    )
    : http2.createServer(handler);
  const sessions = new Set<http2.Http2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.hostname, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const host = options.hostname.includes(":")
    ? `[${options.hostname}]`
    : options.hostname;
  return {
    port,
    url: `${tls ? "https" : "http"}://${host}:${port}`,
    close() {
      return new Promise((resolve) => {
        server.close(() => resolve());
        // GOAWAY: idle sessions end now, open streams may finish (the
        // shutdown signal ends running calls).
        for (const s of sessions) s.close();
      });
    },
  };
}
