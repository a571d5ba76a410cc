/**
 * The edge tier's composition: env → a fetch handler in front of an
 * in-cluster cbt-gateway. Every fetch-able surface (Connect binary and JSON,
 * gRPC-Web, HTTP/JSON, tickets, /ui/, /openapi.json, /healthz) is served
 * here; calls go upstream over the Connect protocol with the caller's bearer
 * token, and the in-cluster tier authenticates, authorizes and streams.
 *
 * Web APIs only, and nothing that pulls in Node or Deno modules: this is
 * what `deno task build:edge` bundles into one file for any fetch runtime.
 */
import { ForwardAuth } from "../auth/forward-auth.ts";
import { createHttpJsonRoutes } from "../front/http-json/index.ts";
import { createTicketForwarding } from "../front/http-json/ticket-forwarding.ts";
import { Gateway } from "../gateway/gateway.ts";
import { ConnectUpstreamBackend } from "../relay/connect-upstream.ts";
import { withResume } from "../relay/resume.ts";
import { createUiRoute } from "../ui/ui-route.ts";
import { DEFAULT_READ_MAX_BYTES } from "../front/connect-services.ts";
import { createFetchHandler } from "./fetch-handler.ts";

export interface EdgeConfig {
  /** The in-cluster gateway's HTTP base URL. */
  upstreamUrl: string;
  /** Origins allowed to call from a browser; "*" for any. */
  corsOrigins: string[];
  /** Largest request message accepted, in bytes. */
  readMaxBytes: number;
  /** One JSON line per streaming call; off by default at the edge. */
  accessLog: boolean;
}

/** The variables an edge host passes as `env` (Workers bindings, process env). */
export type EdgeEnv = Record<string, unknown>;

export class EdgeConfigError extends Error {
  override name = "EdgeConfigError";
}

/**
 * Reads CBT_GATEWAY_* variables. Unset ones may be absent, undefined or
 * null (workerd's `fromEnvironment` binding for an unset variable).
 */
export function edgeConfigFromEnv(env: EdgeEnv): EdgeConfig {
  const get = (name: string): string | undefined => {
    const value = env[`CBT_GATEWAY_${name}`];
    return typeof value === "string" && value !== "" ? value : undefined;
  };
  const upstreamUrl = get("UPSTREAM_URL");
  if (upstreamUrl === undefined) {
    throw new EdgeConfigError(
      "CBT_GATEWAY_UPSTREAM_URL is required: the in-cluster gateway's HTTP base URL",
    );
  }
  if (!/^https?:\/\/[^/]+\/?$/.test(upstreamUrl)) {
    throw new EdgeConfigError(
      `CBT_GATEWAY_UPSTREAM_URL must be http(s)://host[:port], got ${
        JSON.stringify(upstreamUrl)
      }`,
    );
  }
  const readMax = get("READ_MAX_BYTES");
  if (readMax !== undefined && !/^[1-9]\d{0,8}$/.test(readMax)) {
    throw new EdgeConfigError(
      `CBT_GATEWAY_READ_MAX_BYTES must be a positive integer, got ${
        JSON.stringify(readMax)
      }`,
    );
  }
  const accessLog = get("ACCESS_LOG") ?? "off";
  if (accessLog !== "on" && accessLog !== "off") {
    throw new EdgeConfigError(
      `CBT_GATEWAY_ACCESS_LOG must be on or off, got ${
        JSON.stringify(accessLog)
      }`,
    );
  }
  return {
    upstreamUrl,
    corsOrigins: (get("CORS_ORIGIN") ?? "").split(",").map((s) => s.trim())
      .filter(Boolean),
    readMaxBytes: readMax === undefined
      ? DEFAULT_READ_MAX_BYTES
      : Number(readMax),
    accessLog: accessLog === "on",
  };
}

export function createEdgeHandler(
  config: EdgeConfig,
): (request: Request) => Promise<Response> {
  // A cut between the tiers is resumed where it broke, as for a sidecar.
  const backend = withResume(
    new ConnectUpstreamBackend({ baseUrl: config.upstreamUrl }),
    {},
  );
  const gateway = new Gateway(backend, new ForwardAuth(), {
    log: config.accessLog ? (line) => console.log(line) : undefined,
  });
  return createFetchHandler(gateway, {
    corsOrigins: config.corsOrigins,
    readMaxBytes: config.readMaxBytes,
    routes: [
      createTicketForwarding(config.upstreamUrl),
      createHttpJsonRoutes(gateway),
      createUiRoute(),
    ],
  });
}
