/**
 * The REST verbs for stored resource types: get, list (paging, selectors),
 * watch (chunked JSON event stream, resume, bookmarks, 410 after
 * compaction), create, update, patch, delete, and the status subresource.
 */
import type { JsonObject } from "../k8s-protobuf.ts";
import {
  type Exchange,
  JSON_CONTENT_TYPE,
  negotiate,
  readObject,
  respond,
} from "./exchange.ts";
import { sortKeys } from "./json.ts";
import { jsonPatch, mergePatch } from "./patch.ts";
import { apiVersionOf, type ResourceType } from "./resources.ts";
import {
  parseFieldSelector,
  parseLabelSelector,
  type Selector,
} from "./selectors.ts";
import {
  badRequest,
  conflict,
  expired,
  invalid,
  methodNotAllowed,
  notFound,
  notFoundPath,
  statusBody,
  StatusError,
  unsupportedMediaType,
} from "./status.ts";
import { objectKey, type ObjectStore, type StoreEvent } from "./store.ts";

export interface ActiveWatch {
  /** Ends the stream cleanly (the client sees the response end). */
  close(): void;
  /** Sends a BOOKMARK now (if the watch asked for bookmarks). */
  bookmark(): void;
}

export interface RestDeps {
  store: ObjectStore;
  watches: Set<ActiveWatch>;
  bookmarkIntervalMs: number;
}

/** The object as the API server writes it for this resource type. */
export function render(rt: ResourceType, obj: JsonObject): JsonObject {
  const { kind: _k, apiVersion: _a, ...rest } = obj;
  const out = { kind: rt.kind, apiVersion: apiVersionOf(rt), ...rest };
  return rt.custom ? sortKeys(out) : out;
}

/** Items of typed (built-in) lists carry no kind/apiVersion. */
function renderItem(rt: ResourceType, obj: JsonObject): JsonObject {
  if (rt.custom) return render(rt, obj);
  const { kind: _k, apiVersion: _a, ...rest } = obj;
  return rest;
}

function listBody(rt: ResourceType, items: JsonObject[], meta: JsonObject) {
  const body = {
    kind: `${rt.kind}List`,
    apiVersion: apiVersionOf(rt),
    metadata: meta,
    items: items.map((i) => renderItem(rt, i)),
  };
  return rt.custom ? sortKeys(body) : body;
}

const TOO_OLD_CONTINUE =
  "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

function encodeContinue(rv: number, start: string): string {
  return btoa(JSON.stringify({ v: "meta.k8s.io/v1", rv, start }));
}

function decodeContinue(token: string): { rv: number; start: string } {
  try {
    const c = JSON.parse(atob(token));
    if (typeof c.rv === "number" && typeof c.start === "string") return c;
  } catch { /* fall through */ }
  throw badRequest(`invalid continue token: ${token}`);
}

function selectorsOf(ex: Exchange): Selector {
  const labels = parseLabelSelector(ex.query.get("labelSelector"));
  const fields = parseFieldSelector(ex.query.get("fieldSelector"));
  return (o) => labels(o) && fields(o);
}

function keyOf(rt: ResourceType, o: JsonObject) {
  return objectKey(
    rt.namespaced ? o.metadata.namespace : undefined,
    o.metadata.name,
  );
}

function list(ex: Exchange, rt: ResourceType, deps: RestDeps) {
  const { store } = deps;
  const select = selectorsOf(ex);
  const ns = ex.info.namespace || undefined;
  const rvParam = ex.query.get("resourceVersion") ?? "";
  if (ex.query.get("resourceVersionMatch") === "Exact") {
    const rv = Number(rvParam);
    if (!rvParam || !Number.isInteger(rv)) {
      throw badRequest(
        "resourceVersionMatch is forbidden unless resourceVersion is provided",
      );
    }
    if (rv < store.oldestResourceVersion) {
      throw expired("The resourceVersion for the provided list is too old.");
    }
  }
  let start = "";
  let rv = store.resourceVersion;
  const cont = ex.query.get("continue");
  if (cont) {
    const c = decodeContinue(cont);
    if (c.rv < store.oldestResourceVersion) {
      const e = expired(TOO_OLD_CONTINUE);
      e.body.metadata = {
        continue: encodeContinue(store.resourceVersion, c.start),
      };
      throw e;
    }
    start = c.start;
    rv = c.rv;
  }
  let items = store.list(rt, ns).filter(select);
  if (start) items = items.filter((o) => keyOf(rt, o) > start);
  const limit = Number(ex.query.get("limit") ?? "0");
  const meta: JsonObject = { resourceVersion: String(rv) };
  if (limit > 0 && items.length > limit) {
    const remaining = items.length - limit;
    items = items.slice(0, limit);
    meta.continue = encodeContinue(rv, keyOf(rt, items[items.length - 1]));
    meta.remainingItemCount = remaining;
  }
  respond(ex, 200, listBody(rt, items, meta));
}

