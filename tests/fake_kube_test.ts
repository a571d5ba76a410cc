/**
 * The fake Kubernetes API server (tests/support/fake-kube) against real
 * peers: the recorded requests of the real sidecar (client-go) replayed over
 * HTTPS, and @kubernetes/client-node 1.4 (CustomObjectsApi, Watch,
 * informers, TokenReview, SubjectAccessReview, TokenRequest).
 */
import {
  deepStrictEqual as assertEquals,
  equal,
  match,
  ok as assert,
} from "node:assert/strict";
import * as k8s from "@kubernetes/client-node";
import { issueServerCert, makeCertificateAuthority } from "./support/certs.ts";
import {
  decodeK8sProtobuf,
  encodeK8sProtobuf,
  PROTOBUF_CONTENT_TYPE,
} from "./support/k8s-protobuf.ts";
import {
  type FakeKube,
  serviceAccountUser,
  SNAPSHOT_API,
  startFakeKube,
} from "./support/fake-kube/server.ts";
import { waitFor } from "./support/wait.ts";

const VECTORS = new URL(
  "./fixtures/real-sidecar/k8s-requests.jsonl",
  import.meta.url,
);
// deno-lint-ignore no-explicit-any
const recorded: any[] = Deno.readTextFileSync(VECTORS).trim().split("\n")
  .map((l) => JSON.parse(l));
const fromB64 = (s: string) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

interface Answer {
  status: number;
  contentType: string | null;
  bytes: Uint8Array;
  // deno-lint-ignore no-explicit-any
  json: any;
}

/** One HTTPS request to the fake, trusting only its CA. */
async function call(
  kube: FakeKube,
  method: string,
  path: string,
  opts: {
    token?: string | null;
    body?: unknown;
    contentType?: string;
    accept?: string;
    headers?: [string, string][];
  } = {},
): Promise<Answer> {
  const client = Deno.createHttpClient({ caCerts: [kube.caPem] });
  try {
    const headers = new Headers(opts.headers ?? []);
    const token = opts.token === undefined ? kube.adminToken : opts.token;
    if (token !== null) headers.set("Authorization", `Bearer ${token}`);
    if (opts.accept) headers.set("Accept", opts.accept);
    let body: BodyInit | undefined;
    if (opts.body instanceof Uint8Array) {
      body = opts.body as Uint8Array<ArrayBuffer>;
    } else if (opts.body !== undefined) body = JSON.stringify(opts.body);
    if (body !== undefined) {
      headers.set("Content-Type", opts.contentType ?? "application/json");
    }
    const r = await fetch(kube.url + path, { method, headers, body, client });
    const bytes = new Uint8Array(await r.arrayBuffer());
    const contentType = r.headers.get("content-type");
    let json;
    if (contentType === PROTOBUF_CONTENT_TYPE) json = decodeK8sProtobuf(bytes);
    else if (contentType === "application/json") {
      json = JSON.parse(new TextDecoder().decode(bytes));
    }
    return { status: r.status, contentType, bytes, json };
  } finally {
    client.close();
  }
}

const SNAP = "/apis/snapshot.storage.k8s.io/v1";

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

