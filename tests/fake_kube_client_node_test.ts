/**
 * The fake Kubernetes API server against @kubernetes/client-node 1.4:
 * CustomObjectsApi, Watch, informers, TokenRequest, TokenReview and
 * SubjectAccessReview; a kubeconfig file it writes loads into client-node,
 * and the test PKI (support/certs.ts) is a chain openssl verifies.
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
  type FakeKube,
  serviceAccountUser,
  SNAPSHOT_API,
  startFakeKube,
} from "./support/fake-kube/server.ts";
import { SNAP } from "./support/fake-kube-call.ts";
import { waitFor } from "./support/wait.ts";

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