/**
 * What a watcher with `select` sees of a change: objects moving into the
 * selection are ADDED, moving out are DELETED, as the watch cache does.
 */
function project(
  e: StoreEvent,
  select: Selector,
  ns: string | undefined,
): { type: string; object: JsonObject } | undefined {
  if (ns && e.object.metadata.namespace !== ns) return undefined;
  const now = select(e.object);
  if (e.type === "ADDED") {
    return now ? { type: "ADDED", object: e.object } : undefined;
  }
  if (e.type === "DELETED") {
    return select(e.previous ?? e.object)
      ? { type: "DELETED", object: e.object }
      : undefined;
  }
  const before = e.previous ? select(e.previous) : now;
  if (now && before) return { type: "MODIFIED", object: e.object };
  if (now) return { type: "ADDED", object: e.object };
  if (before) return { type: "DELETED", object: e.object };
  return undefined;
}

function watch(ex: Exchange, rt: ResourceType, deps: RestDeps) {
  const { store } = deps;
  const select = selectorsOf(ex);
  const ns = ex.info.namespace || undefined;
  negotiate(ex.req.headers.accept, false); // 406 unless JSON is acceptable
  const q = ex.query;
  const rvParam = q.get("resourceVersion") ?? "";
  const bookmarks = q.get("allowWatchBookmarks") === "true" ||
    q.get("allowWatchBookmarks") === "1";
  const sendInitialEvents = q.get("sendInitialEvents") === "true";
  const timeoutSeconds = Number(q.get("timeoutSeconds") ?? "0");
  let fromRv: number | undefined;
  if (rvParam !== "" && rvParam !== "0") {
    fromRv = Number(rvParam);
    if (!Number.isInteger(fromRv) || fromRv < 0) {
      throw badRequest(`invalid resource version: ${rvParam}`);
    }
  }
  if (sendInitialEvents && !bookmarks) {
    throw invalid(
      "meta.k8s.io",
      "ListOptions",
      "",
      "allowWatchBookmarks",
      "FieldValueRequired",
      "Required value: allowWatchBookmarks must be set to true when sendInitialEvents is set",
    );
  }

  const { res } = ex;
  ex.record.status = 200;
  res.writeHead(200, {
    "Content-Type": JSON_CONTENT_TYPE,
    "Cache-Control": "no-cache, private",
    "Transfer-Encoding": "chunked",
  });
  res.flushHeaders();
  let ended = false;
  const send = (type: string, object: JsonObject) => {
    if (!ended) res.write(JSON.stringify({ type, object }) + "\n");
  };
  const bookmark = (annotations?: Record<string, string>) => {
    const metadata: JsonObject = { resourceVersion: String(lastRv) };
    if (annotations) metadata.annotations = annotations;
    send("BOOKMARK", render(rt, { metadata }));
  };

  let lastRv = store.resourceVersion;
  // Replay before subscribing is safe: the store emits synchronously.
  if (fromRv === undefined || sendInitialEvents) {
    for (const o of store.list(rt, ns).filter(select)) {
      send("ADDED", render(rt, o));
    }
    if (sendInitialEvents) bookmark({ "k8s.io/initial-events-end": "true" });
  } else {
    const history = store.eventsSince(rt, fromRv);
    if (!history) {
      const e = expired(
        `too old resource version: ${fromRv} (${store.oldestResourceVersion})`,
      );
      send("ERROR", e.body);
      ended = true;
      res.end();
      return;
    }
    for (const e of history) {
      const p = project(e, select, ns);
      if (p) send(p.type, render(rt, p.object));
    }
  }

  const unsubscribe = store.subscribe((e) => {
    if (e.rt !== rt) return;
    lastRv = e.rv;
    const p = project(e, select, ns);
    if (p) send(p.type, render(rt, p.object));
  });
  const active: ActiveWatch = {
    close: () => finish(),
    bookmark: () => {
      if (bookmarks) {
        lastRv = store.resourceVersion;
        bookmark();
      }
    },
  };
  deps.watches.add(active);
  const timers: ReturnType<typeof setTimeout>[] = [];
  if (bookmarks && deps.bookmarkIntervalMs > 0) {
    timers.push(setInterval(() => active.bookmark(), deps.bookmarkIntervalMs));
  }
  if (timeoutSeconds > 0) {
    timers.push(setTimeout(() => finish(), timeoutSeconds * 1000));
  }
  function finish() {
    if (ended) return;
    ended = true;
    unsubscribe();
    timers.forEach((t) => clearTimeout(t));
    deps.watches.delete(active);
    res.end();
  }
  res.on("close", finish);
}

