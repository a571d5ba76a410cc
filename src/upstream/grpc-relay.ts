/**
 * The relay backend: a static upstream that speaks the snapshot-metadata API
 * (a sidecar, or another cbt-gateway) over native gRPC. Response messages are
 * relayed as the upstream's bytes, never decoded here; the gateway's checked
 * stream scans them. Snapshot lookups use the upstream's GatewayService, so
 * GetMetadataDeltaByName and the snapshot list work when the upstream is a
 * cbt-gateway (a bare sidecar answers Unimplemented, relayed as such).
 */
import * as http2 from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  GetMetadataAllocatedRequestSchema,
  GetMetadataDeltaRequestSchema,
} from "../../gen/snapshotmetadata/snapshotmetadata_pb.ts";
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
} from "./backend.ts";
import { rawGrpcRuns, retryIfRefused } from "./grpc-relay-call.ts";
import { connectShielded } from "../http2/goaway-shield.ts";
import { type EnvelopeRunSource, messagesOfRuns } from "../wire/envelopes.ts";

export interface GrpcRelayOptions {
  /** `http://host:port` (h2c) or `https://host:port` (TLS, ALPN h2). */
  url: string;
  /** PEM CA bundle for an https upstream with a private CA. */
  caPem?: string;
  /** Longest grpc-timeout sent upstream (ms); 0 or absent: no limit. */
  maxTimeoutMs?: number;
}

const ALLOCATED = "/snapshotmetadata.SnapshotMetadata/GetMetadataAllocated";
const DELTA = "/snapshotmetadata.SnapshotMetadata/GetMetadataDelta";
const LIST = "/cbtgateway.v1.GatewayService/ListSnapshots";

export class GrpcRelayBackend implements Backend {
  readonly name = "grpc";
  #session?: http2.ClientHttp2Session;
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
    const request = toBinary(
      GetMetadataAllocatedRequestSchema,
      create(GetMetadataAllocatedRequestSchema, {
        securityToken: query.securityToken,
        namespace: query.namespace,
        snapshotName: query.snapshotName,
        startingOffset: BigInt(query.startingOffset),
        maxResults: query.maxResults,
      }),
    );
    return this.#call(ALLOCATED, request, options);
  }

  getMetadataDelta(
    query: DeltaQuery,
    options: CallOptions,
  ): EncodedMessageStream {
    const request = toBinary(
      GetMetadataDeltaRequestSchema,
      create(GetMetadataDeltaRequestSchema, {
        securityToken: query.securityToken,
        namespace: query.namespace,
        baseSnapshotId: query.baseSnapshotId,
        targetSnapshotName: query.targetSnapshotName,
        startingOffset: BigInt(query.startingOffset),
        maxResults: query.maxResults,
      }),
    );
    return this.#call(DELTA, request, options);
  }

  async getSnapshot(
    namespace: string,
    name: string,
    options: CallOptions,
  ): Promise<SnapshotInfo> {
    const found = (await this.listSnapshots(namespace, options)).find((s) =>
      s.name === name
    );
    if (!found) {
      throw new ConnectError(
        `snapshot ${namespace}/${name} not found upstream`,
        Code.NotFound,
      );
    }
    return found;
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
    const session = this.#session;
    this.#session = undefined;
    if (!session || session.closed) return Promise.resolve();
    return new Promise((resolve) => session.close(() => resolve()));
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
    const start = () =>
      retryIfRefused(() =>
        rawGrpcRuns(this.#connection(), path, request, {
          signal: options.signal,
          deadline: options.deadline,
          maxTimeoutMs: this.options.maxTimeoutMs,
          headers: token ? { authorization: `Bearer ${token}` } : undefined,
        })
      );
    return {
      envelopeRuns: start,
      [Symbol.asyncIterator]: () => messagesOfRuns(start()),
    };
  }

  /** One HTTP/2 connection, replaced when it closes or fails. */
  #connection(): http2.ClientHttp2Session {
    const current = this.#session;
    if (current && !current.closed && !current.destroyed) return current;
    // Shielded: a GOAWAY from the upstream would crash Deno (goaway-shield.ts).
    const session = connectShielded(this.options.url, {
      ca: this.options.caPem,
    });
    const drop = () => {
      if (this.#session === session) this.#session = undefined;
    };
    // Errors reach the streams on it; the session itself just goes away.
    session.on("error", drop);
    session.on("close", drop);
    session.on("goaway", drop);
    this.#session = session;
    return session;
  }
}
