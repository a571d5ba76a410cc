/**
 * The middle of the data path, shared by every front:
 * validate → authenticate → authorize → call the backend → check the stream.
 * Fronts (Connect/gRPC/gRPC-Web, HTTP/JSON) only translate their protocol to
 * these calls and shape what comes back.
 */
import type { Authenticator } from "../auth/authenticator.ts";
import type {
  Backend,
  CallOptions,
  DeltaQuery,
  SnapshotInfo,
} from "../upstream/backend.ts";
import { CheckedStream } from "./checked-stream.ts";
import {
  requireMaxResults,
  requireNamespace,
  requireSnapshotId,
  requireSnapshotName,
  requireStartingOffset,
} from "./validate.ts";

/** What every call brings from its front. */
export interface CallEnvelope {
  headers: Headers;
  signal: AbortSignal;
}

/** Request fields as the fronts receive them (proto field semantics). */
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

export class Gateway {
  constructor(
    readonly backend: Backend,
    readonly auth: Authenticator,
  ) {}

  async getMetadataAllocated(
    req: AllocatedRequest,
    call: CallEnvelope,
  ): Promise<CheckedStream> {
    const namespace = requireNamespace(req.namespace);
    const snapshotName = requireSnapshotName("snapshot_name", req.snapshotName);
    const startingOffset = requireStartingOffset(req.startingOffset);
    const maxResults = requireMaxResults(req.maxResults);
    const options = await this.admit(namespace, req.securityToken, call);
    const upstream = this.backend.getMetadataAllocated(
      {
        namespace,
        snapshotName,
        startingOffset,
        maxResults,
        securityToken: req.securityToken,
      },
      options,
    );
    return new CheckedStream(upstream, startingOffset, call.signal);
  }

  async getMetadataDelta(
    req: DeltaRequest,
    call: CallEnvelope,
  ): Promise<CheckedStream> {
    const namespace = requireNamespace(req.namespace);
    const baseSnapshotId = requireSnapshotId(
      "base_snapshot_id",
      req.baseSnapshotId,
    );
    const targetSnapshotName = requireSnapshotName(
      "target_snapshot_name",
      req.targetSnapshotName,
    );
    const startingOffset = requireStartingOffset(req.startingOffset);
    const maxResults = requireMaxResults(req.maxResults);
    const options = await this.admit(namespace, req.securityToken, call);
    return this.#delta({
      namespace,
      baseSnapshotId,
      targetSnapshotName,
      startingOffset,
      maxResults,
      securityToken: req.securityToken,
    }, options);
  }

  /** Delta with the base named like the target; resolved through the backend. */
  async getMetadataDeltaByName(
    req: DeltaByNameRequest,
    call: CallEnvelope,
  ): Promise<CheckedStream> {
    const namespace = requireNamespace(req.namespace);
    const baseName = requireSnapshotName(
      "base_snapshot_name",
      req.baseSnapshotName,
    );
    const targetSnapshotName = requireSnapshotName(
      "target_snapshot_name",
      req.targetSnapshotName,
    );
    const startingOffset = requireStartingOffset(req.startingOffset);
    const maxResults = requireMaxResults(req.maxResults);
    // One admission covers the base lookup and the stream.
    const options = await this.admit(namespace, req.securityToken, call);
    const base = await this.backend.getSnapshot(namespace, baseName, options);
    return this.#delta({
      namespace,
      baseSnapshotId: requireSnapshotId("base snapshot id", base.snapshotId),
      targetSnapshotName,
      startingOffset,
      maxResults,
      securityToken: req.securityToken,
    }, options);
  }

  #delta(query: DeltaQuery, options: CallOptions): CheckedStream {
    return new CheckedStream(
      this.backend.getMetadataDelta(query, options),
      query.startingOffset,
      options.signal,
    );
  }

  /** Snapshot facts (capacity, id) for fronts that show them up front. */
  async getSnapshot(
    namespaceIn: string,
    nameIn: string,
    securityToken: string,
    call: CallEnvelope,
  ): Promise<SnapshotInfo> {
    const namespace = requireNamespace(namespaceIn);
    const name = requireSnapshotName("snapshot_name", nameIn);
    const options = await this.admit(namespace, securityToken, call);
    return this.backend.getSnapshot(namespace, name, options);
  }

  async listSnapshots(
    namespaceIn: string,
    securityToken: string,
    call: CallEnvelope,
  ): Promise<SnapshotInfo[]> {
    const namespace = requireNamespace(namespaceIn);
    const options = await this.admit(namespace, securityToken, call);
    return this.backend.listSnapshots(namespace, options);
  }

  /**
   * Authenticates and authorizes a caller for a namespace; the result is what
   * the backend gets. Every call goes through here, and so do fronts that
   * admit callers for something else (stream tickets).
   */
  async admit(
    namespace: string,
    securityToken: string,
    call: CallEnvelope,
  ): Promise<CallOptions> {
    const caller = await this.auth.authenticate({
      headers: call.headers,
      securityToken,
      signal: call.signal,
    });
    await this.auth.authorize(caller, namespace, call.signal);
    return { signal: call.signal, caller };
  }
}
