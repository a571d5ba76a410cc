/**
 * Stream tickets on an edge tier: minted and redeemed by the tier behind.
 *
 * A ticket names the caller it was issued to, and only the tier that
 * authenticated the caller (the in-cluster gateway) knows who that is; an
 * edge that forwards bearer tokens (auth/forward-auth.ts) never does. So the
 * edge passes ticket requests (`POST …/stream-tickets`) and ticket-bearing
 * streams (`…/allocated?ticket=…`, `…/delta?ticket=…`) through to the
 * upstream gateway unchanged, byte for byte, and returns its answer. An
 * EventSource reconnects with `Last-Event-ID`, which goes along too.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { FetchRoute } from "../fetch-route.ts";
import { errorResponse } from "./errors.ts";

const TICKET_ROUTE =
  /^\/v1\/namespaces\/[^/]+\/snapshots\/[^/]+\/(allocated|delta|stream-tickets)$/;

/** Request headers that carry meaning to the upstream's HTTP/JSON surface. */
const FORWARDED_REQUEST_HEADERS = [
  "accept",
  "authorization",
  "content-type",
  "last-event-id",
];

/** Transport headers the runtime's fetch has already dealt with. */
const DROPPED_RESPONSE_HEADERS = [
  "connection",
  "content-encoding",
  "content-length",
  "keep-alive",
  "transfer-encoding",
];

export function createTicketForwarding(
  upstreamBaseUrl: string,
  fetchImpl: typeof fetch = fetch,
): FetchRoute {
  const base = new URL(upstreamBaseUrl);
  return (request) => {
    const url = new URL(request.url);
    const match = TICKET_ROUTE.exec(url.pathname);
    if (!match) return undefined;
    if (match[1] !== "stream-tickets" && !url.searchParams.has("ticket")) {
      return undefined;
    }
    return forward(request, new URL(url.pathname + url.search, base));
  };

  async function forward(request: Request, target: URL): Promise<Response> {
    const headers = new Headers();
    for (const name of FORWARDED_REQUEST_HEADERS) {
      const value = request.headers.get(name);
      if (value !== null) headers.set(name, value);
    }
    let upstream: Response;
    try {
      upstream = await fetchImpl(target, {
        method: request.method,
        headers,
        body: request.method === "GET" || request.method === "HEAD"
          ? undefined
          : await request.arrayBuffer(),
        signal: request.signal,
      });
    } catch (e) {
      return errorResponse(
        new ConnectError(
          `upstream gateway unreachable: ${(e as Error).message}`,
          request.signal.aborted ? Code.Canceled : Code.Unavailable,
        ),
      );
    }
    const responseHeaders = new Headers(upstream.headers);
    for (const name of DROPPED_RESPONSE_HEADERS) responseHeaders.delete(name);
    return new Response(upstream.body, {
      status: upstream.status,
      headers: responseHeaders,
    });
  }
}
