/**
 * `--backend kubernetes`: every stream goes to the sidecar of the snapshot's
 * CSI driver, found through discovery, over verified TLS, carrying the
 * gateway's own audience-scoped token (or, with `--auth passthrough`, the
 * caller's `security_token`, untouched). Everything that can be refused is
 * refused before the upstream call: an unready snapshot, a driver without a
 * service, a base handle from another namespace or volume.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  GetMetadataAllocatedRequestSchema,
  GetMetadataDeltaRequestSchema,
} from "../../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import type {
  AllocatedQuery,
  Backend,
  CallOptions,
  DeltaQuery,
  EncodedMessageStream,
  SnapshotInfo,
} from "./backend.ts";
import type { Discovery, ResolvedSnapshot } from "./discovery.ts";
import { alignDown, dropTuplesBefore } from "./kubernetes-offset-alignment.ts";
import type { UpstreamPool } from "./kubernetes-upstream-pool.ts";
import type { TokenMinter } from "./token-minter.ts";

const ALLOCATED = "/snapshotmetadata.SnapshotMetadata/GetMetadataAllocated";
const DELTA = "/snapshotmetadata.SnapshotMetadata/GetMetadataDelta";

export interface KubernetesBackendOptions {
  discovery: Discovery;
  pool: UpstreamPool;
  /**
   * Mints the gateway's tokens. Without one the backend runs in passthrough
   * mode: the caller's security_token goes upstream and the sidecar decides.
   */
  minter?: TokenMinter;
}

function toInfo(s: ResolvedSnapshot): SnapshotInfo {
  return {
    namespace: s.namespace,
    name: s.name,
    snapshotId: s.snapshotHandle,
    volume: s.sourcePvc ?? s.volumeHandle ?? "",
    volumeCapacityBytes: s.restoreSize,
    readyToUse: true,
  };
}

export class KubernetesBackend implements Backend {
  readonly name = "kubernetes";
  readonly #discovery: Discovery;
  readonly #pool: UpstreamPool;
  readonly #minter?: TokenMinter;

  constructor(options: KubernetesBackendOptions) {
    this.#discovery = options.discovery;
    this.#pool = options.pool;
    this.#minter = options.minter;
  }

  /** Ready once discovery has listed the SnapshotMetadataServices. */
  ready(): boolean {
    return this.#discovery.services.synced;
  }

  async *getMetadataAllocated(
    query: AllocatedQuery,
    options: CallOptions,
  ): EncodedMessageStream {
    const target = await this.#discovery.resolveSnapshot(
      query.namespace,
      query.snapshotName,
    );
    const service = await this.#discovery.serviceFor(target.driver);
    const request = toBinary(
      GetMetadataAllocatedRequestSchema,
      create(GetMetadataAllocatedRequestSchema, {
        securityToken: await this.#token(service.audience, query.securityToken),
        namespace: query.namespace,
        snapshotName: query.snapshotName,
        startingOffset: BigInt(alignDown(query.startingOffset)),
        maxResults: query.maxResults,
      }),
    );
    options.signal.throwIfAborted();
    yield* dropTuplesBefore(
      this.#pool.call(service, ALLOCATED, request, options),
      query.startingOffset,
    );
  }

  async *getMetadataDelta(
    query: DeltaQuery,
    options: CallOptions,
  ): EncodedMessageStream {
    const target = await this.#discovery.resolveSnapshot(
      query.namespace,
      query.targetSnapshotName,
    );
    await this.#discovery.resolveBaseHandle(target, query.baseSnapshotId);
    const service = await this.#discovery.serviceFor(target.driver);
    const request = toBinary(
      GetMetadataDeltaRequestSchema,
      create(GetMetadataDeltaRequestSchema, {
        securityToken: await this.#token(service.audience, query.securityToken),
        namespace: query.namespace,
        baseSnapshotId: query.baseSnapshotId,
        targetSnapshotName: query.targetSnapshotName,
        startingOffset: BigInt(alignDown(query.startingOffset)),
        maxResults: query.maxResults,
      }),
    );
    options.signal.throwIfAborted();
    yield* dropTuplesBefore(
      this.#pool.call(service, DELTA, request, options),
      query.startingOffset,
    );
  }

  async getSnapshot(
    namespace: string,
    name: string,
    _options: CallOptions,
  ): Promise<SnapshotInfo> {
    this.#refuseLookupsInPassthrough();
    return toInfo(await this.#discovery.resolveSnapshot(namespace, name));
  }

  async listSnapshots(
    namespace: string,
    _options: CallOptions,
  ): Promise<SnapshotInfo[]> {
    this.#refuseLookupsInPassthrough();
    return (await this.#discovery.listSnapshots(namespace)).map(toInfo);
  }

  async close(): Promise<void> {
    await Promise.all([this.#discovery.close(), this.#pool.close()]);
  }

  /** The gateway's own token for `audience`, or the caller's in passthrough. */
  #token(audience: string, callerToken: string): Promise<string> {
    return this.#minter
      ? this.#minter.token(audience)
      : Promise.resolve(callerToken);
  }

  /**
   * In passthrough the gateway knows nothing of the caller: it must not
   * answer snapshot lookups with its own (broader) rights.
   */
  #refuseLookupsInPassthrough(): void {
    if (!this.#minter) {
      throw new ConnectError(
        "snapshot lookups (by name, lists) need --auth kubernetes: in " +
          "passthrough mode only the sidecar can authorize the caller",
        Code.PermissionDenied,
      );
    }
  }
}
