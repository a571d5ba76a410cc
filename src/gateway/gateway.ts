/**
 * The middle of the data path, shared by every front. Each streaming RPC is
 * one method of plain steps: validate → admit (authenticate, authorize) →
 * open the backend's stream → observe it (checked invariants, metrics, one
 * access-log line). Fronts (Connect/gRPC/gRPC-Web, HTTP/JSON) only
 * translate their protocol to these calls and shape what comes back.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Authenticator } from "../auth/authenticator.ts";
import type {
  Backend,
  Caller,
  CallOptions,
  SnapshotInfo,
} from "../backend/backend.ts";
import type { CheckedStream } from "./checked-stream.ts";
import { GatewayMetrics, type RpcName } from "./metrics.ts";
import { ObservedCall } from "./observed-call.ts";
import { StreamLimits } from "./stream-limits.ts";
import {
  allocatedQuery,
  type AllocatedRequest,
  deltaByNameQuery,
  type DeltaByNameRequest,
  deltaQuery,
  type DeltaRequest,
} from "./requests.ts";
import {
  requireNamespace,
  requireSnapshotId,
  requireSnapshotName,
} from "../backend/validate.ts";

import type { CallContext } from "./call-context.ts";
export type { CallContext } from "./call-context.ts";

/** What the gateway tells the world about its calls. */
export interface GatewayObservers {
  metrics?: GatewayMetrics;
  /** Gets one JSON line per streaming call; never a token. */
  log?: (line: string) => void;
}

/** Observers plus the limits every stream is admitted under. */
export interface GatewayOptions extends GatewayObservers {
  /** Concurrency and duration limits (default: none). */
  limits?: StreamLimits;
  /** Requests' max_results are clamped to this (default MAX_RESULTS_CAP). */
  maxResults?: number;
}

export class Gateway {
  readonly metrics: GatewayMetrics;
  readonly limits: StreamLimits;
  readonly #backend: Backend;
  readonly #log?: (line: string) => void;
  readonly #maxResults?: number;

  constructor(
    backend: Backend,
    readonly auth: Authenticator,
    options: GatewayOptions = {},
  ) {
    this.#backend = backend;
    this.metrics = options.metrics ?? new GatewayMetrics();
    this.limits = options.limits ?? new StreamLimits();
    this.#log = options.log;
    this.#maxResults = options.maxResults;
  }

  /** The backend's short name, for health answers. */
  get backendName(): string {
    return this.#backend.name;
  }

  /** False while the backend can't serve yet (/readyz answers 503). */
  ready(): boolean {
    return this.#backend.ready?.() ?? true;
  }