Deno.test("replays the real sidecar's recorded requests (protobuf reviews, JSON GETs)", async () => {
  await using kube = await startFakeKube();
  const sidecarToken = kube.serviceAccountToken(
    "csi-driver",
    "csi-snapshot-metadata",
  );
  const sidecar = serviceAccountUser("csi-driver", "csi-snapshot-metadata");
  kube.policy
    .allow({
      users: [sidecar],
      verbs: ["create"],
      apiGroups: ["authentication.k8s.io"],
      resources: ["tokenreviews"],
    })
    .allow({
      users: [sidecar],
      verbs: ["create"],
      apiGroups: ["authorization.k8s.io"],
      resources: ["subjectaccessreviews"],
    })
    .allow({
      users: [sidecar],
      verbs: ["get"],
      apiGroups: ["snapshot.storage.k8s.io"],
      resources: ["*"],
    })
    .allow({
      name: "backup-reader",
      users: ["system:serviceaccount:ns1:backup"],
      verbs: ["get"],
      apiGroups: ["snapshot.storage.k8s.io"],
      resources: ["volumesnapshots"],
      namespaces: ["ns1"],
    });
  // The recording's static caller token, with the identity the stand-in gave it.
  const backup = {
    username: "system:serviceaccount:ns1:backup",
    uid: "e04c6bd7-64c1-5aea-992e-67a00da4e93e",
    groups: ["system:serviceaccounts", "system:serviceaccounts:ns1"],
  };
  kube.mintUserToken(backup, {
    token: "acc-backup-1a79f86274d9",
    audiences: ["cbt-acceptance-audience"],
  });
  const contentName = recorded[3].path.split("/").pop();
  kube.addSnapshot({
    namespace: "ns1",
    name: "snap-2",
    contentName,
    className: "csi-hostpath-snapclass",
  });

  const skip = new Set(["host", "content-length", "authorization"]);
  for (const rec of recorded) {
    const headers: [string, string][] = rec.headers.filter((
      [n]: [string, string],
    ) => !skip.has(n.toLowerCase()));
    const r = await call(
      kube,
      rec.method,
      rec.path + (rec.query ? `?${rec.query}` : ""),
      {
        token: sidecarToken,
        headers,
        body: rec.bodyB64 ? fromB64(rec.bodyB64) : undefined,
        contentType: rec.contentType ?? undefined,
      },
    );
    const what = `${rec.variant} seq ${rec.seq}`;
    equal(r.status, rec.stubAnswered, what);
    // The request as the fake saw and decoded it.
    const seen = kube.requests.at(-1)!;
    equal(seen.user, sidecar);
    equal(seen.contentType, rec.contentType);
    equal(seen.accept, rec.accept);
    assertEquals(seen.body, rec.bodyJson ?? undefined, what);

    if (rec.method === "GET") {
      equal(r.contentType, "application/json");
      equal(r.json.metadata.name, rec.path.split("/").pop());
      continue;
    }
    // client-go asked for protobuf first: a real apiserver answers protobuf.
    equal(r.contentType, PROTOBUF_CONTENT_TYPE, what);
    const kind = rec.bodyJson.kind;
    if (kind === "TokenReview" && rec.variant === "static token") {
      assertEquals(r.json, {
        ...rec.bodyJson,
        status: {
          authenticated: true,
          user: {
            ...backup,
            groups: [...backup.groups, "system:authenticated"],
          },
          audiences: ["cbt-acceptance-audience"],
        },
      });
    } else if (kind === "TokenReview") {
      // That JWT was signed by the recording's stand-in, not by this fake.
      equal(r.json.status.authenticated, undefined);
      match(r.json.status.error, /invalid bearer token/);
    } else if (rec.bodyJson.spec.user === backup.username) {
      assertEquals(r.json.status, {
        allowed: true,
        reason:
          `RBAC: allowed by ClusterRoleBinding "backup-reader" of ClusterRole "backup-reader" to User "${backup.username}"`,
      });
      assertEquals(r.json.spec, rec.bodyJson.spec);
    } else {
      // No rule for cbt-gateway: RBAC has no opinion and gives no reason.
      assertEquals(r.json.status, { allowed: false });
    }
  }
  equal(kube.requests.length, recorded.length);
  assertEquals(
    kube.requests.map((r) => r.info.verb),
    recorded.map((r) => r.method === "GET" ? "get" : "create"),
  );
});

Deno.test("protobuf and JSON reviews agree; JSON asked for, JSON answered", async () => {
  await using kube = await startFakeKube({
    policy: [{
      users: ["alice"],
      verbs: ["get"],
      apiGroups: [""],
      resources: ["serviceaccounts"],
    }],
  });
  const sar = {
    kind: "SubjectAccessReview",
    apiVersion: "authorization.k8s.io/v1",
    spec: {
      resourceAttributes: {
        verb: "get",
        resource: "serviceaccounts",
        namespace: "x",
      },
      user: "alice",
    },
  };
  const path = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
  const viaJson = await call(kube, "POST", path, { body: sar });
  const viaProto = await call(kube, "POST", path, {
    body: encodeK8sProtobuf(sar),
    contentType: PROTOBUF_CONTENT_TYPE,
    accept: PROTOBUF_CONTENT_TYPE,
  });
  equal(viaJson.contentType, "application/json");
  equal(viaProto.contentType, PROTOBUF_CONTENT_TYPE);
  assertEquals(viaJson.json, viaProto.json);
  equal(viaJson.json.status.allowed, true);
  // Malformed protobuf is a 400, not a crash; an impossible review is a 422.
  const bad = await call(kube, "POST", path, {
    body: new Uint8Array([1, 2, 3]),
    contentType: PROTOBUF_CONTENT_TYPE,
  });
  equal(bad.status, 400);
  match(bad.json.message, /magic/);
  const neither = await call(kube, "POST", path, {
    body: { ...sar, spec: { user: "alice" } },
  });
  equal(neither.status, 422);
  match(
    neither.json.message,
    /exactly one of nonResourceAttributes or resourceAttributes must be specified/,
  );
  // Custom resources are JSON only: asking for protobuf alone is a 406.
  const cr = await call(kube, "GET", `${SNAP}/volumesnapshotclasses`, {
    accept: PROTOBUF_CONTENT_TYPE,
  });
  equal(cr.status, 406);
});

