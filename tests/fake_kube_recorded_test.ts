/**
 * The fake Kubernetes API server against the real sidecar (client-go): its
 * recorded requests (tests/fixtures/real-sidecar/k8s-requests.jsonl)
 * replayed over HTTPS get the answers a real apiserver gave, protobuf
 * reviews included; protobuf and JSON reviews agree.
 */
import {
  deepStrictEqual as assertEquals,
  equal,
  match,
} from "node:assert/strict";
import {
  encodeK8sProtobuf,
  PROTOBUF_CONTENT_TYPE,
} from "./support/k8s-protobuf.ts";
import {
  serviceAccountUser,
  startFakeKube,
} from "./support/fake-kube/server.ts";
import { callFakeKube as call, SNAP } from "./support/fake-kube-call.ts";

const VECTORS = new URL(
  "./fixtures/real-sidecar/k8s-requests.jsonl",
  import.meta.url,
);
// deno-lint-ignore no-explicit-any
const recorded: any[] = Deno.readTextFileSync(VECTORS).trim().split("\n")
  .map((l) => JSON.parse(l));
const fromB64 = (s: string) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

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
