/**
 * Discovery, as the upstream client library does it (spec §4): a
 * VolumeSnapshot → its bound VolumeSnapshotContent (driver, handle,
 * readiness) → the driver's SnapshotMetadataService (address, audience, CA).
 *
 * SnapshotMetadataServices come from a watch (they change when certificates
 * rotate, so their address and CA are never cached beyond it); snapshots and
 * contents are read per request, as upstream does, because readiness
 * changes. Every failure names the object and is Unavailable, like upstream.
 */
import { base64Decode } from "@bufbuild/protobuf/wire";
import { Code, ConnectError } from "@connectrpc/connect";
import { Informer, type InformerOptions } from "../kube/informer.ts";
import {
  describeApiError,
  type KubeApi,
  type KubeObject,
} from "../kube/kube-api.ts";

/** A ready, bound snapshot as discovery found it. */
export interface ResolvedSnapshot {
  namespace: string;
  name: string;
  contentName: string;
  driver: string;
  /** `status.snapshotHandle` of the content: the id drivers know. */
  snapshotHandle: string;
  /** `spec.source.volumeHandle` of the content (dynamic snapshots). */
  volumeHandle?: string;
  /** `spec.source.persistentVolumeClaimName` of the VolumeSnapshot. */
  sourcePvc?: string;
  /** Bytes, from the content's status (0 when unknown). */
  restoreSize: number;
}

/** Where a driver's sidecar listens and how to trust and address it. */
export interface DriverService {
  /** The SnapshotMetadataService's name. */
  name: string;
  /** `host:port`. */
  address: string;
  audience: string;
  /** PEM bundle decoded from `spec.caCert`. */
  caPem: string;
}

/** `host:port` → the host part, without IPv6 brackets. */
export function hostOf(address: string): string {
  const m = /^\[([^\]]+)\]:\d+$/.exec(address) ?? /^([^:]+):\d+$/.exec(address);
  if (!m) {
    throw new ConnectError(
      `SnapshotMetadataService address ${
        JSON.stringify(address)
      } is not host:port`,
      Code.Unavailable,
    );
  }
  return m[1];
}

export interface DiscoveryOptions {
  /** driver → SnapshotMetadataService name, for resources not named after it. */
  serviceOverrides?: Record<string, string>;
  /** How long a request waits for the first SnapshotMetadataService list. */
  syncTimeoutMs?: number;
  informer?: InformerOptions;
}

function unavailable(message: string): ConnectError {
  return new ConnectError(message, Code.Unavailable);
}

const q = JSON.stringify;

export class Discovery {
  readonly services: Informer;
  readonly #api: KubeApi;
  readonly #overrides: Record<string, string>;
  readonly #syncTimeoutMs: number;

  constructor(api: KubeApi, options: DiscoveryOptions = {}) {
    this.#api = api;
    this.#overrides = options.serviceOverrides ?? {};
    this.#syncTimeoutMs = options.syncTimeoutMs ?? 10_000;
    this.services = new Informer({
      list: () => api.listSnapshotMetadataServices(),
      watch: (rv, timeout, onEvent, done) =>
        api.watchSnapshotMetadataServices(rv, timeout, onEvent, done),
    }, options.informer);
    this.services.start();
  }

  close(): Promise<void> {
    return this.services.stop();
  }

