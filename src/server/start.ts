/**
 * Assembles a running gateway from a Config: backend, auth, the fetch front
 * on Deno.serve, and native gRPC on node:http2. `main.ts` and the tests both
 * start gateways through here.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Authenticator } from "../auth/authenticator.ts";
import { NoAuth } from "../auth/authenticator.ts";
import type { Config } from "../config.ts";
import { Gateway } from "../gateway/gateway.ts";
import type { Backend } from "../backend/backend.ts";
import { readTextFile } from "../adapter/deno/files.ts";
import { startHttpServer } from "../adapter/deno/http-server.ts";
import type { FetchRoute } from "../front/fetch-route.ts";
import { createFetchHandler } from "./fetch-handler.ts";
import { startGrpcServer } from "../adapter/node-http2/grpc-server.ts";
import { createHttpJsonRoutes } from "../front/http-json/index.ts";
import { createUiRoute } from "../ui/ui-route.ts";

export interface RunningGateway {
  gateway: Gateway;
  /** Connect, gRPC-Web, HTTP/JSON. */
  httpUrl: string;
  /** Native gRPC (also Connect and gRPC-Web) over HTTP/2. */
  grpcUrl: string;
  close(): Promise<void>;
}

export interface GatewayParts {
  backend: Backend;
  auth?: Authenticator;
  /** Gets one JSON access-log line per streaming call. */
  log?: (line: string) => void;
  /** Extra fetch routes in front of the HTTP/JSON and RPC routes. */
  routes?: (gateway: Gateway) => FetchRoute[];
}

export async function startGateway(
  config:
    & Pick<
      Config,
      "host" | "port" | "grpcPort" | "corsOrigins" | "tlsCert" | "tlsKey"
    >
    & { ticketSecret?: string },
  parts: GatewayParts,
): Promise<RunningGateway> {
  const gateway = new Gateway(parts.backend, parts.auth ?? new NoAuth(), {
    log: parts.log,
  });
  const shutdown = new AbortController();
  const tls = config.tlsCert && config.tlsKey
    ? {
      tlsCert: await readTextFile(config.tlsCert),
      tlsKey: await readTextFile(config.tlsKey),
    }
    : {};
  const handler = createFetchHandler(gateway, {
    corsOrigins: config.corsOrigins,
    routes: [
      ...parts.routes?.(gateway) ?? [],
      createHttpJsonRoutes(gateway, {
        ticketSecret: config.ticketSecret
          ? new TextEncoder().encode(config.ticketSecret)
          : undefined,
      }),
      createUiRoute(),
    ],
    shutdownSignal: shutdown.signal,
  });
  const http = await startHttpServer(handler, {
    hostname: config.host,
    port: config.port,
    ...tls,
  });
  let grpc;
  try {
    grpc = await startGrpcServer(gateway, {
      hostname: config.host,
      port: config.grpcPort,
      shutdownSignal: shutdown.signal,
      ...tls,
    });
  } catch (e) {
    await http.close();
    throw e;
  }
  return {
    gateway,
    httpUrl: http.url,
    grpcUrl: grpc.url,
    async close() {
      shutdown.abort(
        new ConnectError("the server is shutting down", Code.Unavailable),
      );
      await Promise.all([http.close(), grpc.close()]);
      await parts.backend.close();
    },
  };
}
