/**
 * `--backend kubernetes`: every stream goes to the sidecar of the snapshot's
 * CSI driver, found through discovery, over verified TLS, carrying the
 * gateway's own audience-scoped token (or, with `--auth passthrough`, the
 * caller's `security_token`, untouched). Everything that can be refused is
 * refused before the upstream call: an unready snapshot, a driver without a
 * service, a base handle from another namespace or volume.
 */
import { Code, ConnectError } from "@connectrpc/connect";
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
  type UpstreamChannel,
  type UpstreamTarget,
} from "../backend/upstream.ts";
import { messagesOfRuns } from "../wire/envelopes.ts";
import {
  type Discovery,
  type DriverService,
  hostOf,
  type ResolvedSnapshot,
} from "./discovery.ts";
import { alignDown, dropTuplesBefore } from "../backend/offset-alignment.ts";
import { serviceChanged } from "../backend/service-changed.ts";
import type { TokenMinter } from "./token-minter.ts";

export interface KubernetesBackendOptions {
  discovery: Discovery;
  /** Connections to the sidecars. */
  pool: UpstreamChannel;
  /**
   * Mints the gateway's tokens. Without one the backend runs in passthrough
   * mode: the caller's security_token goes upstream and the sidecar decides.
   */
  minter?: TokenMinter;
}

/** A sidecar as an upstream: verified TLS against its own CA. */
function targetOf(service: DriverService): UpstreamTarget {
  return {
    url: `https://${service.address}`,
    caPem: service.caPem,
    serverName: hostOf(service.address),
  };
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
  readonly #pool: UpstreamChannel;
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
    const request = allocatedRequest(
      query,
      await this.#token(service.audience, query.securityToken),
      alignDown(query.startingOffset),
    );
    yield* this.#call(service, ALLOCATED_PATH, request, query, options);
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
    const request = deltaRequest(
      query,
      await this.#token(service.audience, query.securityToken),
      alignDown(query.startingOffset),
    );
    yield* this.#call(service, DELTA_PATH, request, query, options);
  }

  /**
   * Sends the request (asked from the aligned offset) to the sidecar and
   * drops what lies before the caller's own starting offset.
   */
  #call(
    service: DriverService,
    path: string,
    request: Uint8Array,
    query: { startingOffset: number },
    options: CallOptions,
  ): AsyncGenerator<Uint8Array> {
    options.signal.throwIfAborted();
    const messages = this.#followingService(
      service,
      options.signal,
      (signal) =>
        messagesOfRuns(
          this.#pool.runs(targetOf(service), path, request, {
            signal,
            deadline: options.deadline,
          }),
        ),
    );
    return dropTuplesBefore(messages, query.startingOffset);
  }

  /**
   * The call `open` starts, cut with a retryable error if the service's
   * SnapshotMetadataService moves (new address or CA) meanwhile: resume
   * (relay/resume.ts) then reopens it where the service is now.
   */
  async *#followingService(
    service: DriverService,
    signal: AbortSignal,
    open: (signal: AbortSignal) => AsyncIterable<Uint8Array>,
  ): AsyncGenerator<Uint8Array> {
    const moved = new AbortController();
    const stopWatching = this.#discovery.watchService(
      service,
      () =>
        moved.abort(
          serviceChanged(
            `SnapshotMetadataService ${
              JSON.stringify(service.name)
            } changed its address or CA during the stream`,
          ),
        ),
    );
    try {
      yield* open(AbortSignal.any([signal, moved.signal]));
    } catch (e) {
      if (moved.signal.aborted && !signal.aborted) throw moved.signal.reason;
      throw e;
    } finally {
      stopWatching();
    }
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
