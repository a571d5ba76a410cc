/**
 * The fake Kubernetes API server (tests/support/fake-kube) over plain
 * HTTPS, as the real apiserver answers: 401/403/404/409/422/410 Status
 * bodies, watches (resume, bookmarks, timeouts, 410 after compaction), the
 * status subresource, generations and finalizers, label and field
 * selectors. Against real peers: fake_kube_recorded_test.ts (the real
 * sidecar's requests) and fake_kube_client_node_test.ts (client-node).
 */
import {
  deepStrictEqual as assertEquals,
  equal,
  match,
  ok as assert,
} from "node:assert/strict";
import { PROTOBUF_CONTENT_TYPE } from "./support/k8s-protobuf.ts";
import {
  serviceAccountUser,
  SNAPSHOT_API,
  startFakeKube,
} from "./support/fake-kube/server.ts";
import { callFakeKube as call, SNAP } from "./support/fake-kube-call.ts";
import { waitFor } from "./support/wait.ts";

Deno.test("401: no token, an unknown token, an expired token", async () => {
  await using kube = await startFakeKube();
  const want = {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message: "Unauthorized",
    reason: "Unauthorized",
    code: 401,
  };
  for (const token of [null, "nope"]) {
    const r = await call(kube, "GET", `${SNAP}/volumesnapshotclasses`, {
      token,
    });
    equal(r.status, 401);
    equal(new TextDecoder().decode(r.bytes), JSON.stringify(want));
  }
  const shortLived = kube.mintUserToken({ username: "bob" }, {
    expiresAt: kube.clock.now() + 60_000,
  });
  equal(
    (await call(kube, "GET", "/version", { token: shortLived })).status,
    200,
  );
  kube.advanceClock(61_000);
  equal(
    (await call(kube, "GET", "/version", { token: shortLived })).status,
    401,
  );
  // A ServiceAccount token stops working when its ServiceAccount goes, any token when revoked.
  const saToken = kube.serviceAccountToken("ns1", "gone");
  equal((await call(kube, "GET", "/version", { token: saToken })).status, 200);
  kube.delete("v1", "ServiceAccount", "gone", "ns1");
  equal((await call(kube, "GET", "/version", { token: saToken })).status, 401);
  const revoked = kube.mintUserToken({ username: "eve" });
  kube.revokeToken(revoked);
  equal((await call(kube, "GET", "/version", { token: revoked })).status, 401);
  // A token minted for another audience does not authenticate to the API server.
  const other = kube.serviceAccountToken("ns1", "sa", { audiences: ["cbt"] });
  equal((await call(kube, "GET", "/version", { token: other })).status, 401);
  // A client-go peer asking for protobuf gets the Status as protobuf.
  const pb = await call(
    kube,
    "POST",
    "/apis/authentication.k8s.io/v1/tokenreviews",
    {
      token: "nope",
      accept: "application/vnd.kubernetes.protobuf,application/json",
    },
  );
  equal(pb.contentType, PROTOBUF_CONTENT_TYPE);
  assertEquals(pb.json, want);
});

Deno.test("403 bodies carry the real apiserver's message shape", async () => {
  await using kube = await startFakeKube();
  const token = kube.serviceAccountToken("ns1", "sa");
  const user = serviceAccountUser("ns1", "sa");
  const get = await call(
    kube,
    "GET",
    `${SNAP}/namespaces/ns1/volumesnapshots/x`,
    { token },
  );
  equal(get.status, 403);
  equal(
    JSON.stringify(get.json),
    JSON.stringify({
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message:
        `volumesnapshots.snapshot.storage.k8s.io "x" is forbidden: User "${user}" cannot get resource "volumesnapshots" in API group "snapshot.storage.k8s.io" in the namespace "ns1"`,
      reason: "Forbidden",
      details: {
        name: "x",
        group: "snapshot.storage.k8s.io",
        kind: "volumesnapshots",
      },
      code: 403,
    }),
  );
  const list = await call(kube, "GET", `${SNAP}/volumesnapshotcontents`, {
    token,
  });
  equal(
    list.json.message,
    `volumesnapshotcontents.snapshot.storage.k8s.io is forbidden: User "${user}" cannot list resource "volumesnapshotcontents" in API group "snapshot.storage.k8s.io" at the cluster scope`,
  );
  const tr = await call(
    kube,
    "POST",
    "/api/v1/namespaces/ns1/serviceaccounts/sa/token",
    { token, body: {} },
  );
  equal(
    tr.json.message,
    `serviceaccounts "sa" is forbidden: User "${user}" cannot create resource "serviceaccounts/token" in API group "" in the namespace "ns1"`,
  );
  assertEquals(tr.json.details, { name: "sa", kind: "serviceaccounts" });
  // Allowed once the policy says so, and only for what it says.
  kube.policy.allow({
    users: [user],
    verbs: ["get"],
    apiGroups: ["snapshot.storage.k8s.io"],
    resources: ["volumesnapshots"],
    namespaces: ["ns1"],
  });
  equal(
    (await call(kube, "GET", `${SNAP}/namespaces/ns1/volumesnapshots/x`, {
      token,
    })).status,
    404,
  );
  equal(
    (await call(kube, "GET", `${SNAP}/namespaces/ns2/volumesnapshots/x`, {
      token,
    })).status,
    403,
  );
  equal(
    (await call(kube, "GET", `${SNAP}/namespaces/ns1/volumesnapshots`, {
      token,
    })).status,
    403,
  );
});

