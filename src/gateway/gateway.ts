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
import { ConnectError } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { CheckedStream, type StreamProgress } from "./checked-stream.ts";
import { GatewayMetrics, type RpcName } from "./metrics.ts";
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
  /** When the caller's deadline passes (epoch ms), if it set one. */
  deadline?: number;
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

/** One access-log line: a call, its outcome and how far its stream got. */
export interface AccessLogRecord {
  time: string;
  rpc: RpcName;
  namespace: string;
  /** The target snapshot's name, as requested. */
  snapshot: string;
  /** Who the authenticator said the caller is; null if it never got to say. */
  caller: string | null;
  /** "ok" or a Connect code name. */
  code: string;
  /** True when the call was refused before a stream started. */
  refused: boolean;
  messages: number;
  tuples: number;
  nextOffset: number | null;
  durationMs: number;
}

/** What the gateway tells the world about its calls. */
export interface GatewayObservers {
  metrics?: GatewayMetrics;
  /** Gets one JSON line per streaming call; never a token. */
  log?: (line: string) => void;
}

/** A streaming call in progress, for its access-log line and metrics. */
interface CallRecord {
  rpc: RpcName;
  namespace: string;
  snapshot: string;
  caller: string | null;
  startedAt: number;
}

/** What a streaming call's preparation hands to the stream. */
interface StreamSource {
  upstream: AsyncIterable<Uint8Array>;
  startingOffset: number;
  signal: AbortSignal;
}

/** Request strings go into the log as given, but not without limit. */
function loggable(value: unknown): string {
  return typeof value === "string" ? value.slice(0, 256) : "";
}

export class Gateway {
  readonly metrics: GatewayMetrics;
  readonly #log?: (line: string) => void;

  constructor(
    readonly backend: Backend,
    readonly auth: Authenticator,
    observers: GatewayObservers = {},
  ) {
    this.metrics = observers.metrics ?? new GatewayMetrics();
    this.#log = observers.log;
  }

  /** The same gateway with another authenticator (same metrics and log). */
  withAuth(auth: Authenticator): Gateway {
    return new Gateway(this.backend, auth, {
      metrics: this.metrics,
      log: this.#log,
    });
  }

