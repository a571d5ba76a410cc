/**
 * GET /v1/namespaces/{namespace}/snapshots: the snapshots a caller can list,
 * with the ids a delta takes as `baseSnapshotId` — so curl users can find them.
 */
import type { Gateway } from "../../gateway/gateway.ts";
import { errorResponse, invalidArgument } from "./errors.ts";
import { securityTokenFrom } from "./security-token.ts";

export async function handleListSnapshots(
  gateway: Gateway,
  request: Request,
  namespace: string,
): Promise<Response> {
  try {
    if (new URL(request.url).search !== "") {
      throw invalidArgument("this endpoint takes no parameters");
    }
    const token = securityTokenFrom(gateway.auth, request.headers);
    const snapshots = await gateway.listSnapshots(namespace, token, {
      headers: request.headers,
      signal: request.signal,
    });
    return Response.json({
      snapshots: snapshots.map((s) => ({
        name: s.name,
        snapshotId: s.snapshotId,
        volume: s.volume,
        volumeCapacityBytes: s.volumeCapacityBytes,
        readyToUse: s.readyToUse,
      })),
    }, { headers: { "cache-control": "no-store" } });
  } catch (err) {
    return errorResponse(err);
  }
}
