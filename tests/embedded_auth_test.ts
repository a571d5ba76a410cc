/**
 * The embedded store behind Kubernetes caller auth (`--auth kubernetes`,
 * assembled from flags exactly as `deno task start` does): callers bring
 * their own Kubernetes tokens; the gateway asks the API server (the faithful
 * fake) with TokenReview and SubjectAccessReview before reading any image.
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { SnapshotMetadata } from "../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import { parseConfig } from "../src/config.ts";
import { startFromConfig } from "../src/server/from-config.ts";
import { DEMO } from "../src/store/demo-seed.ts";
import {
  serviceAccountUser,
  startFakeKube,
} from "./support/fake-kube/server.ts";
import { collectTuples } from "./support/collect.ts";

Deno.test({
  name:
    "embedded store with --auth kubernetes: unauthenticated, denied and allowed callers",
  // client-node's keep-alive agent outlives the test (see fake_kube_client_node_test.ts).
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const gatewaySa = serviceAccountUser("cbt-system", "cbt-gateway");
    await using kube = await startFakeKube({
      serviceAccounts: [{ namespace: "cbt-system", name: "cbt-gateway" }],
      policy: [
        {
          users: [gatewaySa],
          verbs: ["create"],
          apiGroups: ["authentication.k8s.io"],
          resources: ["tokenreviews"],
        },
        {
          users: [gatewaySa],
          verbs: ["create"],
          apiGroups: ["authorization.k8s.io"],
          resources: ["subjectaccessreviews"],
        },
        {
          users: ["alice"],
          verbs: ["get"],
          apiGroups: ["snapshot.storage.k8s.io"],
          resources: ["volumesnapshots"],
          namespaces: [DEMO.namespace],
        },
      ],
    });
    const kubeconfig = await kube.writeKubeconfig(
      kube.serviceAccountToken("cbt-system", "cbt-gateway"),
    );
    const dataDir = await Deno.makeTempDir({ prefix: "cbt-embedded-auth-" });
    const gw = await startFromConfig(parseConfig([
      "--auth",
      "kubernetes",
      "--kubeconfig",
      kubeconfig,
      "--port",
      "0",
      "--grpc-port",
      "0",
      "--data-dir",
      dataDir,
    ], {}));
    try {
      const call = async (token?: string) => {
        const client = createClient(
          SnapshotMetadata,
          createConnectTransport({
            baseUrl: gw.httpUrl,
            interceptors: token
              ? [(next) => (req) => {
                req.header.set("authorization", `Bearer ${token}`);
                return next(req);
              }]
              : [],
          }),
        );
        const tuples = await collectTuples(client.getMetadataAllocated({
          namespace: DEMO.namespace,
          snapshotName: "snap-2",
        }));
        return tuples.map(([offset]) => offset / 4096);
      };
      const codeOf = (p: Promise<unknown>) =>
        p.then(
          () => "OK",
          (e) => e instanceof ConnectError ? Code[e.code] : String(e),
        );

      kube.clearRequests();
      equal(await codeOf(call()), "Unauthenticated");
      equal(
        kube.requests.length,
        0,
        "no credential: the API server is not even asked",
      );
      equal(await codeOf(call("not-a-token")), "Unauthenticated");
      const bob = kube.mintUserToken({
        username: "bob",
        groups: ["system:authenticated"],
      });
      equal(await codeOf(call(bob)), "PermissionDenied");
      const alice = kube.mintUserToken({
        username: "alice",
        groups: ["system:authenticated"],
      });
      deepStrictEqual(await call(alice), [
        ...DEMO.snapshots.find((s) => s.name === "snap-2")!.allocatedBlocks,
      ]);
      const sar = kube.requestsFor({ resource: "subjectaccessreviews" }).at(
        -1,
      )!;
      const spec = (sar.body as { spec: Record<string, unknown> }).spec;
      equal(spec.user, "alice");
      deepStrictEqual(spec.resourceAttributes, {
        namespace: DEMO.namespace,
        verb: "get",
        group: "snapshot.storage.k8s.io",
        version: "v1",
        resource: "volumesnapshots",
      });
      // The same over the HTTP/JSON surface: statuses, not streams.
      const url =
        `${gw.httpUrl}/v1/namespaces/${DEMO.namespace}/snapshots/snap-2/allocated`;
      const statuses = [];
      for (const token of [undefined, "not-a-token", bob, alice]) {
        const res = await fetch(url, {
          headers: token ? { authorization: `Bearer ${token}` } : {},
        });
        statuses.push(res.status);
        await res.body?.cancel();
      }
      deepStrictEqual(statuses, [401, 401, 403, 200]);
      ok(gw.banner[0].includes("auth kubernetes"));
    } finally {
      await gw.close();
      await Deno.remove(dataDir, { recursive: true });
    }
  },
});
