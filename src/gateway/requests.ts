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

/**
 * Each takes `maxResultsCap`, the gateway's clamp for max_results
 * (default MAX_RESULTS_CAP).
 */
export function allocatedQuery(
  req: AllocatedRequest,
  maxResultsCap?: number,
): AllocatedQuery {
  return {
    namespace: requireNamespace(req.namespace),
    snapshotName: requireSnapshotName("snapshot_name", req.snapshotName),
    startingOffset: requireStartingOffset(req.startingOffset),
    maxResults: requireMaxResults(req.maxResults, maxResultsCap),
    securityToken: req.securityToken,
  };
}

export function deltaQuery(
  req: DeltaRequest,
  maxResultsCap?: number,
): DeltaQuery {
  const namespace = requireNamespace(req.namespace);
  const baseSnapshotId = requireSnapshotId(
    "base_snapshot_id",
    req.baseSnapshotId,
  );
  return { namespace, baseSnapshotId, ...deltaTarget(req, maxResultsCap) };
}

/** A delta by name: the query without its base, and the base's name. */
export function deltaByNameQuery(
  req: DeltaByNameRequest,
  maxResultsCap?: number,
): { baseSnapshotName: string; query: Omit<DeltaQuery, "baseSnapshotId"> } {
  const namespace = requireNamespace(req.namespace);
  const baseSnapshotName = requireSnapshotName(
    "base_snapshot_name",
    req.baseSnapshotName,
  );
  return {
    baseSnapshotName,
    query: { namespace, ...deltaTarget(req, maxResultsCap) },
  };
}

/** The fields both delta calls validate the same way. */
function deltaTarget(
  req: DeltaRequest | DeltaByNameRequest,
  maxResultsCap: number | undefined,
) {
  return {
    targetSnapshotName: requireSnapshotName(
      "target_snapshot_name",
      req.targetSnapshotName,
    ),
    startingOffset: requireStartingOffset(req.startingOffset),
    maxResults: requireMaxResults(req.maxResults, maxResultsCap),
    securityToken: req.securityToken,
  };
}
