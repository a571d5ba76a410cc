/**
 * The Connect upstream backend: another cbt-gateway as the upstream, called
 * over plain fetch with the Connect protocol (binary). This is what an edge
 * tier runs on (a fetch-only runtime cannot speak HTTP/2 gRPC to a sidecar);
 * the Deno server can use it too (`--backend connect`).
 *
 * - Response messages are relayed as the upstream's envelopes, never
 *   decoded here (the gateway's checked stream scans them in place).
 * - The caller's bearer token goes upstream as `Authorization`, so the
 *   upstream tier authenticates and authorizes the caller itself.
 * - The call's signal cancels the upstream request, so a client that goes
 *   away ends the stream at the last hop.
 * - Errors keep the upstream's code; a connection cut mid-stream is
 *   Unavailable, which the resume decorator (relay/resume.ts) retries from
 *   the last relayed tuple through `startingOffset`.
 * - Delta by name and the snapshot list use the upstream's GatewayService.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
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
} from "../backend/upstream.ts";
import { type EnvelopeRunSource, messagesOfRuns } from "../wire/envelopes.ts";
import {
  type ConnectCallOptions,
  connectStreamRuns,
  connectUnary,
} from "./connect-calls.ts";

export interface ConnectUpstreamOptions {
  /** The upstream gateway's HTTP base URL (its Connect/gRPC-Web/HTTP port). */
  baseUrl: string;
  /** The fetch to call it with (default: the runtime's). */
  fetch?: typeof fetch;
}

const LIST_PATH = "/cbtgateway.v1.GatewayService/ListSnapshots";

export class ConnectUpstreamBackend implements Backend {
  readonly name = "connect";
  readonly #baseUrl: string;
  readonly #fetch?: typeof fetch;

  constructor(options: ConnectUpstreamOptions) {
    const url = new URL(options.baseUrl);
    if (
      (url.protocol !== "http:" && url.protocol !== "https:") ||
      url.pathname !== "/" || url.search !== ""
    ) {
      throw new Error(
        `upstream URL must be http(s)://host[:port], got ${options.baseUrl}`,
      );
    }
    // Paths start with "/"; the URL is scheme, host and port only.
    this.#baseUrl = url.origin;
    this.#fetch = options.fetch;
  }

  getMetadataAllocated(
    query: AllocatedQuery,
    options: CallOptions,
  ): EncodedMessageStream {
    return this.#stream(
      ALLOCATED_PATH,
      allocatedRequest(query, query.securityToken),
      options,
    );
  }

  getMetadataDelta(
    query: DeltaQuery,
    options: CallOptions,
  ): EncodedMessageStream {
    return this.#stream(
      DELTA_PATH,
      deltaRequest(query, query.securityToken),
      options,
    );
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
    const response = fromBinary(
      ListSnapshotsResponseSchema,
      await connectUnary(
        this.#baseUrl + LIST_PATH,
        toBinary(
          ListSnapshotsRequestSchema,
          create(ListSnapshotsRequestSchema, { namespace }),
        ),
        this.#callOptions(options),
      ),
    );
    return response.snapshots.map((s) => ({
      namespace,
      name: s.name,
      snapshotId: s.snapshotId,
      volume: s.volume,
      volumeCapacityBytes: Number(s.volumeCapacityBytes),
      readyToUse: s.readyToUse,
    }));
  }

  /** fetch holds no connection of ours to close. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  /**
   * The call's messages one by one, or (`envelopeRuns()`, which binary
   * fronts use) as runs of the upstream's envelopes. Nothing is sent before
   * one of them is iterated.
   */
  #stream(
    path: string,
    request: Uint8Array,
    options: CallOptions,
  ): EncodedMessageStream & EnvelopeRunSource {
    const start = () =>
      connectStreamRuns(
        this.#baseUrl + path,
        request,
        this.#callOptions(options),
      );
    return {
      envelopeRuns: start,
      [Symbol.asyncIterator]: () => messagesOfRuns(start()),
    };
  }

  #callOptions(options: CallOptions): ConnectCallOptions {
    const token = options.caller.bearerToken;
    return {
      signal: options.signal,
      headers: token ? { authorization: `Bearer ${token}` } : {},
      fetch: this.#fetch,
    };
  }
}
