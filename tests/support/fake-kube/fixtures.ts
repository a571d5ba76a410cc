/**
 * Builders for the objects the gateway's discovery reads, shaped as the
 * snapshot controller and a CSI driver deployment leave them on a cluster.
 */
import { Buffer } from "node:buffer";
import type { JsonObject } from "../k8s-protobuf.ts";

export const SNAPSHOT_API = "snapshot.storage.k8s.io/v1";
export const CBT_API = "cbt.storage.k8s.io/v1beta1";

export interface SnapshotOptions {
  namespace: string;
  name: string;
  /** The CSI driver (default "hostpath.csi.k8s.io"). */
  driver?: string;
  /** The driver's snapshot handle (status.snapshotHandle of the content). */
  snapshotHandle?: string;
  /** Default `snapcontent-<random uuid>`. */
  contentName?: string;
  /** Default "csi-hostpath-snapclass". */
  className?: string;
  /** Default true. */
  readyToUse?: boolean;
  /** Default "pvc-1". */
  sourcePvc?: string;
  /** Bytes (default 16 MiB). */
  restoreSize?: number;
  /** Default a random uuid. */
  volumeHandle?: string;
  /** Labels of the VolumeSnapshot. */
  labels?: Record<string, string>;
}

export interface SnapshotObjects {
  snapshot: JsonObject;
  content: JsonObject;
  snapshotClass: JsonObject;
}

/** A bound VolumeSnapshot, its VolumeSnapshotContent and its class. */
export function snapshotObjects(o: SnapshotOptions): SnapshotObjects {
  const driver = o.driver ?? "hostpath.csi.k8s.io";
  const className = o.className ?? "csi-hostpath-snapclass";
  const contentName = o.contentName ?? `snapcontent-${crypto.randomUUID()}`;
  const handle = o.snapshotHandle ?? crypto.randomUUID();
  const ready = o.readyToUse ?? true;
  const size = o.restoreSize ?? 16 * 1024 * 1024;
  const created = new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
  return {
    snapshot: {
      apiVersion: SNAPSHOT_API,
      kind: "VolumeSnapshot",
      metadata: {
        name: o.name,
        namespace: o.namespace,
        ...(o.labels ? { labels: o.labels } : {}),
      },
      spec: {
        source: { persistentVolumeClaimName: o.sourcePvc ?? "pvc-1" },
        volumeSnapshotClassName: className,
      },
      status: {
        boundVolumeSnapshotContentName: contentName,
        creationTime: created,
        readyToUse: ready,
        restoreSize: `${size / (1024 * 1024)}Mi`,
      },
    },
    content: {
      apiVersion: SNAPSHOT_API,
      kind: "VolumeSnapshotContent",
      metadata: { name: contentName },
      spec: {
        deletionPolicy: "Delete",
        driver,
        source: { volumeHandle: o.volumeHandle ?? crypto.randomUUID() },
        sourceVolumeMode: "Block",
        volumeSnapshotClassName: className,
        volumeSnapshotRef: {
          apiVersion: SNAPSHOT_API,
          kind: "VolumeSnapshot",
          name: o.name,
          namespace: o.namespace,
        },
      },
      status: {
        creationTime: Date.now() * 1_000_000,
        readyToUse: ready,
        restoreSize: size,
        snapshotHandle: handle,
      },
    },
    snapshotClass: volumeSnapshotClass(className, driver),
  };
}

export function volumeSnapshotClass(name: string, driver: string): JsonObject {
  return {
    apiVersion: SNAPSHOT_API,
    kind: "VolumeSnapshotClass",
    metadata: { name },
    driver,
    deletionPolicy: "Delete",
  };
}

export interface SnapshotMetadataServiceOptions {
  /** The object's name: the CSI driver name. */
  driver: string;
  /** host:port of the sidecar. */
  address: string;
  audience: string;
  /** PEM of the CA that signed the sidecar's certificate. */
  caCertPem: string;
}

/** spec.caCert is bytes: base64 of the PEM in JSON. */
export function snapshotMetadataService(
  o: SnapshotMetadataServiceOptions,
): JsonObject {
  return {
    apiVersion: CBT_API,
    kind: "SnapshotMetadataService",
    metadata: { name: o.driver },
    spec: {
      address: o.address,
      audience: o.audience,
      caCert: Buffer.from(o.caCertPem).toString("base64"),
    },
  };
}
