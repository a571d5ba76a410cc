/**
 * The extra tier: against a real cluster when KUBECONFIG is set (ignored —
 * reported as such, never as passed — otherwise). It needs the snapshot
 * CRDs and, for the stream check, CBT_TEST_NAMESPACE and CBT_TEST_SNAPSHOT
 * naming a ready VolumeSnapshot whose driver runs the snapshot-metadata
 * sidecar, and CBT_TEST_SERVICE_ACCOUNT (<ns>/<name>) with deploy/rbac.yaml
 * applied to it.
 */
import { equal, ok } from "node:assert/strict";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { SnapshotMetadata } from "../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import { startGateway } from "../src/server/start.ts";
import { createKubernetesParts } from "../src/server/kubernetes-mode.ts";

const kubeconfig = Deno.env.get("KUBECONFIG");
const namespace = Deno.env.get("CBT_TEST_NAMESPACE");
const snapshot = Deno.env.get("CBT_TEST_SNAPSHOT");
const serviceAccount = Deno.env.get("CBT_TEST_SERVICE_ACCOUNT");

Deno.test({
  name: "real cluster: SnapshotMetadataServices are discoverable",
  ignore: !kubeconfig,
  async fn() {
    const parts = createKubernetesParts({
      kubeconfig: kubeconfig!.split(":")[0],
      serviceAccount: serviceAccount ?? "default/default",
      auth: "none",
      authAudiences: [],
      serviceOverrides: {},
    });
    try {
      ok(await parts.discovery.services.waitForSync(15_000), "listed");
      for (const sms of parts.discovery.services.list()) {
        ok(sms.spec?.address, `${sms.metadata.name} has an address`);
      }
    } finally {
      await parts.backend.close();
    }
  },
});

Deno.test({
  name: "real cluster: an allocated stream through the gateway",
  ignore: !kubeconfig || !namespace || !snapshot || !serviceAccount,
  async fn() {
    const parts = createKubernetesParts({
      kubeconfig: kubeconfig!.split(":")[0],
      serviceAccount,
      auth: "none",
      authAudiences: [],
      serviceOverrides: {},
    });
    const gw = await startGateway(
      { host: "127.0.0.1", port: 0, grpcPort: 0, corsOrigins: [] },
      { backend: parts.backend },
    );
    try {
      const client = createClient(
        SnapshotMetadata,
        createConnectTransport({ baseUrl: gw.httpUrl }),
      );
      let capacity = 0n;
      let previousEnd = -1n;
      for await (
        const m of client.getMetadataAllocated({
          namespace,
          snapshotName: snapshot,
        })
      ) {
        capacity = m.volumeCapacityBytes;
        for (const b of m.blockMetadata) {
          ok(b.byteOffset >= previousEnd, "tuples increase");
          previousEnd = b.byteOffset + b.sizeBytes;
        }
      }
      ok(previousEnd <= capacity || capacity === 0n);
      equal(typeof capacity, "bigint");
    } finally {
      await gw.close();
    }
  },
});