  /** VolumeSnapshot → bound, ready content with a handle; else Unavailable. */
  async resolveSnapshot(
    namespace: string,
    name: string,
  ): Promise<ResolvedSnapshot> {
    const what = `VolumeSnapshot ${namespace}/${name}`;
    const snapshot = await this.#read(
      what,
      () => this.#api.getVolumeSnapshot(namespace, name),
    );
    if (!snapshot) throw unavailable(`${what} not found`);
    return this.#resolveBound(snapshot);
  }

  /** The bound content of an already-read VolumeSnapshot, checked. */
  async #resolveBound(snapshot: KubeObject): Promise<ResolvedSnapshot> {
    const namespace = snapshot.metadata.namespace ?? "";
    const name = snapshot.metadata.name;
    const what = `VolumeSnapshot ${namespace}/${name}`;
    const contentName = snapshot.status?.boundVolumeSnapshotContentName;
    if (!contentName) {
      throw unavailable(`${what} is not bound to a VolumeSnapshotContent`);
    }
    if (snapshot.status?.readyToUse !== true) {
      throw unavailable(`${what} is not ready to use`);
    }
    const contentWhat = `VolumeSnapshotContent ${contentName} (of ${what})`;
    const content = await this.#read(
      contentWhat,
      () => this.#api.getVolumeSnapshotContent(contentName),
    );
    if (!content) throw unavailable(`${contentWhat} not found`);
    const ref = content.spec?.volumeSnapshotRef;
    if (ref?.namespace !== namespace || ref?.name !== name) {
      throw unavailable(`${contentWhat} is bound to another VolumeSnapshot`);
    }
    const handle = content.status?.snapshotHandle;
    if (!handle) throw unavailable(`${contentWhat} has no snapshot handle`);
    const driver = content.spec?.driver;
    if (!driver) throw unavailable(`${contentWhat} names no CSI driver`);
    return {
      namespace,
      name,
      contentName,
      driver,
      snapshotHandle: handle,
      volumeHandle: content.spec?.source?.volumeHandle,
      sourcePvc: snapshot.spec?.source?.persistentVolumeClaimName,
      restoreSize: Number(content.status?.restoreSize ?? 0) || 0,
    };
  }

  /**
   * Every VolumeSnapshot of a namespace that resolves; ones that don't
   * (not ready, unbound) are left out.
   */
  async listSnapshots(namespace: string): Promise<ResolvedSnapshot[]> {
    const snapshots = await this.#read(
      `VolumeSnapshots in namespace ${namespace}`,
      () => this.#api.listVolumeSnapshots(namespace),
    );
    const resolved = await Promise.allSettled(
      snapshots.map((s) => this.#resolveBound(s)),
    );
    return resolved.flatMap((r) => r.status === "fulfilled" ? [r.value] : []);
  }

  /**
   * Checks that `handle` is the snapshot handle of a ready VolumeSnapshot in
   * the target's namespace, of the same driver and volume. Upstream never
   * checks this; without it one namespace could probe another's snapshots.
   * One answer for "elsewhere" and "nowhere", so it reveals neither.
   */
  async resolveBaseHandle(
    target: ResolvedSnapshot,
    handle: string,
  ): Promise<ResolvedSnapshot> {
    const refused = () =>
      new ConnectError(
        `base_snapshot_id ${
          q(handle.slice(0, 80))
        } is not the handle of a ready VolumeSnapshot of the same volume as ` +
          `VolumeSnapshot ${target.namespace}/${target.name}`,
        Code.InvalidArgument,
      );
    const contents = await this.#read(
      "VolumeSnapshotContents",
      () => this.#api.listVolumeSnapshotContents(),
    );
    const content = contents.find((c) =>
      c.status?.snapshotHandle === handle && c.spec?.driver === target.driver &&
      c.spec?.volumeSnapshotRef?.namespace === target.namespace
    );
    const ref = content?.spec?.volumeSnapshotRef;
    if (!content || !ref?.name) throw refused();
    let base: ResolvedSnapshot;
    try {
      base = await this.resolveSnapshot(target.namespace, ref.name);
    } catch {
      throw refused();
    }
    if (base.contentName !== content.metadata.name) throw refused();
    const sameVolume = base.volumeHandle && target.volumeHandle
      ? base.volumeHandle === target.volumeHandle
      : !!base.sourcePvc && base.sourcePvc === target.sourcePvc;
    if (!sameVolume) throw refused();
    return base;
  }

  /** The SnapshotMetadataService for `driver`, as currently watched. */
  async serviceFor(driver: string): Promise<DriverService> {
    const name = this.#overrides[driver] ?? driver;
    if (!await this.services.waitForSync(this.#syncTimeoutMs)) {
      throw unavailable(
        "SnapshotMetadataServices could not be listed yet; is the " +
          "cbt.storage.k8s.io CRD installed and readable by the gateway?",
      );
    }
    const sms = this.services.get(name);
    const what = `SnapshotMetadataService ${q(name)} (for CSI driver ${
      q(driver)
    })`;
    if (!sms || sms.metadata.deletionTimestamp) {
      throw unavailable(
        `no ${what}: the driver does not offer changed block tracking`,
      );
    }
    const spec = sms.spec ?? {};
    for (const field of ["address", "audience", "caCert"]) {
      if (typeof spec[field] !== "string" || spec[field] === "") {
        throw unavailable(`${what} has no spec.${field}`);
      }
    }
    let caPem;
    try {
      caPem = new TextDecoder().decode(base64Decode(spec.caCert));
    } catch {
      throw unavailable(`${what} has a spec.caCert that is not base64`);
    }
    return { name, address: spec.address, audience: spec.audience, caPem };
  }

  async #read<T>(what: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      throw unavailable(`could not read ${what}: ${describeApiError(err)}`);
    }
  }
}
