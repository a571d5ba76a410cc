/**
 * POST /v1/namespaces/{namespace}/snapshots/{snapshot}/stream-tickets:
 * a caller authenticated the normal way (Authorization: Bearer) gets a
 * short-lived ticket for an EventSource URL (see stream-ticket.ts).
 */
import type { Gateway } from "../../gateway/gateway.ts";
import { errorResponse } from "./errors.ts";
import type { StreamTickets } from "./stream-ticket.ts";

export async function handleTicket(
  gateway: Gateway,
  tickets: StreamTickets,
  request: Request,
  route: { namespace: string; snapshot: string },
): Promise<Response> {
  try {
    const { caller, namespace, snapshot } = await gateway.admitStreamTicket(
      route.namespace,
      route.snapshot,
      { headers: request.headers, signal: request.signal },
    );
    const issued = await tickets.issue(caller, namespace, snapshot);
    return Response.json(issued, {
      status: 201,
      headers: { "cache-control": "no-store" },
    });
  } catch (err) {
    return errorResponse(err);
  }
}