function kubeConfig(kube: FakeKube, token?: string): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  kc.loadFromString(kube.kubeconfig(token));
  return kc;
}

const NODE_CLIENT = { sanitizeResources: false, sanitizeOps: false };

Deno.test({
  name:
    "client-node CustomObjectsApi: get, list, create, patch (json + merge), delete, errors",
  ...NODE_CLIENT,
  fn: async () => {
    await using kube = await startFakeKube();
    const { snapshot, content } = kube.addSnapshot({
      namespace: "ns1",
      name: "snap-1",
      snapshotHandle: "h-1",
    });
    const api = kubeConfig(kube).makeApiClient(k8s.CustomObjectsApi);
    const g = { group: "snapshot.storage.k8s.io", version: "v1" };
    const vs = await api.getNamespacedCustomObject({
      ...g,
      namespace: "ns1",
      plural: "volumesnapshots",
      name: "snap-1",
    });
    assertEquals(vs, snapshot);
    equal(vs.status.boundVolumeSnapshotContentName, content.metadata.name);
    const contents = await api.listClusterCustomObject({
      ...g,
      plural: "volumesnapshotcontents",
    });
    equal(contents.kind, "VolumeSnapshotContentList");
    equal(contents.items[0].status.snapshotHandle, "h-1");
    equal(
      contents.metadata.resourceVersion,
      String(kube.store.resourceVersion),
    );

    const sms = await api.createClusterCustomObject({
      group: "cbt.storage.k8s.io",
      version: "v1beta1",
      plural: "snapshotmetadataservices",
      body: {
        apiVersion: "cbt.storage.k8s.io/v1beta1",
        kind: "SnapshotMetadataService",
        metadata: { name: "hostpath.csi.k8s.io" },
        spec: { address: "127.0.0.1:1", audience: "aud", caCert: btoa("pem") },
      },
    });
    equal(sms.metadata.generation, 1);
    const patched = await api.patchClusterCustomObject({
      group: "cbt.storage.k8s.io",
      version: "v1beta1",
      plural: "snapshotmetadataservices",
      name: "hostpath.csi.k8s.io",
      body: [{ op: "replace", path: "/spec/address", value: "127.0.0.1:2" }],
    });
    equal(patched.spec.address, "127.0.0.1:2");
    equal(patched.metadata.generation, 2);
    const merged = await api.patchClusterCustomObject(
      {
        group: "cbt.storage.k8s.io",
        version: "v1beta1",
        plural: "snapshotmetadataservices",
        name: "hostpath.csi.k8s.io",
        body: { metadata: { labels: { rotated: "yes" } } },
      },
      k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
    );
    assertEquals(merged.metadata.labels, { rotated: "yes" });
    equal(merged.spec.audience, "aud");
    equal(merged.metadata.generation, 2); // metadata-only change
    assertEquals(
      kube.requestsFor({ resource: "snapshotmetadataservices", verb: "patch" })
        .map((r) => r.contentType),
      ["application/json-patch+json", "application/merge-patch+json"],
    );

    await api.deleteNamespacedCustomObject({
      ...g,
      namespace: "ns1",
      plural: "volumesnapshots",
      name: "snap-1",
    });
    try {
      await api.getNamespacedCustomObject({
        ...g,
        namespace: "ns1",
        plural: "volumesnapshots",
        name: "snap-1",
      });
      assert(false, "expected a 404");
    } catch (e) {
      assert(e instanceof k8s.ApiException, String(e));
      equal(e.code, 404);
      equal(JSON.parse(e.body as string).reason, "NotFound");
    }
    const denied = kubeConfig(kube, kube.mintUserToken({ username: "mallory" }))
      .makeApiClient(k8s.CustomObjectsApi);
    try {
      await denied.listClusterCustomObject({
        ...g,
        plural: "volumesnapshotcontents",
      });
      assert(false, "expected a 403");
    } catch (e) {
      equal((e as k8s.ApiException<string>).code, 403);
    }
  },
});

