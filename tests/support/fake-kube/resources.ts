/**
 * The resource types the fake serves through its REST API, with what the
 * real API server knows about each (scope, kind, status subresource, and
 * whether it is a custom resource: JSON only, keys in sorted order).
 */

export interface ResourceType {
  /** API group ("" for the core group). */
  group: string;
  version: string;
  /** Plural, lower case: the URL segment. */
  resource: string;
  kind: string;
  namespaced: boolean;
  /** Writes to the resource keep status; writes to /status keep the rest. */
  statusSubresource: boolean;
  /** A CRD-backed type: no protobuf, unstructured (sorted-key) JSON. */
  custom: boolean;
}

export function apiVersionOf(rt: ResourceType): string {
  return rt.group ? `${rt.group}/${rt.version}` : rt.version;
}

/** Served by default. Add more with `startFakeKube({ resources })`. */
export const defaultResources: ResourceType[] = [
  {
    group: "snapshot.storage.k8s.io",
    version: "v1",
    resource: "volumesnapshots",
    kind: "VolumeSnapshot",
    namespaced: true,
    statusSubresource: true,
    custom: true,
  },
  {
    group: "snapshot.storage.k8s.io",
    version: "v1",
    resource: "volumesnapshotcontents",
    kind: "VolumeSnapshotContent",
    namespaced: false,
    statusSubresource: true,
    custom: true,
  },
  {
    group: "snapshot.storage.k8s.io",
    version: "v1",
    resource: "volumesnapshotclasses",
    kind: "VolumeSnapshotClass",
    namespaced: false,
    statusSubresource: false,
    custom: true,
  },
  {
    group: "cbt.storage.k8s.io",
    version: "v1beta1",
    resource: "snapshotmetadataservices",
    kind: "SnapshotMetadataService",
    namespaced: false,
    statusSubresource: false,
    custom: true,
  },
  {
    group: "",
    version: "v1",
    resource: "serviceaccounts",
    kind: "ServiceAccount",
    namespaced: true,
    statusSubresource: false,
    custom: false,
  },
];
