/**
 * deploy/: the manifests parse and hang together (names, ports, probes), and
 * the RBAC is exactly what the code uses: every API call the gateway makes
 * in a full session is allowed by a rule, and every rule is used by some
 * call (so nothing is granted "just in case").
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { SnapshotMetadata } from "../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import { GatewayService } from "../gen/cbtgateway/v1/gateway_pb.ts";
import { Policy } from "./support/fake-kube/server.ts";
import { parseConfig } from "../src/config.ts";
import { randomImage, Rng } from "./support/images.ts";
import {
  addSnapshot,
  GATEWAY_SA,
  loadManifests,
  policyFromRbac,
  startKubeFixture,
} from "./support/kube-fixture.ts";

// deno-lint-ignore no-explicit-any
type Manifest = any;

const GATEWAY_USER =
  `system:serviceaccount:${GATEWAY_SA.namespace}:${GATEWAY_SA.name}`;

function one(manifests: Manifest[], kind: string, name: string): Manifest {
  const found = manifests.filter((m) =>
    m.kind === kind && m.metadata?.name === name
  );
  equal(found.length, 1, `exactly one ${kind} ${name}`);
  return found[0];
}

Deno.test("deploy/ manifests parse and agree with each other", async () => {
  const manifests = await loadManifests();
  for (const m of manifests) {
    ok(m.apiVersion && m.kind && m.metadata?.name, JSON.stringify(m));
  }
  const sa = one(manifests, "ServiceAccount", GATEWAY_SA.name);
  equal(sa.metadata.namespace, GATEWAY_SA.namespace);
  one(manifests, "Namespace", GATEWAY_SA.namespace);
  const deploy = one(manifests, "Deployment", "cbt-gateway");
  const pod = deploy.spec.template.spec;
  equal(pod.serviceAccountName, GATEWAY_SA.name);
  deepStrictEqual(deploy.spec.selector.matchLabels, {
    ...deploy.spec.selector.matchLabels,
    ...deploy.spec.template.metadata.labels,
  });
  const [container] = pod.containers;
  const ports = Object.fromEntries(
    container.ports.map((p: Manifest) => [p.name, p.containerPort]),
  );
  ok(container.args.includes(`--port=${ports.http}`));
  ok(container.args.includes(`--grpc-port=${ports.grpc}`));
  ok(container.args.includes("--backend=kubernetes"));
  equal(container.readinessProbe.httpGet.path, "/readyz");
  equal(container.livenessProbe.httpGet.path, "/healthz");
  equal(container.readinessProbe.httpGet.port, "http");
  const svc = one(manifests, "Service", "cbt-gateway");
  for (const [k, v] of Object.entries(svc.spec.selector)) {
    equal(deploy.spec.template.metadata.labels[k], v);
  }
  for (const p of svc.spec.ports) ok(p.targetPort in ports, p.targetPort);
});

Deno.test("deploy/ replicas: env → config, ticket key from a Secret, HPA, PDB, spread, Gateway API routes", async () => {
  const manifests = await loadManifests();
  const deploy = one(manifests, "Deployment", "cbt-gateway");
  const podLabels = deploy.spec.template.metadata.labels;
  const matches = (selector: Manifest) =>
    Object.entries(selector.matchLabels).every(([k, v]) => podLabels[k] === v);
  const pod = deploy.spec.template.spec;
  const [container] = pod.containers;

  // Every CBT_GATEWAY_* variable is a real flag: the config it parses to
  // (with the Secret's value filled in) carries each one.
  const env: Record<string, string> = {};
  for (const e of container.env) {
    ok(e.name.startsWith("CBT_GATEWAY_"), e.name);
    env[e.name] = e.value ?? "x".repeat(48);
  }
  const secretRef = container.env.find((e: Manifest) =>
    e.name === "CBT_GATEWAY_TICKET_SECRET"
  )?.valueFrom?.secretKeyRef;
  ok(secretRef?.name && secretRef?.key, "ticket secret comes from a Secret");
  equal(
    manifests.filter((m) => m.kind === "Secret").length,
    0,
    "no key is shipped in deploy/",
  );
  const config = parseConfig(container.args, env);
  equal(config.ticketSecret, "x".repeat(48));
  equal(config.readAheadBytes, Number(env.CBT_GATEWAY_READ_AHEAD_BYTES));
  equal(config.maxStreams, Number(env.CBT_GATEWAY_MAX_STREAMS));
  equal(
    config.maxStreamsPerCaller,
    Number(env.CBT_GATEWAY_MAX_STREAMS_PER_CALLER),
  );
  ok(config.maxStreamDurationSeconds > 0);

  // Spread over nodes and zones, counting this Deployment's pods.
  const keys = pod.topologySpreadConstraints.map((c: Manifest) => {
    ok(matches(c.labelSelector), c.topologyKey);
    return c.topologyKey;
  });
  deepStrictEqual(keys.sort(), [
    "kubernetes.io/hostname",
    "topology.kubernetes.io/zone",
  ]);
  equal(deploy.spec.strategy.rollingUpdate.maxUnavailable, 0);

  const hpa = one(manifests, "HorizontalPodAutoscaler", "cbt-gateway");
  equal(hpa.apiVersion, "autoscaling/v2");
  deepStrictEqual({ ...hpa.spec.scaleTargetRef }, {
    apiVersion: deploy.apiVersion,
    kind: "Deployment",
    name: deploy.metadata.name,
  });
  ok(hpa.spec.minReplicas >= 2 && hpa.spec.maxReplicas > hpa.spec.minReplicas);

  const pdb = one(manifests, "PodDisruptionBudget", "cbt-gateway");
  equal(pdb.apiVersion, "policy/v1");
  ok(matches(pdb.spec.selector), "the PDB selects the gateway's pods");
  ok(pdb.spec.maxUnavailable < hpa.spec.minReplicas);

  // The routes reach the Service's ports: HTTP for the fetch front, h2c for gRPC.
  const svc = one(manifests, "Service", "cbt-gateway");
  const svcPort = (n: number) =>
    svc.spec.ports.find((p: Manifest) => p.port === n);
  const http = one(manifests, "HTTPRoute", "cbt-gateway");
  const grpc = one(manifests, "GRPCRoute", "cbt-gateway");
  for (const route of [http, grpc]) {
    equal(route.apiVersion, "gateway.networking.k8s.io/v1");
    equal(route.metadata.namespace, deploy.metadata.namespace);
    ok(route.spec.parentRefs.length > 0);
  }
  const [httpBackend] = http.spec.rules[0].backendRefs;
  equal(httpBackend.name, svc.metadata.name);
  equal(svcPort(httpBackend.port).targetPort, "http");
  const [grpcBackend] = grpc.spec.rules[0].backendRefs;
  equal(grpcBackend.name, svc.metadata.name);
  equal(svcPort(grpcBackend.port).targetPort, "grpc");
  equal(svcPort(grpcBackend.port).appProtocol, "kubernetes.io/h2c");
  deepStrictEqual(
    grpc.spec.rules[0].matches.map((m: Manifest) => m.method.service).sort(),
    [GatewayService.typeName, SnapshotMetadata.typeName].sort(),
  );
});

Deno.test("deploy/rbac.yaml grants exactly the API calls the gateway makes", async () => {
  const rules = policyFromRbac(await loadManifests());
  const f = await startKubeFixture({
    policy: [{
      name: "alice",
      users: ["alice"],
      verbs: ["get"],
      apiGroups: ["snapshot.storage.k8s.io"],
      resources: ["volumesnapshots"],
      namespaces: ["ns1"],
    }],
  });
  try {
    const rng = new Rng(99);
    const image = randomImage(rng, 64 * 1024);
    await addSnapshot(f, { namespace: "ns1", name: "a", volume: "v", image });
    await addSnapshot(f, { namespace: "ns1", name: "b", volume: "v", image });
    const transport = createConnectTransport({
      baseUrl: f.gateway.httpUrl,
      interceptors: [(next) => (req) => {
        req.header.set(
          "authorization",
          `Bearer ${f.kube.mintUserToken({ username: "alice" })}`,
        );
        return next(req);
      }],
    });
    const sm = createClient(SnapshotMetadata, transport);
    const gw = createClient(GatewayService, transport);
    // A full session: allocated, delta by handle and by name, the list.
    for await (
      const _ of sm.getMetadataAllocated({
        namespace: "ns1",
        snapshotName: "b",
      })
    ) { /* drain */ }
    for await (
      const _ of sm.getMetadataDelta({
        namespace: "ns1",
        baseSnapshotId: "v/a",
        targetSnapshotName: "b",
      })
    ) { /* drain */ }
    for await (
      const _ of gw.getMetadataDeltaByName({
        namespace: "ns1",
        baseSnapshotName: "a",
        targetSnapshotName: "b",
      })
    ) { /* drain */ }
    const list = await gw.listSnapshots({ namespace: "ns1" });
    deepStrictEqual(list.snapshots.map((s) => s.name).sort(), ["a", "b"]);

    const calls = f.kube.requests.filter((r) => r.user === GATEWAY_USER);
    const used = new Set<string>();
    for (const r of calls) {
      ok(
        r.status !== undefined && r.status < 400,
        `${r.method} ${r.path} → ${r.status}`,
      );
      const resource = r.info.subresource
        ? `${r.info.resource}/${r.info.subresource}`
        : r.info.resource;
      const attrs = {
        verb: r.info.verb,
        group: r.info.group,
        resource: r.info.resource,
        subresource: r.info.subresource || undefined,
        namespace: r.info.namespace || undefined,
        name: r.info.name || undefined,
      };
      // Which rule allows it, with nothing but that rule in force.
      const rule = rules.find((rule) =>
        new Policy([{ ...rule, effect: "allow" }])
          .authorize({ username: GATEWAY_USER }, attrs).allowed
      );
      ok(rule, `no rule allows ${r.info.verb} ${resource}`);
      used.add(`${r.info.verb} ${r.info.group}/${resource}`);
    }
    const granted = new Set<string>();
    for (const rule of rules) {
      for (const verb of rule.verbs) {
        for (const group of rule.apiGroups ?? []) {
          for (const res of rule.resources ?? []) {
            granted.add(`${verb} ${group}/${res}`);
          }
        }
      }
    }
    deepStrictEqual([...used].sort(), [...granted].sort());
  } finally {
    await f.close();
  }
});