  /** The same gateway with another authenticator (same metrics, log, limits). */
  withAuth(auth: Authenticator): Gateway {
    return new Gateway(this.#backend, auth, {
      metrics: this.metrics,
      log: this.#log,
      limits: this.limits,
      maxResults: this.#maxResults,
    });
  }

  async getMetadataAllocated(
    req: AllocatedRequest,
    context: CallContext,
  ): Promise<CheckedStream> {
    const observed = this.#observe(
      "GetMetadataAllocated",
      req.namespace,
      req.snapshotName,
    );
    const call = observed.limitDuration(context);
    try {
      const query = allocatedQuery(req, this.#maxResults);
      const options = await this.#admit(
        query.namespace,
        req.securityToken,
        call,
      );
      observed.admitted(options.caller.username);
      options.onResume = (reason) => observed.resumed(reason);
      const upstream = this.#backend.getMetadataAllocated(query, options);
      return observed.stream(upstream, query.startingOffset, call.signal);
    } catch (e) {
      throw observed.refused(e);
    }
  }

  async getMetadataDelta(
    req: DeltaRequest,
    context: CallContext,
  ): Promise<CheckedStream> {
    const observed = this.#observe(
      "GetMetadataDelta",
      req.namespace,
      req.targetSnapshotName,
    );
    const call = observed.limitDuration(context);
    try {
      const query = deltaQuery(req, this.#maxResults);
      const options = await this.#admit(
        query.namespace,
        req.securityToken,
        call,
      );
      observed.admitted(options.caller.username);
      options.onResume = (reason) => observed.resumed(reason);
      const upstream = this.#backend.getMetadataDelta(query, options);
      return observed.stream(upstream, query.startingOffset, call.signal);
    } catch (e) {
      throw observed.refused(e);
    }
  }

  /** Delta with the base named like the target; resolved through the backend. */
  async getMetadataDeltaByName(
    req: DeltaByNameRequest,
    context: CallContext,
  ): Promise<CheckedStream> {
    const observed = this.#observe(
      "GetMetadataDeltaByName",
      req.namespace,
      req.targetSnapshotName,
    );
    const call = observed.limitDuration(context);
    try {
      const { baseSnapshotName, query } = deltaByNameQuery(
        req,
        this.#maxResults,
      );
      // One admission covers the base lookup and the stream.
      const options = await this.#admit(
        query.namespace,
        req.securityToken,
        call,
      );
      observed.admitted(options.caller.username);
      options.onResume = (reason) => observed.resumed(reason);
      const base = await this.#backend.getSnapshot(
        query.namespace,
        baseSnapshotName,
        options,
      );
      const baseSnapshotId = requireSnapshotId(
        "base snapshot id",
        base.snapshotId,
      );
      const upstream = this.#backend.getMetadataDelta(
        { ...query, baseSnapshotId },
        options,
      );
      return observed.stream(upstream, query.startingOffset, call.signal);
    } catch (e) {
      throw observed.refused(e);
    }
  }

  /** Snapshot facts (capacity, id) for fronts that show them up front. */
  async getSnapshot(
    namespaceIn: string,
    nameIn: string,
    securityToken: string,
    call: CallContext,
  ): Promise<SnapshotInfo> {
    const namespace = requireNamespace(namespaceIn);
    const name = requireSnapshotName("snapshot_name", nameIn);
    const options = await this.#admit(namespace, securityToken, call);
    return this.#backend.getSnapshot(namespace, name, options);
  }

  async listSnapshots(
    namespaceIn: string,
    securityToken: string,
    call: CallContext,
  ): Promise<SnapshotInfo[]> {
    const namespace = requireNamespace(namespaceIn);
    const options = await this.#admit(namespace, securityToken, call);
    return this.#backend.listSnapshots(namespace, options);
  }

  /**
   * Admits a caller for a stream ticket on one snapshot: the same admission
   * as every call, then a lookup, so nobody gets a ticket for a snapshot
   * that isn't there. Returns who the ticket is for.
   */
  async admitStreamTicket(
    namespaceIn: string,
    snapshotIn: string,
    call: CallContext,
  ): Promise<{ caller: Caller; namespace: string; snapshot: string }> {
    if (this.auth.mode === "passthrough") {
      // The ticket would have to carry the caller's token to forward it.
      throw new ConnectError(
        "stream tickets need the gateway to authenticate callers; with --auth passthrough use Authorization: Bearer",
        Code.FailedPrecondition,
      );
    }
    const namespace = requireNamespace(namespaceIn);
    const snapshot = requireSnapshotName("snapshot", snapshotIn);
    const options = await this.#admit(namespace, "", call);
    await this.#backend.getSnapshot(namespace, snapshot, options);
    return { caller: options.caller, namespace, snapshot };
  }

  /**
   * Authenticates and authorizes a caller for a namespace; the result is what
   * the backend gets. Every call goes through here.
   */
  async #admit(
    namespace: string,
    securityToken: string,
    call: CallContext,
  ): Promise<CallOptions> {
    const caller = await this.auth.authenticate({
      headers: call.headers,
      securityToken,
      signal: call.signal,
    });
    await this.auth.authorize(caller, namespace, call.signal);
    return { signal: call.signal, caller, deadline: call.deadline };
  }

  #observe(
    rpc: RpcName,
    namespace: unknown,
    snapshot: unknown,
  ): ObservedCall {
    return new ObservedCall(
      this.metrics,
      this.#log,
      this.limits,
      rpc,
      namespace,
      snapshot,
    );
  }
}
