/**
 * What every backend that calls an upstream over native gRPC shares (the
 * Kubernetes backend, the static relay): the one request builder for the
 * two streaming calls, and the channel they send it on. The channel is
 * implemented by an adapter (`adapter/node-http2/upstream-pool.ts`): one
 * HTTP/2 connection per upstream, shared by every stream to it.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import {
  GetMetadataAllocatedRequestSchema,
  GetMetadataDeltaRequestSchema,
} from "../../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import { Code, ConnectError } from "@connectrpc/connect";
import type { AllocatedQuery, DeltaQuery, SnapshotInfo } from "./backend.ts";

export const ALLOCATED_PATH =
  "/snapshotmetadata.SnapshotMetadata/GetMetadataAllocated";
export const DELTA_PATH = "/snapshotmetadata.SnapshotMetadata/GetMetadataDelta";

/** Where an upstream listens, and whom to trust there. */
export interface UpstreamTarget {
  /** `https://host:port` (TLS, ALPN h2) or `http://host:port` (h2c). */
  url: string;
  /** PEM CA bundle: with https, the only roots trusted. */
  caPem?: string;
  /** TLS SNI and the name the certificate must carry (an IP: its IP SAN). */
  serverName?: string;
}

export interface UpstreamCallOptions {
  signal: AbortSignal;
  /** Extra request headers (authorization). */
  headers?: Record<string, string>;
  /** The caller's deadline (epoch ms): what is left goes up as grpc-timeout. */
  deadline?: number;
}

export interface UpstreamChannel {
  /**
   * Starts one server-streaming call and yields its response as runs of
   * whole envelopes (flags 0). A call the upstream refused unanswered is
   * sent once more. Ends cleanly only on grpc-status 0.
   */
  runs(
    target: UpstreamTarget,
    path: string,
    request: Uint8Array,
    options: UpstreamCallOptions,
  ): AsyncGenerator<Uint8Array>;
  /** Closes every connection gracefully. */
  close(): Promise<void>;
}

/** GetMetadataAllocatedRequest bytes; `startingOffset` as sent upstream. */
export function allocatedRequest(
  query: AllocatedQuery,
  securityToken: string,
  startingOffset = query.startingOffset,
): Uint8Array {
  return toBinary(
    GetMetadataAllocatedRequestSchema,
    create(GetMetadataAllocatedRequestSchema, {
      securityToken,
      namespace: query.namespace,
      snapshotName: query.snapshotName,
      startingOffset: BigInt(startingOffset),
      maxResults: query.maxResults,
    }),
  );
}

/** GetMetadataDeltaRequest bytes; `startingOffset` as sent upstream. */
export function deltaRequest(
  query: DeltaQuery,
  securityToken: string,
  startingOffset = query.startingOffset,
): Uint8Array {
  return toBinary(
    GetMetadataDeltaRequestSchema,
    create(GetMetadataDeltaRequestSchema, {
      securityToken,
      namespace: query.namespace,
      baseSnapshotId: query.baseSnapshotId,
      targetSnapshotName: query.targetSnapshotName,
      startingOffset: BigInt(startingOffset),
      maxResults: query.maxResults,
    }),
  );
}

/**
 * One snapshot out of an upstream's list: relays that can only list
 * (another gateway's ListSnapshots) answer getSnapshot with this.
 */
export function snapshotNamed(
  snapshots: SnapshotInfo[],
  namespace: string,
  name: string,
): SnapshotInfo {
  const found = snapshots.find((s) => s.name === name);
  if (!found) {
    throw new ConnectError(
      `snapshot ${namespace}/${name} not found upstream`,
      Code.NotFound,
    );
  }
  return found;
}
