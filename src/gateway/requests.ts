/**
 * The streaming calls' requests as fronts receive them (proto field
 * semantics), and each one validated into what the backend is asked:
 * every field checked before any auth or upstream call.
 */
import type { AllocatedQuery, DeltaQuery } from "../backend/backend.ts";
import {
  requireMaxResults,
  requireNamespace,
  requireSnapshotId,
  requireSnapshotName,
  requireStartingOffset,
} from "../backend/validate.ts";

export interface AllocatedRequest {
  securityToken: string;
  namespace: string;
  snapshotName: string;
  startingOffset: bigint | number;
  maxResults: number;
}

export interface DeltaRequest {
  securityToken: string;
  namespace: string;
  baseSnapshotId: string;
  targetSnapshotName: string;
  startingOffset: bigint | number;
  maxResults: number;
}

export interface DeltaByNameRequest {
  securityToken: string;
  namespace: string;
  baseSnapshotName: string;
  targetSnapshotName: string;
  startingOffset: bigint | number;
  maxResults: number;
}

export function allocatedQuery(req: AllocatedRequest): AllocatedQuery {
  return {
    namespace: requireNamespace(req.namespace),
    snapshotName: requireSnapshotName("snapshot_name", req.snapshotName),
    startingOffset: requireStartingOffset(req.startingOffset),
    maxResults: requireMaxResults(req.maxResults),
    securityToken: req.securityToken,
  };
}

export function deltaQuery(req: DeltaRequest): DeltaQuery {
  const namespace = requireNamespace(req.namespace);
  const baseSnapshotId = requireSnapshotId(
    "base_snapshot_id",
    req.baseSnapshotId,
  );
  return { namespace, baseSnapshotId, ...deltaTarget(req) };
}

/** A delta by name: the query without its base, and the base's name. */
export function deltaByNameQuery(
  req: DeltaByNameRequest,
): { baseSnapshotName: string; query: Omit<DeltaQuery, "baseSnapshotId"> } {
  const namespace = requireNamespace(req.namespace);
  const baseSnapshotName = requireSnapshotName(
    "base_snapshot_name",
    req.baseSnapshotName,
  );
  return { baseSnapshotName, query: { namespace, ...deltaTarget(req) } };
}

/** The fields both delta calls validate the same way. */
function deltaTarget(req: DeltaRequest | DeltaByNameRequest) {
  return {
    targetSnapshotName: requireSnapshotName(
      "target_snapshot_name",
      req.targetSnapshotName,
    ),
    startingOffset: requireStartingOffset(req.startingOffset),
    maxResults: requireMaxResults(req.maxResults),
    securityToken: req.securityToken,
  };
}