  getMetadataAllocated(
    req: AllocatedRequest,
    call: CallEnvelope,
  ): Promise<CheckedStream> {
    return this.#observed(
      "GetMetadataAllocated",
      req.namespace,
      req.snapshotName,
      (record) => this.#prepareAllocated(req, call, record),
    );
  }

  async #prepareAllocated(
    req: AllocatedRequest,
    call: CallEnvelope,
    record: CallRecord,
  ): Promise<StreamSource> {
    const namespace = requireNamespace(req.namespace);
    const snapshotName = requireSnapshotName("snapshot_name", req.snapshotName);
    const startingOffset = requireStartingOffset(req.startingOffset);
    const maxResults = requireMaxResults(req.maxResults);
    const options = await this.#admitFor(
      record,
      namespace,
      req.securityToken,
      call,
    );
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
    return { upstream, startingOffset, signal: call.signal };
  }

  getMetadataDelta(
    req: DeltaRequest,
    call: CallEnvelope,
  ): Promise<CheckedStream> {
    return this.#observed(
      "GetMetadataDelta",
      req.namespace,
      req.targetSnapshotName,
      (record) => this.#prepareDelta(req, call, record),
    );
  }

  async #prepareDelta(
    req: DeltaRequest,
    call: CallEnvelope,
    record: CallRecord,
  ): Promise<StreamSource> {
    const namespace = requireNamespace(req.namespace);
    const baseSnapshotId = requireSnapshotId(
      "base_snapshot_id",
      req.baseSnapshotId,
    );
    const { targetSnapshotName, startingOffset, maxResults } =
      deltaStreamFields(req);
    const options = await this.#admitFor(
      record,
      namespace,
      req.securityToken,
      call,
    );
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
  getMetadataDeltaByName(
    req: DeltaByNameRequest,
    call: CallEnvelope,
  ): Promise<CheckedStream> {
    return this.#observed(
      "GetMetadataDeltaByName",
      req.namespace,
      req.targetSnapshotName,
      (record) => this.#prepareDeltaByName(req, call, record),
    );
  }

  async #prepareDeltaByName(
    req: DeltaByNameRequest,
    call: CallEnvelope,
    record: CallRecord,
  ): Promise<StreamSource> {
    const namespace = requireNamespace(req.namespace);
    const baseName = requireSnapshotName(
      "base_snapshot_name",
      req.baseSnapshotName,
    );
    const { targetSnapshotName, startingOffset, maxResults } =
      deltaStreamFields(req);
    // One admission covers the base lookup and the stream.
    const options = await this.#admitFor(
      record,
      namespace,
      req.securityToken,
      call,
    );
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

  #delta(query: DeltaQuery, options: CallOptions): StreamSource {
    return {
      upstream: this.backend.getMetadataDelta(query, options),
      startingOffset: query.startingOffset,
      signal: options.signal,
    };
  }

  /**
   * Runs a streaming call's preparation (validate, admit, open the
   * upstream) and wraps the result in a CheckedStream that reports its end.
   * Either way ends up in the metrics and as one access-log line.
   */
  async #observed(
    rpc: RpcName,
    namespace: unknown,
    snapshot: unknown,
    prepare: (record: CallRecord) => Promise<StreamSource>,
  ): Promise<CheckedStream> {
    const record: CallRecord = {
      rpc,
      namespace: loggable(namespace),
      snapshot: loggable(snapshot),
      caller: null,
      startedAt: performance.now(),
    };
    let source: StreamSource;
    try {
      source = await prepare(record);
    } catch (e) {
      const code = codeToString(ConnectError.from(e).code);
      this.metrics.refused(rpc, code);
      this.#writeLog(record, code, true);
      throw e;
    }
    this.metrics.streamStarted(rpc);
    return new CheckedStream(
      source.upstream,
      source.startingOffset,
      source.signal,
      (progress, error) => {
        const code = error ? codeToString(error.code) : "ok";
        this.metrics.streamFinished(
          rpc,
          code,
          progress,
          (performance.now() - record.startedAt) / 1000,
        );
        this.#writeLog(record, code, false, progress);
      },
    );
  }

  async #admitFor(
    record: CallRecord,
    namespace: string,
    securityToken: string,
    call: CallEnvelope,
  ): Promise<CallOptions> {
    const options = await this.admit(namespace, securityToken, call);
    record.caller = options.caller.username;
    return options;
  }

  #writeLog(
    record: CallRecord,
    code: string,
    refused: boolean,
    progress?: StreamProgress,
  ): void {
    if (!this.#log) return;
    const line: AccessLogRecord = {
      time: new Date().toISOString(),
      rpc: record.rpc,
      namespace: record.namespace,
      snapshot: record.snapshot,
      caller: record.caller,
      code,
      refused,
      messages: progress?.messages ?? 0,
      tuples: progress?.tuples ?? 0,
      nextOffset: progress?.nextOffset ?? null,
      durationMs: Math.round((performance.now() - record.startedAt) * 1000) /
        1000,
    };
    try {
      this.#log(JSON.stringify(line));
    } catch {
      // A broken log sink must not break the data path.
    }
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
    return { signal: call.signal, caller, deadline: call.deadline };
  }
}

/** The fields both delta calls validate the same way. */
function deltaStreamFields(
  req: Pick<
    DeltaRequest,
    "targetSnapshotName" | "startingOffset" | "maxResults"
  >,
) {
  return {
    targetSnapshotName: requireSnapshotName(
      "target_snapshot_name",
      req.targetSnapshotName,
    ),
    startingOffset: requireStartingOffset(req.startingOffset),
    maxResults: requireMaxResults(req.maxResults),
  };
}
