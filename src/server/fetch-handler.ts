/**
 * The gateway's core: one Web-standard fetch handler, `(Request) => Response`,
 * with no Deno or Node API in it, so the front runs on any fetch runtime.
 * It serves Connect and gRPC-Web (native gRPC needs HTTP trailers, which a
 * fetch Response can't carry; see grpc-server.ts), health checks, Prometheus
 * metrics, CORS, and
 * whatever extra routes are chained in (the HTTP/JSON surface).
 */
import { cors, createConnectRouter } from "@connectrpc/connect";
import {
  type UniversalHandler,
  universalServerRequestFromFetch,
  universalServerResponseToFetch,
} from "@connectrpc/connect/protocol";
import {
  DEFAULT_READ_MAX_BYTES,
  registerServices,
} from "../front/connect-services.ts";
import type { FetchRoute } from "../front/fetch-route.ts";
import { createFetchFrameRelay } from "../front/frame-relay/fetch-relay.ts";
import { webGzip } from "../front/gzip.ts";
import type { Gateway } from "../gateway/gateway.ts";
import { METRICS_CONTENT_TYPE } from "../gateway/metrics.ts";

export interface FetchHandlerOptions {
  /** Origins allowed to call from a browser; "*" for any. Empty: no CORS. */
  corsOrigins?: string[];
  /** Routes tried before the RPC routes, in order. */
  routes?: FetchRoute[];
  /** Largest request message accepted, in bytes. */
  readMaxBytes?: number;
  /** Aborts every running call, for a graceful shutdown. */
  shutdownSignal?: AbortSignal;
}

export function rpcHandlers(
  gateway: Gateway,
  protocols: { grpc: boolean },
  options: FetchHandlerOptions = {},
): UniversalHandler[] {
  const router = createConnectRouter({
    grpc: protocols.grpc,
    acceptCompression: [webGzip],
    readMaxBytes: options.readMaxBytes ?? DEFAULT_READ_MAX_BYTES,
    shutdownSignal: options.shutdownSignal,
  });
  registerServices(gateway)(router);
  return router.handlers;
}

export function createFetchHandler(
  gateway: Gateway,
  options: FetchHandlerOptions = {},
): (request: Request) => Promise<Response> {
  const byPath = new Map<string, UniversalHandler>();
  for (const h of rpcHandlers(gateway, { grpc: false }, options)) {
    byPath.set(h.requestPath, h);
  }
  const corsHeaders = corsHeadersFor(options.corsOrigins ?? []);
  // Binary server streams skip connect-es's decode/re-encode of every message.
  const frameRelay = createFetchFrameRelay(gateway, {
    compression: [webGzip],
    readMaxBytes: options.readMaxBytes ?? DEFAULT_READ_MAX_BYTES,
  });

  async function route(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/" && request.method === "GET") {
      // People who open the gateway's address in a browser get the viewer.
      // (Not Response.redirect: its headers are immutable, and CORS adds some.)
      return new Response(null, { status: 302, headers: { location: "/ui/" } });
    }
    if (url.pathname === "/healthz") {
      return Response.json({ status: "ok", backend: gateway.backendName });
    }
    if (url.pathname === "/readyz") {
      const ready = gateway.ready();
      return Response.json(
        { status: ready ? "ok" : "starting", backend: gateway.backendName },
        { status: ready ? 200 : 503 },
      );
    }
    if (url.pathname === "/metrics" && request.method === "GET") {
      return new Response(gateway.metrics.render(), {
        headers: { "content-type": METRICS_CONTENT_TYPE },
      });
    }
    for (const r of options.routes ?? []) {
      const response = await r(request);
      if (response) return response;
    }
    const handler = byPath.get(url.pathname);
    if (!handler) {
      return Response.json(
        { code: "not_found", message: `no route for ${url.pathname}` },
        { status: 404 },
      );
    }
    const contentType = request.headers.get("content-type") ?? "";
    if (
      contentType.startsWith("application/grpc") &&
      !contentType.startsWith("application/grpc-web")
    ) {
      return Response.json(
        {
          code: "unimplemented",
          message:
            "native gRPC is served on the gateway's gRPC port (HTTP/2, default 8081)",
        },
        { status: 415 },
      );
    }
    const relayed = frameRelay(request);
    if (relayed) return relayed;
    const universalResponse = await handler(
      universalServerRequestFromFetch(request, {}),
    );
    return universalServerResponseToFetch(universalResponse);
  }

  const shutdownSignal = options.shutdownSignal;
  return async (incoming) => {
    // Every route ends its call when the client goes *or* the server shuts
    // down, through the one signal routes already watch; otherwise a stalled
    // stream would hold a graceful shutdown forever.
    const request = shutdownSignal
      ? new Request(incoming, {
        signal: AbortSignal.any([incoming.signal, shutdownSignal]),
      })
      : incoming;
    const origin = request.headers.get("origin");
    const allowOrigin = origin && corsHeaders
      ? corsHeaders.allow(origin)
      : undefined;
    if (request.method === "OPTIONS" && allowOrigin) {
      return new Response(null, {
        status: 204,
        headers: {
          ...corsHeaders!.preflight,
          "access-control-allow-origin": allowOrigin,
          vary: "origin",
        },
      });
    }
    const response = await route(request);
    if (allowOrigin) {
      response.headers.set("access-control-allow-origin", allowOrigin);
      response.headers.set(
        "access-control-expose-headers",
        corsHeaders!.expose,
      );
      response.headers.append("vary", "origin");
    }
    return response;
  };
}

function corsHeadersFor(origins: string[]) {
  if (origins.length === 0) return undefined;
  const any = origins.includes("*");
  return {
    allow: (origin: string) =>
      any ? "*" : origins.includes(origin) ? origin : undefined,
    preflight: {
      "access-control-allow-methods": [...cors.allowedMethods].join(", "),
      "access-control-allow-headers": [
        ...cors.allowedHeaders,
        "authorization",
        "last-event-id",
      ].join(", "),
      "access-control-max-age": "7200",
    },
    expose: [...cors.exposedHeaders].join(", "),
  };
}
