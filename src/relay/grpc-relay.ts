/**
 * The relay backend: a static upstream that speaks the snapshot-metadata API
 * (a sidecar, or another cbt-gateway) over native gRPC. Response messages are
 * relayed as the upstream's bytes, never decoded here; the gateway's checked
 * stream scans them. Snapshot lookups use the upstream's GatewayService, so
 * GetMetadataDeltaByName and the snapshot list work when the upstream is a
 * cbt-gateway (a bare sidecar answers Unimplemented, relayed as such).
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  ListSnapshotsRequestSchema,
  ListSnapshotsResponseSchema,
} from "../../gen/cbtgateway/v1/gateway_pb.ts";
import type {
  AllocatedQuery,
  Backend,
  CallOptions,
  DeltaQuery,
  EncodedMessageStream,
  SnapshotInfo,
} from "../backend/backend.ts";
import {
  ALLOCATED_PATH,
  allocatedRequest,
  DELTA_PATH,
  deltaRequest,
  snapshotNamed,
  type UpstreamChannel,
} from "../backend/upstream.ts";
import { type EnvelopeRunSource, messagesOfRuns } from "../wire/envelopes.ts";

export interface GrpcRelayOptions {
  /** `http://host:port` (h2c) or `https://host:port` (TLS, ALPN h2). */
  url: string;
  /** PEM CA bundle for an https upstream with a private CA. */
  caPem?: string;
  /** The connection to it (an adapter's UpstreamPool); closed with the relay. */
  channel: UpstreamChannel;
}

const LIST = "/cbtgateway.v1.GatewayService/ListSnapshots";

export class GrpcRelayBackend implements Backend {
  readonly name = "grpc";
  #closed = false;

  constructor(private readonly options: GrpcRelayOptions) {
    const url = new URL(options.url);
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new Error(
        `upstream URL must be http:// or https://, got ${options.url}`,
      );
    }
  }

  getMetadataAllocated(
    query: AllocatedQuery,
    options: CallOptions,
  ): EncodedMessageStream {
    const request = allocatedRequest(query, query.securityToken);
    return this.#call(ALLOCATED_PATH, request, options);
  }

  getMetadataDelta(
    query: DeltaQuery,
    options: CallOptions,
  ): EncodedMessageStream {
    const request = deltaRequest(query, query.securityToken);
    return this.#call(DELTA_PATH, request, options);
  }

  async getSnapshot(
    namespace: string,
    name: string,
    options: CallOptions,
  ): Promise<SnapshotInfo> {
    return snapshotNamed(
      await this.listSnapshots(namespace, options),
      namespace,
      name,
    );
  }

  async listSnapshots(
    namespace: string,
    options: CallOptions,
  ): Promise<SnapshotInfo[]> {
    const request = toBinary(
      ListSnapshotsRequestSchema,
      create(ListSnapshotsRequestSchema, { namespace }),
    );
    const messages: Uint8Array[] = [];
    for await (const m of this.#call(LIST, request, options)) messages.push(m);
    if (messages.length !== 1) {
      throw new ConnectError(
        `upstream ListSnapshots returned ${messages.length} messages`,
        Code.Internal,
      );
    }
    return fromBinary(ListSnapshotsResponseSchema, messages[0]).snapshots.map((
      s,
    ) => ({
      namespace,
      name: s.name,
      snapshotId: s.snapshotId,
      volume: s.volume,
      volumeCapacityBytes: Number(s.volumeCapacityBytes),
      readyToUse: s.readyToUse,
    }));
  }

  close(): Promise<void> {
    this.#closed = true;
    return this.options.channel.close();
  }

  /**
   * The call's messages one by one, or (`envelopeRuns()`, which binary
   * fronts use) as runs of the upstream's envelopes. Nothing is sent before
   * one of them is iterated.
   */
  #call(
    path: string,
    request: Uint8Array,
    options: CallOptions,
  ): EncodedMessageStream & EnvelopeRunSource {
    if (this.#closed) {
      throw new ConnectError("relay backend is closed", Code.Unavailable);
    }
    const token = options.caller.bearerToken;
    const { url, caPem, channel } = this.options;
    const start = () =>
      channel.runs({ url, caPem }, path, request, {
        signal: options.signal,
        deadline: options.deadline,
        headers: token ? { authorization: `Bearer ${token}` } : undefined,
      });
    return {
      envelopeRuns: start,
      [Symbol.asyncIterator]: () => messagesOfRuns(start()),
    };
  }
}
