/**
 * The one interface between the gateway's fronts and whatever answers for the
 * snapshots: the embedded file store, or a CSI driver's sidecar found through
 * Kubernetes. Fronts never know which.
 *
 * Streams carry encoded response messages (protobuf bytes, see
 * `wire/metadata-message.ts`), not decoded objects, so binary fronts can relay
 * them untouched and JSON fronts decode them with the fast codec.
 *
 * Errors are `ConnectError`s with the gRPC code the upstream API would use
 * (spec §3); fronts map them to their protocol.
 */
/** Who is calling, as established by the auth stage. */
export interface Caller {
  /** "anonymous" on an unauthenticated loopback gateway. */
  username: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
  /** The bearer token the caller presented, when one was. */
  bearerToken?: string;
}

export interface AllocatedQuery {
  namespace: string;
  snapshotName: string;
  /** Bytes; may be unaligned. The first tuple returned ends after it. */
  startingOffset: number;
  /** Tuples per message; 0 lets the backend choose. Never negative here. */
  maxResults: number;
  /** The caller's `security_token`, forwarded only in passthrough mode. */
  securityToken: string;
}

export interface DeltaQuery {
  namespace: string;
  /** The base snapshot's handle (what `base_snapshot_id` carries). */
  baseSnapshotId: string;
  targetSnapshotName: string;
  startingOffset: number;
  maxResults: number;
  securityToken: string;
}

/** What a backend knows about one snapshot without streaming it. */
export interface SnapshotInfo {
  namespace: string;
  name: string;
  /** The handle GetMetadataDelta takes as `base_snapshot_id`. */
  snapshotId: string;
  volume: string;
  volumeCapacityBytes: number;
  /**
   * The block type its streams use (1 FIXED_LENGTH, 2 VARIABLE_LENGTH), when
   * the backend knows it without streaming; 0 when it doesn't.
   */
  blockMetadataType?: number;
  readyToUse: boolean;
}

/** Per-call context every backend method receives. */
export interface CallOptions {
  /** Aborts when the client goes away; backends stop reading at once. */
  signal: AbortSignal;
  caller: Caller;
}

/** The result of starting a stream: encoded response messages, in order. */
export type EncodedMessageStream = AsyncIterable<Uint8Array>;

export interface Backend {
  /** Short name for logs and /readyz: "embedded", "kubernetes". */
  readonly name: string;
  getMetadataAllocated(
    query: AllocatedQuery,
    options: CallOptions,
  ): EncodedMessageStream;
  getMetadataDelta(
    query: DeltaQuery,
    options: CallOptions,
  ): EncodedMessageStream;
  /** One snapshot by name; NotFound (or Unavailable, as upstream) if absent. */
  getSnapshot(
    namespace: string,
    name: string,
    options: CallOptions,
  ): Promise<SnapshotInfo>;
  listSnapshots(
    namespace: string,
    options: CallOptions,
  ): Promise<SnapshotInfo[]>;
  /**
   * False while the backend can't serve yet (e.g. before Kubernetes
   * discovery's first list); /readyz answers 503 then. Absent: always ready.
   */
  ready?(): boolean;
  /** Releases files, connections and watches. */
  close(): Promise<void>;
}
