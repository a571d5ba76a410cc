/**
 * The plain HTTP/JSON surface, for curl, jq, Python `requests` and the
 * browser's EventSource:
 *
 *   GET|POST /v1/namespaces/{ns}/snapshots/{snap}/allocated
 *   GET|POST /v1/namespaces/{ns}/snapshots/{snap}/delta?baseSnapshotId=…|baseSnapshotName=…
 *   POST     /v1/namespaces/{ns}/snapshots/{snap}/stream-tickets
 *   GET      /v1/namespaces/{ns}/snapshots
 *   GET      /openapi.json
 *
 * Web-standard APIs only (no Deno.*, no node:), so it runs on any fetch runtime.
 * Returns undefined for paths it does not own, so it chains into a fetch handler.
 */
import type { Gateway } from "../../gateway/gateway.ts";
import { openApiDocument } from "./openapi.ts";
import { handleListSnapshots } from "./snapshots-endpoint.ts";
import { methodNotAllowed } from "../fetch-route.ts";
import { handleStream } from "./stream-endpoint.ts";
import { StreamTickets } from "./stream-ticket.ts";
import { handleTicket } from "./ticket-endpoint.ts";

export interface HttpJsonOptions {
  /** HMAC key for stream tickets (≥ 32 bytes); shared by replicas. Random per process if absent. */
  ticketSecret?: Uint8Array;
  /** How long a stream ticket may be redeemed (default 60 s). */
  ticketTtlSeconds?: number;
  /** Quiet time before a heartbeat is sent on a stream (default 15 s). */
  heartbeatMs?: number;
  /** SSE `retry:` — how long an EventSource waits to reconnect (default 2 s). */
  retryMs?: number;
  /** Most tuples in one application/json document before it is truncated (default 100 000). */
  jsonMaxTuples?: number;
}

export const DEFAULT_HEARTBEAT_MS = 15_000;
export const DEFAULT_RETRY_MS = 2_000;
export const DEFAULT_JSON_MAX_TUPLES = 100_000;

const SNAPSHOT_ROUTE =
  /^\/v1\/namespaces\/([^/]+)\/snapshots\/([^/]+)\/(allocated|delta|stream-tickets)$/;
const LIST_ROUTE = /^\/v1\/namespaces\/([^/]+)\/snapshots$/;

export function createHttpJsonRoutes(
  gateway: Gateway,
  options: HttpJsonOptions = {},
): (request: Request) => Promise<Response> | undefined {
  const tickets = new StreamTickets({
    secret: options.ticketSecret,
    ttlSeconds: options.ticketTtlSeconds,
  });
  const streamOptions = {
    tickets,
    heartbeatMs: options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS,
    retryMs: options.retryMs ?? DEFAULT_RETRY_MS,
    jsonMaxTuples: options.jsonMaxTuples ?? DEFAULT_JSON_MAX_TUPLES,
  };
  let openApi: string | undefined;

  return (request) => {
    const path = new URL(request.url).pathname;
    const method = request.method;
    if (path === "/openapi.json") {
      if (method !== "GET" && method !== "HEAD") {
        return Promise.resolve(methodNotAllowed("GET"));
      }
      openApi ??= JSON.stringify(openApiDocument(), null, 2);
      return Promise.resolve(
        new Response(method === "HEAD" ? null : openApi, {
          headers: {
            "content-type": "application/json",
            "cache-control": "max-age=300",
          },
        }),
      );
    }
    const list = LIST_ROUTE.exec(path);
    if (list) {
      if (method !== "GET") return Promise.resolve(methodNotAllowed("GET"));
      return handleListSnapshots(gateway, request, decode(list[1]));
    }
    const match = SNAPSHOT_ROUTE.exec(path);
    if (!match) return undefined;
    const route = { namespace: decode(match[1]), snapshot: decode(match[2]) };
    if (match[3] === "stream-tickets") {
      if (method !== "POST") return Promise.resolve(methodNotAllowed("POST"));
      return handleTicket(gateway, tickets, request, route);
    }
    if (method !== "GET" && method !== "POST") {
      return Promise.resolve(methodNotAllowed("GET, POST"));
    }
    const operation = match[3] as "allocated" | "delta";
    return handleStream(gateway, streamOptions, request, {
      ...route,
      operation,
    });
  };
}

/** Path segments are percent-encoded; a bad escape stays as is (and fails validation). */
function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

export { StreamTickets } from "./stream-ticket.ts";
export { openApiDocument } from "./openapi.ts";
