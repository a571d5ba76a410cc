/**
 * A whole Kubernetes-mode deployment on one machine: the fake API server
 * (its policy taken from deploy/rbac.yaml, so the manifests are what gets
 * tested), sidecar stand-ins for two CSI drivers, volume images and their
 * VolumeSnapshots, and a gateway started with `--backend kubernetes`.
 */
import { loadAllYaml } from "@kubernetes/client-node";
import { type RunningGateway, startGateway } from "../../src/server/start.ts";
import {
  createKubernetesParts,
  type KubernetesParts,
} from "../../src/server/kubernetes-mode.ts";
import type { AuthMode } from "../../src/config.ts";
import {
  type FakeKube,
  type PolicyRule,
  startFakeKube,
} from "./fake-kube/server.ts";
import { writeImage } from "./gateway.ts";
import { startTestUpstream, type TestUpstream } from "./test-upstream.ts";

export const GATEWAY_SA = { namespace: "cbt-gateway", name: "cbt-gateway" };
export const DEPLOY_DIR = new URL("../../deploy/", import.meta.url);

// deno-lint-ignore no-explicit-any
type Manifest = any;

/** Every object in every deploy/*.yaml. */
export async function loadManifests(): Promise<Manifest[]> {
  const out: Manifest[] = [];
  for await (const e of Deno.readDir(DEPLOY_DIR)) {
    if (!e.isFile || !e.name.endsWith(".yaml")) continue;
    const text = await Deno.readTextFile(new URL(e.name, DEPLOY_DIR));
    out.push(...loadAllYaml(text).filter((o) => o));
  }
  return out;
}

/** RBAC roles and bindings → the fake's policy rules, as RBAC evaluates them. */
export function policyFromRbac(manifests: Manifest[]): PolicyRule[] {
  const rules: PolicyRule[] = [];
  const roles = new Map<string, Manifest>();
  for (const m of manifests) {
    if (m.kind === "ClusterRole") {
      roles.set(`ClusterRole/${m.metadata.name}`, m);
    }
    if (m.kind === "Role") {
      roles.set(`Role/${m.metadata.namespace}/${m.metadata.name}`, m);
    }
  }
  for (const b of manifests) {
    if (b.kind !== "ClusterRoleBinding" && b.kind !== "RoleBinding") continue;
    const ns = b.kind === "RoleBinding" ? b.metadata.namespace : undefined;
    const role = roles.get(
      b.roleRef.kind === "Role"
        ? `Role/${ns}/${b.roleRef.name}`
        : `ClusterRole/${b.roleRef.name}`,
    );
    if (!role) throw new Error(`binding ${b.metadata.name}: role not found`);
    const users = b.subjects.map((s: Manifest) =>
      s.kind === "ServiceAccount"
        ? `system:serviceaccount:${s.namespace ?? ns}:${s.name}`
        : s.name
    );
    for (const r of role.rules) {
      rules.push({
        name: `${b.kind}/${b.metadata.name}`,
        users,
        verbs: r.verbs,
        apiGroups: r.apiGroups,
        resources: r.resources,
        resourceNames: r.resourceNames,
        namespaces: ns ? [ns] : undefined,
      });
    }
  }
  return rules;
}

export interface DriverFixture {
  driver: string;
  upstream: TestUpstream;
}

export interface KubeFixture {
  kube: FakeKube;
  dataDir: string;
  drivers: Record<string, DriverFixture>;
  gateway: RunningGateway;
  parts: KubernetesParts;
  /** A sidecar stand-in not yet advertised (for CA rotation). */
  startSpareUpstream(audience: string): Promise<TestUpstream>;
  close(): Promise<void>;
}

export interface KubeFixtureOptions {
  auth?: AuthMode;
  drivers?: string[];
  /** Extra policy rules (callers' rights). */
  policy?: PolicyRule[];
}

export async function startKubeFixture(
  options: KubeFixtureOptions = {},
): Promise<KubeFixture> {
  const cleanups: (() => Promise<unknown>)[] = [];
  const close = async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
  };
  try {
    const manifests = await loadManifests();
    const kube = await startFakeKube({
      policy: [...policyFromRbac(manifests), ...(options.policy ?? [])],
      serviceAccounts: [GATEWAY_SA],
      bookmarkIntervalMs: 200,
    });
    cleanups.push(() => kube.close());
    const dataDir = await Deno.makeTempDir({ prefix: "cbt-kube-data-" });
    cleanups.push(() => Deno.remove(dataDir, { recursive: true }));
    const drivers: Record<string, DriverFixture> = {};
    for (const driver of options.drivers ?? ["hostpath.csi.k8s.io"]) {
      const upstream = await startTestUpstream({
        kube,
        dataDir,
        audience: `aud-${driver}`,
      });
      cleanups.push(() => upstream.close());
      kube.addSnapshotMetadataService({
        driver,
        address: upstream.address,
        audience: upstream.audience,
        caCertPem: upstream.caPem,
      });
      drivers[driver] = { driver, upstream };
    }
    const kubeconfig = await kube.writeKubeconfig(
      kube.serviceAccountToken(GATEWAY_SA.namespace, GATEWAY_SA.name),
    );
    const parts = createKubernetesParts({
      kubeconfig,
      serviceAccount: `${GATEWAY_SA.namespace}/${GATEWAY_SA.name}`,
      auth: options.auth ?? "kubernetes",
      authAudiences: [],
      serviceOverrides: {},
    }, { discovery: { informer: { retryMs: 50, maxRetryMs: 500 } } });
    let gateway: RunningGateway;
    try {
      gateway = await startGateway({
        host: "127.0.0.1",
        port: 0,
        grpcPort: 0,
        corsOrigins: [],
      }, { backend: parts.backend, auth: parts.auth });
    } catch (e) {
      await parts.backend.close();
      throw e;
    }
    cleanups.push(() => gateway.close());
    return {
      kube,
      dataDir,
      drivers,
      gateway,
      parts,
      async startSpareUpstream(audience: string) {
        const upstream = await startTestUpstream({ kube, dataDir, audience });
        cleanups.push(() => upstream.close());
        return upstream;
      },
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}

/**
 * An image in the store plus its VolumeSnapshot objects. The handle is the
 * store's snapshot id (`<volume>/<name>`), as a driver's handle would be.
 */
export async function addSnapshot(
  f: KubeFixture,
  o: {
    namespace: string;
    name: string;
    volume: string;
    image: Uint8Array;
    driver?: string;
    readyToUse?: boolean;
  },
) {
  await writeImage(f.dataDir, o.namespace, o.volume, o.name, o.image);
  return f.kube.addSnapshot({
    namespace: o.namespace,
    name: o.name,
    driver: o.driver,
    snapshotHandle: `${o.volume}/${o.name}`,
    volumeHandle: o.volume,
    sourcePvc: `pvc-${o.volume}`,
    readyToUse: o.readyToUse,
    restoreSize: o.image.length,
  });
}