Deno.test({
  name:
    "client-node Watch sees ADDED/MODIFIED/DELETED and BOOKMARKs, and is told when the server closes",
  ...NODE_CLIENT,
  fn: async () => {
    await using kube = await startFakeKube({ bookmarkIntervalMs: 0 });
    const events: [string, string][] = [];
    let doneWith: unknown = "not yet";
    const watch = new k8s.Watch(kubeConfig(kube));
    const controller = await watch.watch(
      `${SNAP}/namespaces/ns1/volumesnapshots`,
      { allowWatchBookmarks: true },
      (type, obj) =>
        events.push([
          type,
          obj.metadata.name ?? `rv ${obj.metadata.resourceVersion}`,
        ]),
      (err) => (doneWith = err),
    );
    await waitFor("the watch to open", () => kube.openWatches === 1);
    kube.addSnapshot({ namespace: "ns1", name: "a" });
    kube.addSnapshot({ namespace: "ns2", name: "elsewhere" });
    const a = kube.get(SNAPSHOT_API, "VolumeSnapshot", "a", "ns1")!;
    kube.put({ ...a, status: { ...a.status, readyToUse: false } });
    kube.delete(SNAPSHOT_API, "VolumeSnapshot", "a", "ns1");
    kube.sendBookmarks();
    await waitFor("4 events", () => events.length === 4);
    assertEquals(events, [
      ["ADDED", "a"],
      ["MODIFIED", "a"],
      ["DELETED", "a"],
      ["BOOKMARK", `rv ${kube.store.resourceVersion}`],
    ]);
    kube.closeWatches();
    await waitFor("done to be called", () => doneWith !== "not yet");
    equal(doneWith, null);
    controller.abort();
  },
});

Deno.test({
  name:
    "client-node informer: events, reconnect after closeWatches, relist after 410",
  ...NODE_CLIENT,
  fn: async () => {
    await using kube = await startFakeKube();
    kube.addSnapshot({ namespace: "ns1", name: "before" });
    const kc = kubeConfig(kube);
    const api = kc.makeApiClient(k8s.CustomObjectsApi);
    const path = `${SNAP}/namespaces/ns1/volumesnapshots`;
    const informer = k8s.makeInformer(
      kc,
      path,
      () =>
        api.listNamespacedCustomObject({
          group: "snapshot.storage.k8s.io",
          version: "v1",
          namespace: "ns1",
          plural: "volumesnapshots",
        }),
    );
    const seen: string[] = [];
    const errors: unknown[] = [];
    // deno-lint-ignore no-explicit-any
    const name = (o: any) => o.metadata.name;
    informer.on("add", (o) => seen.push(`add ${name(o)}`));
    informer.on("update", (o) => seen.push(`update ${name(o)}`));
    informer.on("delete", (o) => seen.push(`delete ${name(o)}`));
    informer.on("error", (e) => errors.push(e));
    await informer.start();
    await waitFor("the informer's watch", () => kube.openWatches === 1);
    equal(
      kube.requestsFor({ resource: "volumesnapshots", verb: "list" }).length,
      1,
    );

    kube.addSnapshot({ namespace: "ns1", name: "x" });
    kube.put({
      ...kube.get(SNAPSHOT_API, "VolumeSnapshot", "x", "ns1")!,
      spec: { source: { persistentVolumeClaimName: "other" } },
    });
    kube.delete(SNAPSHOT_API, "VolumeSnapshot", "before", "ns1");
    await waitFor("4 informer events", () => seen.length === 4);
    assertEquals(seen, ["add before", "add x", "update x", "delete before"]);

    // The server ends the watch: the informer watches again from its last event, without a list.
    const lastEventRv = String(kube.store.resourceVersion);
    kube.closeWatches();
    await waitFor(
      "the informer to re-watch",
      () =>
        kube.requestsFor({ resource: "volumesnapshots", verb: "watch" })
            .length === 2 && kube.openWatches === 1,
    );
    const rewatch =
      kube.requestsFor({ resource: "volumesnapshots", verb: "watch" })[1];
    equal(rewatch.params.resourceVersion, lastEventRv);
    equal(
      kube.requestsFor({ resource: "volumesnapshots", verb: "list" }).length,
      1,
    );
    kube.addSnapshot({ namespace: "ns1", name: "y" });
    await waitFor("add y after the reconnect", () => seen.includes("add y"));

    // After compaction its resourceVersion is too old: ERROR 410, then a fresh list and watch.
    kube.compact();
    kube.closeWatches();
    await waitFor(
      "the informer to relist",
      () =>
        kube.requestsFor({ resource: "volumesnapshots", verb: "list" })
            .length === 2 && kube.openWatches === 1,
    );
    kube.delete(SNAPSHOT_API, "VolumeSnapshot", "y", "ns1");
    await waitFor("delete y after the relist", () => seen.includes("delete y"));
    assertEquals(informer.list("ns1").map(name).sort(), ["x"]);
    assertEquals(errors, []);
    await informer.stop();
  },
});