Deno.test("404, 409, 422 and 410 Status bodies", async () => {
  await using kube = await startFakeKube();
  const nf = await call(
    kube,
    "GET",
    `${SNAP}/namespaces/ns1/volumesnapshots/snap-9`,
  );
  equal(nf.status, 404);
  equal(
    JSON.stringify(nf.json),
    JSON.stringify({
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: 'volumesnapshots.snapshot.storage.k8s.io "snap-9" not found',
      reason: "NotFound",
      details: {
        name: "snap-9",
        group: "snapshot.storage.k8s.io",
        kind: "volumesnapshots",
      },
      code: 404,
    }),
  );
  const unknown = await call(kube, "GET", "/apis/example.com/v1/widgets");
  equal(unknown.status, 404);
  equal(
    unknown.json.message,
    "the server could not find the requested resource",
  );

  const cls = {
    apiVersion: SNAPSHOT_API,
    kind: "VolumeSnapshotClass",
    metadata: { name: "c" },
    driver: "d",
    deletionPolicy: "Delete",
  };
  equal(
    (await call(kube, "POST", `${SNAP}/volumesnapshotclasses`, { body: cls }))
      .status,
    201,
  );
  const dup = await call(kube, "POST", `${SNAP}/volumesnapshotclasses`, {
    body: cls,
  });
  equal(dup.status, 409);
  equal(dup.json.reason, "AlreadyExists");
  equal(
    dup.json.message,
    'volumesnapshotclasses.snapshot.storage.k8s.io "c" already exists',
  );

  const stale = await call(kube, "PUT", `${SNAP}/volumesnapshotclasses/c`, {
    body: { ...cls, metadata: { name: "c", resourceVersion: "1" } },
  });
  equal(stale.status, 409);
  equal(stale.json.reason, "Conflict");
  match(
    stale.json.message,
    /^Operation cannot be fulfilled on volumesnapshotclasses\.snapshot\.storage\.k8s\.io "c": the object has been modified/,
  );

  const noName = await call(kube, "POST", `${SNAP}/volumesnapshotclasses`, {
    body: { ...cls, metadata: {} },
  });
  equal(noName.status, 422);
  equal(noName.json.reason, "Invalid");
  equal(
    noName.json.message,
    'VolumeSnapshotClass.snapshot.storage.k8s.io "" is invalid: metadata.name: Required value: name or generateName is required',
  );
  assertEquals(noName.json.details.causes, [{
    reason: "FieldValueRequired",
    message: "Required value: name or generateName is required",
    field: "metadata.name",
  }]);

  for (const name of ["a", "b", "d"]) kube.put({ ...cls, metadata: { name } });
  const page = await call(kube, "GET", `${SNAP}/volumesnapshotclasses?limit=2`);
  equal(page.json.items.length, 2);
  assert(page.json.metadata.continue);
  kube.compact();
  const gone = await call(
    kube,
    "GET",
    `${SNAP}/volumesnapshotclasses?limit=2&continue=${
      encodeURIComponent(page.json.metadata.continue)
    }`,
  );
  equal(gone.status, 410);
  equal(gone.json.reason, "Expired");
  match(gone.json.message, /^The provided continue parameter is too old/);
});

/** Reads a watch response's newline-delimited JSON events. */
function watchEvents(body: ReadableStream<Uint8Array>) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  const next = async () => {
    while (!buf.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) return undefined;
      buf += value;
    }
    const line = buf.slice(0, buf.indexOf("\n"));
    buf = buf.slice(line.length + 1);
    return JSON.parse(line);
  };
  /** Every event until the server ends the stream. */
  const rest = async () => {
    const events = [];
    for (let e = await next(); e !== undefined; e = await next()) {
      events.push(e);
    }
    return events;
  };
  return { next, rest, cancel: () => reader.cancel() };
}

