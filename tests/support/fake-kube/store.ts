/**
 * The fake's etcd: objects per resource type, one monotonically increasing
 * resourceVersion counter for every write, a history of change events for
 * watches to resume from, compaction, and fan-out to live watchers.
 */
import type { JsonObject } from "../k8s-protobuf.ts";
import type { ResourceType } from "./resources.ts";
import type { Clock } from "./tokens.ts";
import { alreadyExists, conflict, notFound } from "./status.ts";
import { stableJson } from "./json.ts";

export type EventType = "ADDED" | "MODIFIED" | "DELETED";

export interface StoreEvent {
  type: EventType;
  rt: ResourceType;
  /** The object as of this event (for DELETED: its last state). */
  object: JsonObject;
  /** The state before the change (MODIFIED and DELETED). */
  previous?: JsonObject;
  rv: number;
}

export function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

export function objectKey(namespace: string | undefined, name: string) {
  return namespace ? `${namespace}/${name}` : name;
}

export class ObjectStore {
  private rv = 1000;
  /** Watches and continue tokens from a resourceVersion below this are 410. */
  private oldestRv = 0;
  private readonly objects = new Map<ResourceType, Map<string, JsonObject>>();
  private history: StoreEvent[] = [];
  private readonly listeners = new Set<(e: StoreEvent) => void>();

  constructor(private readonly clock: Clock) {}

  get resourceVersion(): number {
    return this.rv;
  }

  get oldestResourceVersion(): number {
    return this.oldestRv;
  }

  private table(rt: ResourceType): Map<string, JsonObject> {
    let t = this.objects.get(rt);
    if (!t) this.objects.set(rt, t = new Map());
    return t;
  }

  get(rt: ResourceType, namespace: string | undefined, name: string) {
    const o = this.table(rt).get(objectKey(namespace, name));
    return o && structuredClone(o);
  }

  /** Items in key order (namespace/name), as etcd lists them. */
  list(rt: ResourceType, namespace?: string): JsonObject[] {
    return [...this.table(rt).entries()]
      .filter(([, o]) => !namespace || o.metadata.namespace === namespace)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, o]) => structuredClone(o));
  }

  private emit(e: StoreEvent) {
    this.history.push(e);
    for (const l of this.listeners) l(e);
  }

  /** Stores a new object; fills uid, resourceVersion, creationTimestamp. */
  create(rt: ResourceType, input: JsonObject): JsonObject {
    const obj = structuredClone(input);
    const meta = obj.metadata ??= {};
    const key = objectKey(
      rt.namespaced ? meta.namespace : undefined,
      meta.name,
    );
    const t = this.table(rt);
    if (t.has(key)) throw alreadyExists(rt.group, rt.resource, meta.name);
    if (!rt.namespaced) delete meta.namespace;
    meta.uid = crypto.randomUUID();
    meta.resourceVersion = String(++this.rv);
    meta.creationTimestamp = rfc3339(this.clock.now());
    if (rt.custom) meta.generation = 1;
    delete meta.deletionTimestamp;
    t.set(key, obj);
    this.emit({ type: "ADDED", rt, object: structuredClone(obj), rv: this.rv });
    return structuredClone(obj);
  }

  /**
   * Replaces an existing object. `expectRv` (the body's
   * metadata.resourceVersion) must be current when given. Removing the last
   * finalizer of a terminating object deletes it.
   */
  update(rt: ResourceType, input: JsonObject, expectRv?: string): JsonObject {
    const obj = structuredClone(input);
    const meta = obj.metadata ??= {};
    const key = objectKey(
      rt.namespaced ? meta.namespace : undefined,
      meta.name,
    );
    const t = this.table(rt);
    const prev = t.get(key);
    if (!prev) throw notFound(rt.group, rt.resource, meta.name);
    if (expectRv && expectRv !== prev.metadata.resourceVersion) {
      throw conflict(rt.group, rt.resource, meta.name);
    }
    // Fields the server owns.
    meta.uid = prev.metadata.uid;
    meta.creationTimestamp = prev.metadata.creationTimestamp;
    if (prev.metadata.deletionTimestamp) {
      meta.deletionTimestamp = prev.metadata.deletionTimestamp;
    } else delete meta.deletionTimestamp;
    if (!rt.namespaced) delete meta.namespace;
    if (rt.custom) {
      meta.generation = prev.metadata.generation ?? 1;
      if (specOf(rt, obj) !== specOf(rt, prev)) meta.generation++;
    }
    meta.resourceVersion = prev.metadata.resourceVersion;
    if (stableJson(obj) === stableJson(prev)) {
      return structuredClone(prev); // a no-op write keeps its resourceVersion
    }
    meta.resourceVersion = String(++this.rv);
    if (meta.deletionTimestamp && !(meta.finalizers ?? []).length) {
      t.delete(key);
      this.emit({
        type: "DELETED",
        rt,
        object: structuredClone(obj),
        previous: prev,
        rv: this.rv,
      });
      return structuredClone(obj);
    }
    t.set(key, obj);
    this.emit({
      type: "MODIFIED",
      rt,
      object: structuredClone(obj),
      previous: prev,
      rv: this.rv,
    });
    return structuredClone(obj);
  }

  /**
   * Deletes an object. With finalizers it only gets a deletionTimestamp
   * (MODIFIED), unless `force` is set.
   */
  delete(
    rt: ResourceType,
    namespace: string | undefined,
    name: string,
    opts: { force?: boolean } = {},
  ): JsonObject {
    const key = objectKey(rt.namespaced ? namespace : undefined, name);
    const t = this.table(rt);
    const prev = t.get(key);
    if (!prev) throw notFound(rt.group, rt.resource, name);
    if ((prev.metadata.finalizers ?? []).length && !opts.force) {
      if (prev.metadata.deletionTimestamp) return structuredClone(prev);
      const obj = structuredClone(prev);
      obj.metadata.deletionTimestamp = rfc3339(this.clock.now());
      obj.metadata.deletionGracePeriodSeconds = 0;
      obj.metadata.resourceVersion = String(++this.rv);
      t.set(key, obj);
      this.emit({
        type: "MODIFIED",
        rt,
        object: structuredClone(obj),
        previous: prev,
        rv: this.rv,
      });
      return structuredClone(obj);
    }
    t.delete(key);
    const obj = structuredClone(prev);
    obj.metadata.resourceVersion = String(++this.rv);
    this.emit({
      type: "DELETED",
      rt,
      object: obj,
      previous: prev,
      rv: this.rv,
    });
    return structuredClone(obj);
  }

  /**
   * Forgets the history: every resourceVersion issued so far becomes too
   * old to watch from (410 Expired), as after an etcd compaction.
   */
  compact(): number {
    this.oldestRv = ++this.rv;
    this.history = [];
    return this.oldestRv;
  }

  /** Events of `rt` after `rv`; undefined when that history is compacted. */
  eventsSince(rt: ResourceType, rv: number): StoreEvent[] | undefined {
    if (rv < this.oldestRv) return undefined;
    return this.history.filter((e) => e.rt === rt && e.rv > rv);
  }

  subscribe(listener: (e: StoreEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

/** What counts toward metadata.generation: all but metadata (and status). */
function specOf(rt: ResourceType, obj: JsonObject): string {
  const { metadata: _m, status: _s, ...rest } = obj;
  if (!rt.statusSubresource) rest.status = _s;
  return stableJson(rest);
}