/** Bodies of create/update must name this resource's apiVersion and kind. */
function checkTypeMeta(rt: ResourceType, obj: JsonObject) {
  const want = apiVersionOf(rt);
  if (obj.apiVersion !== undefined && obj.apiVersion !== want) {
    throw badRequest(
      `the API version in the data (${obj.apiVersion}) does not match the expected API version (${want})`,
    );
  }
  if (obj.kind !== undefined && obj.kind !== rt.kind) {
    throw badRequest(
      `the kind in the data (${obj.kind}) does not match the expected kind (${rt.kind})`,
    );
  }
  if (typeof obj.metadata !== "object" || obj.metadata === null) {
    obj.metadata = {};
  }
}

const NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789";

function create(ex: Exchange, rt: ResourceType, deps: RestDeps) {
  const obj = readObject(ex);
  ex.record.body = structuredClone(obj);
  checkTypeMeta(rt, obj);
  const meta = obj.metadata;
  if (rt.namespaced) {
    if (meta.namespace && meta.namespace !== ex.info.namespace) {
      throw badRequest(
        "the namespace of the provided object does not match the namespace sent on the request",
      );
    }
    meta.namespace = ex.info.namespace;
  }
  if (!meta.name && meta.generateName) {
    const suffix = Array.from(
      crypto.getRandomValues(new Uint8Array(5)),
      (b) => NAME_CHARS[b % NAME_CHARS.length],
    ).join("");
    meta.name = meta.generateName + suffix;
  }
  if (!meta.name) {
    throw invalid(
      rt.group,
      rt.kind,
      "",
      "metadata.name",
      "FieldValueRequired",
      "Required value: name or generateName is required",
    );
  }
  delete meta.resourceVersion;
  // With a status subresource, status can only be written through /status.
  if (rt.statusSubresource) delete obj.status;
  respond(ex, 201, render(rt, deps.store.create(rt, obj)));
}

/** Merges what this endpoint may change into the stored object. */
function scoped(
  rt: ResourceType,
  subresource: string,
  stored: JsonObject,
  next: JsonObject,
): JsonObject {
  if (subresource === "status") {
    return { ...stored, status: next.status };
  }
  if (rt.statusSubresource) {
    const out = { ...next };
    if (stored.status === undefined) delete out.status;
    else out.status = stored.status;
    return out;
  }
  return next;
}

function update(ex: Exchange, rt: ResourceType, deps: RestDeps) {
  const { info } = ex;
  const obj = readObject(ex);
  ex.record.body = structuredClone(obj);
  checkTypeMeta(rt, obj);
  if (obj.metadata.name !== undefined && obj.metadata.name !== info.name) {
    throw badRequest(
      `the name of the object (${obj.metadata.name}) does not match the name on the URL (${info.name})`,
    );
  }
  obj.metadata.name = info.name;
  if (rt.namespaced) obj.metadata.namespace = info.namespace;
  const stored = deps.store.get(rt, info.namespace || undefined, info.name);
  if (!stored) throw notFound(rt.group, rt.resource, info.name);
  const rv = obj.metadata.resourceVersion;
  if (rt.custom && !rv) {
    throw invalid(
      rt.group,
      rt.kind,
      info.name,
      "metadata.resourceVersion",
      "FieldValueInvalid",
      "Invalid value: 0x0: must be specified for an update",
    );
  }
  const next = scoped(rt, info.subresource, stored, obj);
  respond(ex, 200, render(rt, deps.store.update(rt, next, rv)));
}

