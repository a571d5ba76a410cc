/**
 * Config → backend, auth and routes → a running gateway, plus the banner the
 * CLI prints (URLs and a ready-to-paste call).
 */
import { type Config, ConfigError } from "../config.ts";
import { type Authenticator, NoAuth } from "../auth/authenticator.ts";
import { ForwardAuth } from "../auth/forward-auth.ts";
import { PassthroughAuth } from "../auth/passthrough-auth.ts";
import { DEMO, seedDemoIfEmpty } from "../store/demo-seed.ts";
import { FileSnapshotStore } from "../store/file-store.ts";
import { FIXED_LENGTH, VARIABLE_LENGTH } from "../wire/metadata-message.ts";
import { GrpcRelayBackend } from "../upstream/grpc-relay.ts";
import { ConnectUpstreamBackend } from "../relay/connect-upstream.ts";
import { createTicketForwarding } from "../front/http-json/ticket-forwarding.ts";
import { type RunningGateway, startGateway } from "./start.ts";

export interface StartedFromConfig extends RunningGateway {
  /** Lines for people: where it listens and how to call it. */
  banner: string[];
}

/** The access log goes to stdout, one JSON line per streaming call. */
const accessLog = (line: string) => console.log(line);

export async function startFromConfig(
  config: Config,
): Promise<StartedFromConfig> {
  if (config.backend === "grpc") return await startRelay(config);
  if (config.backend === "connect") return await startConnectRelay(config);
  if (config.backend === "kubernetes") return await startKubernetes(config);
  if (config.backend !== "embedded") {
    throw new Error(`backend ${config.backend} is not available in this build`);
  }
  // Auth first: a refused configuration leaves the data dir untouched.
  const auth = await callerAuth(config);
  const seeded = await seedDemoIfEmpty(config.dataDir);
  const backend = new FileSnapshotStore({
    dataDir: config.dataDir,
    blockMetadataType: config.blockMetadataType === "VARIABLE_LENGTH"
      ? VARIABLE_LENGTH
      : FIXED_LENGTH,
  });
  const running = await startGateway(config, {
    backend,
    auth,
    log: accessLog,
  });
  const banner = [
    `cbt-gateway: ${backend.name} backend on ${config.dataDir}${
      seeded ? " (seeded the demo)" : ""
    }, ` +
    `${config.blockMetadataType}, auth ${config.auth}`,
    `  Connect, gRPC-Web, HTTP/JSON: ${running.httpUrl}`,
    `  native gRPC (HTTP/2):          ${running.grpcUrl}`,
    `  block map in a browser:        ${running.httpUrl}/ui/`,
    `  Prometheus metrics:            ${running.httpUrl}/metrics`,
    `Try:`,
    `  curl -N '${running.httpUrl}/v1/namespaces/${DEMO.namespace}/snapshots/snap-2/delta?baseSnapshotName=snap-1'`,
    `  npx --yes @bufbuild/buf@1.75.0 curl --protocol connect --schema proto ` +
    `--data '{"namespace":"${DEMO.namespace}","snapshotName":"snap-2"}' ` +
    `${running.httpUrl}/snapshotmetadata.SnapshotMetadata/GetMetadataAllocated`,
  ];
  return { ...running, banner };
}

/**
 * Caller auth for the embedded and relay backends (Kubernetes mode builds
 * its own). Kubernetes' client is loaded only when it is used.
 */
async function callerAuth(config: Config): Promise<Authenticator> {
  switch (config.auth) {
    case "none":
      return new NoAuth();
    case "forward":
      return new ForwardAuth();
    case "passthrough":
      if (config.backend === "embedded") {
        throw new ConfigError(
          "--auth passthrough forwards callers' tokens to an upstream to check, and the embedded store has none: use --auth kubernetes",
        );
      }
      return new PassthroughAuth();
    case "kubernetes": {
      const { KubeApi, loadKubeConfig } = await import("../kube/kube-api.ts");
      const { KubernetesAuth } = await import("../auth/kubernetes-auth.ts");
      return new KubernetesAuth(
        new KubeApi(loadKubeConfig(config.kubeconfig)),
        {
          audiences: config.authAudiences,
        },
      );
    }
  }
}

/** --backend grpc: relay to a static upstream (no store, no demo seed). */
async function startRelay(config: Config): Promise<StartedFromConfig> {
  const backend = new GrpcRelayBackend({
    url: config.upstreamUrl!,
    caPem: config.upstreamCa
      ? await Deno.readTextFile(config.upstreamCa)
      : undefined,
  });
  const running = await startGateway(config, {
    backend,
    auth: await callerAuth(config),
    log: accessLog,
  });
  return {
    ...running,
    banner: [
      `cbt-gateway: grpc relay to ${config.upstreamUrl}, auth ${config.auth}`,
      `  Connect, gRPC-Web, HTTP/JSON: ${running.httpUrl}`,
      `  native gRPC (HTTP/2):          ${running.grpcUrl}`,
    ],
  };
}

/**
 * --backend connect: an edge tier in front of another cbt-gateway's HTTP
 * port (the same composition as the edge bundle, server/edge.ts, on Deno).
 */
async function startConnectRelay(config: Config): Promise<StartedFromConfig> {
  const upstreamUrl = config.upstreamUrl!;
  const running = await startGateway(config, {
    backend: new ConnectUpstreamBackend({ baseUrl: upstreamUrl }),
    auth: await callerAuth(config),
    log: accessLog,
    // With forwarded tokens only the upstream knows the caller a ticket names.
    routes: config.auth === "forward"
      ? () => [createTicketForwarding(upstreamUrl)]
      : undefined,
  });
  return {
    ...running,
    banner: [
      `cbt-gateway: connect relay to ${upstreamUrl}, auth ${config.auth}`,
      `  Connect, gRPC-Web, HTTP/JSON: ${running.httpUrl}`,
      `  native gRPC (HTTP/2):          ${running.grpcUrl}`,
    ],
  };
}

/** --backend kubernetes: discovery, minted tokens, caller auth (issue 5). */
async function startKubernetes(config: Config): Promise<StartedFromConfig> {
  // Loaded on demand: the embedded default needn't pay for client-node.
  const { createKubernetesParts } = await import(
    "../upstream/kubernetes-mode.ts"
  );
  const { backend, auth } = createKubernetesParts(config);
  let running;
  try {
    running = await startGateway(config, {
      backend,
      auth,
      log: accessLog,
    });
  } catch (e) {
    await backend.close();
    throw e;
  }
  return {
    ...running,
    banner: [
      `cbt-gateway: kubernetes backend${
        config.kubeconfig ? ` (${config.kubeconfig})` : " (in cluster)"
      }, auth ${config.auth}`,
      `  Connect, gRPC-Web, HTTP/JSON: ${running.httpUrl}`,
      `  native gRPC (HTTP/2):          ${running.grpcUrl}`,
    ],
  };
}
