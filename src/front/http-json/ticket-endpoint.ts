/**
 * POST /v1/namespaces/{namespace}/snapshots/{snapshot}/stream-tickets:
 * a caller authenticated the normal way (Authorization: Bearer) gets a
 * short-lived ticket for an EventSource URL (see stream-ticket.ts).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Gateway } from "../../gateway/gateway.ts";
import {
  requireNamespace,
  requireSnapshotName,
} from "../../gateway/validate.ts";
import { errorResponse } from "./errors.ts";
import type { StreamTickets } from "./stream-ticket.ts";

export async function handleTicket(
  gateway: Gateway,
  tickets: StreamTickets,
  request: Request,
  route: { namespace: string; snapshot: string },
): Promise<Response> {
  try {
    if (gateway.auth.mode === "passthrough") {
      // The ticket would have to carry the caller's token to forward it.
      throw new ConnectError(
        "stream tickets need the gateway to authenticate callers; with --auth passthrough use Authorization: Bearer",
        Code.FailedPrecondition,
      );
    }
    const namespace = requireNamespace(route.namespace);
    const snapshot = requireSnapshotName("snapshot", route.snapshot);
    // The same admission as every call, then a lookup, so nobody gets a
    // ticket for a snapshot that isn't there.
    const options = await gateway.admit(namespace, "", {
      headers: request.headers,
      signal: request.signal,
    });
    await gateway.backend.getSnapshot(namespace, snapshot, options);
    const issued = await tickets.issue(options.caller, namespace, snapshot);
    return Response.json(issued, {
      status: 201,
      headers: { "cache-control": "no-store" },
    });
  } catch (err) {
    return errorResponse(err);
  }
}