const MERGE_PATCH = "application/merge-patch+json";
const JSON_PATCH = "application/json-patch+json";
const STRATEGIC_PATCH = "application/strategic-merge-patch+json";

function patch(ex: Exchange, rt: ResourceType, deps: RestDeps) {
  const { info } = ex;
  const kinds = rt.custom
    ? [JSON_PATCH, MERGE_PATCH]
    : [JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH];
  if (!kinds.includes(ex.contentType)) {
    throw unsupportedMediaType([...kinds, "application/apply-patch+yaml"]);
  }
  let body: unknown;
  try {
    body = JSON.parse(new TextDecoder().decode(ex.body));
  } catch (e) {
    throw badRequest(`error decoding patch: ${(e as Error).message}`);
  }
  ex.record.body = body;
  const stored = deps.store.get(rt, info.namespace || undefined, info.name);
  if (!stored) throw notFound(rt.group, rt.resource, info.name);
  // Strategic merge is approximated by a merge patch (built-in types only).
  const patched =
    (ex.contentType === JSON_PATCH
      ? jsonPatch(stored, body)
      : mergePatch(stored, body)) as JsonObject;
  if (typeof patched?.metadata !== "object") {
    throw badRequest("the patch removed the object's metadata");
  }
  const rv = patched.metadata.resourceVersion;
  if (rv && rv !== stored.metadata.resourceVersion) {
    throw conflict(rt.group, rt.resource, info.name);
  }
  patched.metadata.name = info.name;
  if (rt.namespaced) patched.metadata.namespace = info.namespace;
  const next = scoped(rt, info.subresource, stored, patched);
  respond(ex, 200, render(rt, deps.store.update(rt, next)));
}

function remove(ex: Exchange, rt: ResourceType, deps: RestDeps) {
  const { info } = ex;
  let options: JsonObject = {};
  if (ex.body.length) {
    options = readObject(ex);
    ex.record.body = options;
  }
  const stored = deps.store.get(rt, info.namespace || undefined, info.name);
  if (!stored) throw notFound(rt.group, rt.resource, info.name);
  const pre = options.preconditions ?? {};
  if (pre.uid && pre.uid !== stored.metadata.uid) {
    throw new StatusError(
      409,
      statusBody(
        409,
        "Conflict",
        `Operation cannot be fulfilled on ${rt.resource} "${info.name}": Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${stored.metadata.uid}`,
        { name: info.name, group: rt.group, kind: rt.resource },
      ),
    );
  }
  if (
    pre.resourceVersion &&
    pre.resourceVersion !== stored.metadata.resourceVersion
  ) {
    throw conflict(rt.group, rt.resource, info.name);
  }
  respond(
    ex,
    200,
    render(rt, deps.store.delete(rt, info.namespace || undefined, info.name)),
  );
}

/** Serves one request for a stored resource type. */
export function serveResource(ex: Exchange, rt: ResourceType, deps: RestDeps) {
  const { info } = ex;
  if (
    info.subresource && !(info.subresource === "status" && rt.statusSubresource)
  ) {
    throw notFoundPath();
  }
  if (rt.namespaced === false && info.namespace) throw notFoundPath();
  if (info.subresource && !["get", "update", "patch"].includes(info.verb)) {
    throw methodNotAllowed();
  }
  switch (info.verb) {
    case "get": {
      const o = deps.store.get(rt, info.namespace || undefined, info.name);
      if (!o) throw notFound(rt.group, rt.resource, info.name);
      return respond(ex, 200, render(rt, o));
    }
    case "list":
      return list(ex, rt, deps);
    case "watch":
      if (info.name) {
        // A watch on one object is a watch with a name field selector.
        const fs = ex.query.get("fieldSelector");
        ex.query.set(
          "fieldSelector",
          `metadata.name=${info.name}${fs ? `,${fs}` : ""}`,
        );
      }
      return watch(ex, rt, deps);
    case "create":
      if (info.name) throw methodNotAllowed();
      return create(ex, rt, deps);
    case "update":
      return update(ex, rt, deps);
    case "patch":
      return patch(ex, rt, deps);
    case "delete":
      return remove(ex, rt, deps);
    default:
      throw methodNotAllowed();
  }
}