Deno.test("watch: resume from a resourceVersion, bookmarks, timeoutSeconds, 410 after compaction", async () => {
  await using kube = await startFakeKube({ bookmarkIntervalMs: 0 });
  const client = Deno.createHttpClient({ caCerts: [kube.caPem] });
  const headers = { Authorization: `Bearer ${kube.adminToken}` };
  const first = kube.addSnapshot({ namespace: "ns1", name: "s1" }).snapshot;
  const rv = first.metadata.resourceVersion;
  kube.addSnapshot({ namespace: "ns1", name: "s2" });
  kube.addSnapshot({ namespace: "ns2", name: "s3" });
  kube.delete(SNAPSHOT_API, "VolumeSnapshot", "s1", "ns1");

  // From s1's resourceVersion: s2 added, s1 deleted (ns2 filtered out), then live + bookmark.
  const r = await fetch(
    `${kube.url}${SNAP}/namespaces/ns1/volumesnapshots?watch=1&resourceVersion=${rv}&allowWatchBookmarks=true`,
    { headers, client },
  );
  equal(r.status, 200);
  equal(r.headers.get("content-type"), "application/json");
  const { next } = watchEvents(r.body!);
  const e1 = await next();
  equal(e1.type, "ADDED");
  equal(e1.object.metadata.name, "s2");
  equal(e1.object.kind, "VolumeSnapshot");
  const e2 = await next();
  assertEquals([e2.type, e2.object.metadata.name], ["DELETED", "s1"]);
  kube.put({
    ...kube.get(SNAPSHOT_API, "VolumeSnapshot", "s2", "ns1")!,
    metadata: { name: "s2", namespace: "ns1", labels: { a: "b" } },
  });
  const e3 = await next();
  assertEquals([e3.type, e3.object.metadata.labels], ["MODIFIED", { a: "b" }]);
  kube.sendBookmarks();
  const e4 = await next();
  equal(e4.type, "BOOKMARK");
  equal(e4.object.metadata.resourceVersion, e3.object.metadata.resourceVersion);
  assertEquals(Object.keys(e4.object), ["apiVersion", "kind", "metadata"]);
  equal(kube.closeWatches(), 1);
  equal(await next(), undefined);

  // timeoutSeconds ends the stream by itself.
  const started = Date.now();
  const t = await fetch(
    `${kube.url}${SNAP}/namespaces/ns1/volumesnapshots?watch=true&timeoutSeconds=1`,
    { headers, client },
  );
  const initial = await watchEvents(t.body!).rest();
  assertEquals(initial.map((e) => [e.type, e.object.metadata.name]), [[
    "ADDED",
    "s2",
  ]]);
  assert(Date.now() - started >= 900);

  // A compacted resourceVersion: 200, then one ERROR event with a 410 Expired Status, then the end.
  kube.compact();
  const old = await fetch(
    `${kube.url}${SNAP}/namespaces/ns1/volumesnapshots?watch=1&resourceVersion=${rv}`,
    { headers, client },
  );
  equal(old.status, 200);
  const err = await watchEvents(old.body!).rest();
  equal(err.length, 1);
  equal(err[0].type, "ERROR");
  assertEquals(err[0].object, {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message:
      `too old resource version: ${rv} (${kube.store.oldestResourceVersion})`,
    reason: "Expired",
    code: 410,
  });
  equal(kube.openWatches, 0);
  client.close();
});