Deno.test({
  name: "client-node TokenRequest, TokenReview and SubjectAccessReview",
  ...NODE_CLIENT,
  fn: async () => {
    await using kube = await startFakeKube({
      serviceAccounts: [{ namespace: "cbt-system", name: "cbt-gateway" }],
    });
    const gateway = serviceAccountUser("cbt-system", "cbt-gateway");
    kube.policy
      .allow({
        users: [gateway],
        verbs: ["create"],
        apiGroups: ["authentication.k8s.io"],
        resources: ["tokenreviews"],
      })
      .allow({
        users: [gateway],
        verbs: ["create"],
        apiGroups: ["authorization.k8s.io"],
        resources: ["subjectaccessreviews"],
      })
      .allow({
        users: [gateway],
        verbs: ["create"],
        apiGroups: [""],
        resources: ["serviceaccounts/token"],
        resourceNames: ["cbt-gateway"],
        namespaces: ["cbt-system"],
      })
      .allow({
        groups: ["backup-operators"],
        verbs: ["get", "list"],
        apiGroups: ["snapshot.storage.k8s.io"],
        resources: ["volumesnapshots"],
        namespaces: ["ns1"],
      });
    const kc = kubeConfig(
      kube,
      kube.serviceAccountToken("cbt-system", "cbt-gateway"),
    );
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const authn = kc.makeApiClient(k8s.AuthenticationV1Api);
    const authz = kc.makeApiClient(k8s.AuthorizationV1Api);

    const before = kube.clock.now();
    const tr = await core.createNamespacedServiceAccountToken({
      namespace: "cbt-system",
      name: "cbt-gateway",
      body: { spec: { audiences: ["sidecar-aud"], expirationSeconds: 600 } },
    });
    const token = tr.status!.token;
    assertEquals(tr.spec.audiences, ["sidecar-aud"]);
    const expires = new Date(tr.status!.expirationTimestamp).getTime();
    assert(
      Math.abs(expires - (before + 600_000)) < 2000,
      `expiry ${tr.status!.expirationTimestamp}`,
    );

    const review = (audiences: string[]) =>
      authn.createTokenReview({
        body: {
          apiVersion: "authentication.k8s.io/v1",
          kind: "TokenReview",
          spec: { token, audiences },
        },
      });
    const ok = await review(["sidecar-aud", "other"]);
    equal(ok.status!.authenticated, true);
    equal(ok.status!.user!.username, gateway);
    assertEquals(ok.status!.user!.groups, [
      "system:serviceaccounts",
      "system:serviceaccounts:cbt-system",
      "system:authenticated",
    ]);
    match(
      ok.status!.user!.extra!["authentication.kubernetes.io/credential-id"][0],
      /^JTI=[0-9a-f-]{36}$/,
    );
    assertEquals(ok.status!.audiences, ["sidecar-aud"]);
    const wrong = await review(["other"]);
    equal(wrong.status!.authenticated, undefined);
    match(
      wrong.status!.error!,
      /token audiences \["sidecar-aud"\] is invalid for the target audiences \["other"\]/,
    );
    kube.advanceClock(601_000);
    const late = await review(["sidecar-aud"]);
    match(late.status!.error!, /service account token has expired/);

    // Too short a lifetime is refused like the real validation does.
    try {
      await core.createNamespacedServiceAccountToken({
        namespace: "cbt-system",
        name: "cbt-gateway",
        body: { spec: { audiences: ["a"], expirationSeconds: 60 } },
      });
      assert(false, "expected a 422");
    } catch (e) {
      equal((e as k8s.ApiException<string>).code, 422);
      match(
        (e as k8s.ApiException<string>).body,
        /may not specify a duration less than 10 minutes/,
      );
    }
    // Only its own ServiceAccount: resourceNames in the rule.
    kube.addServiceAccount("cbt-system", "someone-else");
    try {
      await core.createNamespacedServiceAccountToken({
        namespace: "cbt-system",
        name: "someone-else",
        body: { spec: { audiences: ["a"] } },
      });
      assert(false, "expected a 403");
    } catch (e) {
      equal((e as k8s.ApiException<string>).code, 403);
    }

    const sar = (groups: string[]) =>
      authz.createSubjectAccessReview({
        body: {
          apiVersion: "authorization.k8s.io/v1",
          kind: "SubjectAccessReview",
          spec: {
            user: "carol",
            groups,
            resourceAttributes: {
              verb: "get",
              group: "snapshot.storage.k8s.io",
              version: "v1",
              resource: "volumesnapshots",
              namespace: "ns1",
            },
          },
        },
      });
    equal((await sar(["backup-operators"])).status!.allowed, true);
    const no = await sar(["others"]);
    equal(no.status!.allowed, false);
    equal(no.status!.denied, undefined);

    // What the gateway's calls looked like, in order.
    assertEquals(
      kube.requests.map((r) =>
        `${r.info.verb} ${r.info.resource}${
          r.info.subresource ? "/" + r.info.subresource : ""
        } ${r.status}`
      ),
      [
        "create serviceaccounts/token 201",
        "create tokenreviews 201",
        "create tokenreviews 201",
        "create tokenreviews 201",
        "create serviceaccounts/token 422",
        "create serviceaccounts/token 403",
        "create subjectaccessreviews 201",
        "create subjectaccessreviews 201",
      ],
    );
    equal(kube.requests[1].contentType, "application/json");
  },
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

Deno.test({
  name:
    "a kubeconfig file loads into client-node; certs.ts issues a chain openssl verifies",
  ...NODE_CLIENT,
  fn: async () => {
    await using kube = await startFakeKube();
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(
      await kube.writeKubeconfig(kube.adminToken, { namespace: "ns1" }),
    );
    equal(kc.getContextObject(kc.getCurrentContext())!.namespace, "ns1");
    const classes = await kc.makeApiClient(k8s.CustomObjectsApi)
      .listClusterCustomObject({
        group: "snapshot.storage.k8s.io",
        version: "v1",
        plural: "volumesnapshotclasses",
      });
    assertEquals(classes.items, []);

    const dir = await Deno.makeTempDir();
    try {
      const ca = await makeCertificateAuthority(dir);
      const cert = await issueServerCert(ca, {
        dnsNames: ["sidecar.local"],
        ipAddresses: ["127.0.0.1"],
      });
      const verify = await new Deno.Command("openssl", {
        args: [
          "verify",
          "-CAfile",
          ca.certPath,
          "-purpose",
          "sslserver",
          cert.certPath,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      equal(
        new TextDecoder().decode(verify.stdout).trim(),
        `${cert.certPath}: OK`,
      );
      const san = await new Deno.Command("openssl", {
        args: [
          "x509",
          "-noout",
          "-ext",
          "subjectAltName",
          "-in",
          cert.certPath,
        ],
        stdout: "piped",
      }).output();
      match(
        new TextDecoder().decode(san.stdout),
        /DNS:sidecar\.local, IP Address:127\.0\.0\.1/,
      );
      assert(cert.keyPem.includes("PRIVATE KEY"));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