Deno.test("status subresource, generation and finalizers behave as on a real server", async () => {
  await using kube = await startFakeKube();
  const path = `${SNAP}/namespaces/ns1/volumesnapshots`;
  const created = await call(kube, "POST", path, {
    body: {
      apiVersion: SNAPSHOT_API,
      kind: "VolumeSnapshot",
      metadata: { name: "s", finalizers: ["example.com/hold"] },
      spec: { source: { persistentVolumeClaimName: "p" } },
      status: { readyToUse: true },
    },
  });
  equal(created.status, 201);
  equal(created.json.status, undefined); // status only through /status
  equal(created.json.metadata.generation, 1);
  equal(created.json.metadata.namespace, "ns1");
  assert(created.json.metadata.uid);

  const withStatus = await call(kube, "PUT", `${path}/s/status`, {
    body: {
      ...created.json,
      spec: { source: { persistentVolumeClaimName: "ignored" } },
      status: { readyToUse: true },
    },
  });
  equal(withStatus.status, 200);
  assertEquals(withStatus.json.status, { readyToUse: true });
  equal(withStatus.json.spec.source.persistentVolumeClaimName, "p");
  equal(withStatus.json.metadata.generation, 1);

  const specChange = await call(kube, "PUT", `${path}/s`, {
    body: {
      ...withStatus.json,
      spec: { source: { persistentVolumeClaimName: "q" } },
      status: { readyToUse: false },
    },
  });
  equal(specChange.json.spec.source.persistentVolumeClaimName, "q");
  assertEquals(specChange.json.status, { readyToUse: true });
  equal(specChange.json.metadata.generation, 2);
  assert(
    Number(specChange.json.metadata.resourceVersion) >
      Number(withStatus.json.metadata.resourceVersion),
  );
  // Custom resources need a resourceVersion on update.
  const { resourceVersion: _rv, ...metaNoRv } = specChange.json.metadata;
  equal(
    (await call(kube, "PUT", `${path}/s`, {
      body: { ...specChange.json, metadata: metaNoRv },
    })).status,
    422,
  );

  // With a finalizer, delete only marks it; dropping the finalizer removes it.
  const del = await call(kube, "DELETE", `${path}/s`);
  equal(del.status, 200);
  assert(del.json.metadata.deletionTimestamp);
  equal((await call(kube, "GET", `${path}/s`)).status, 200);
  const released = await call(kube, "PATCH", `${path}/s`, {
    body: { metadata: { finalizers: null } },
    contentType: "application/merge-patch+json",
  });
  equal(released.status, 200);
  equal((await call(kube, "GET", `${path}/s`)).status, 404);
  // Strategic merge patch is not for custom resources.
  kube.addSnapshot({ namespace: "ns1", name: "t" });
  const smp = await call(kube, "PATCH", `${path}/t`, {
    body: {},
    contentType: "application/strategic-merge-patch+json",
  });
  equal(smp.status, 415);
});

Deno.test("label and field selectors for list and watch, sendInitialEvents", async () => {
  await using kube = await startFakeKube({ bookmarkIntervalMs: 0 });
  const client = Deno.createHttpClient({ caCerts: [kube.caPem] });
  const headers = { Authorization: `Bearer ${kube.adminToken}` };
  for (const [name, tier] of [["a", "gold"], ["b", "silver"], ["c", "gold"]]) {
    kube.addSnapshot({ namespace: "ns1", name, labels: { tier } });
  }
  const list = await call(
    kube,
    "GET",
    `${SNAP}/volumesnapshots?labelSelector=${
      encodeURIComponent("tier in (gold),tier!=silver")
    }`,
  );
  assertEquals(
    list.json.items.map((i: { metadata: { name: string } }) => i.metadata.name),
    ["a", "c"],
  );
  const byName = await call(
    kube,
    "GET",
    `${SNAP}/namespaces/ns1/volumesnapshots?fieldSelector=metadata.name%3Db`,
  );
  equal(byName.json.items.length, 1);
  equal(
    (await call(
      kube,
      "GET",
      `${SNAP}/volumesnapshots?fieldSelector=spec.x%3D1`,
    )).status,
    400,
  );

  const w = await fetch(
    `${kube.url}${SNAP}/namespaces/ns1/volumesnapshots?watch=1&labelSelector=tier%3Dgold&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan`,
    { headers, client },
  );
  const { next, cancel } = watchEvents(w.body!);
  const initial = [await next(), await next(), await next()];
  assertEquals(initial.map((e) => e.type), ["ADDED", "ADDED", "BOOKMARK"]);
  assertEquals(initial[2].object.metadata.annotations, {
    "k8s.io/initial-events-end": "true",
  });
  // b joins the selection (ADDED), then a leaves it (DELETED), as the watch cache reports.
  const b = kube.get(SNAPSHOT_API, "VolumeSnapshot", "b", "ns1")!;
  kube.put({ ...b, metadata: { ...b.metadata, labels: { tier: "gold" } } });
  const a = kube.get(SNAPSHOT_API, "VolumeSnapshot", "a", "ns1")!;
  kube.put({ ...a, metadata: { ...a.metadata, labels: { tier: "bronze" } } });
  const moves = [await next(), await next()];
  assertEquals(moves.map((e) => [e.type, e.object.metadata.name]), [[
    "ADDED",
    "b",
  ], ["DELETED", "a"]]);
  await cancel();
  client.close();
  await waitFor("the watch to close", () => kube.openWatches === 0);
});
