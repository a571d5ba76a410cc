/**
 * Config → backend, auth and routes → a running gateway, plus the banner the
 * CLI prints (URLs and a ready-to-paste call).
 */
import { type Config, ConfigError } from "../config.ts";
import type { Authenticator } from "../auth/authenticator.ts";
import { readTextFile } from "../adapter/deno/files.ts";
import {
  NodeFileSnapshotStore,
  seedNodeDemoIfEmpty,
} from "../adapter/node-fs/file-store.ts";
import { DEMO } from "../store/demo-seed.ts";
import { FIXED_LENGTH, VARIABLE_LENGTH } from "../wire/metadata-message.ts";
import { NodeGrpcRelayBackend } from "../adapter/node-http2/relay-backend.ts";
import { callerAuth } from "./caller-auth.ts";
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
  if (config.backend === "kubernetes") return await startKubernetes(config);
  if (config.backend !== "embedded") {
    throw new Error(`backend ${config.backend} is not available in this build`);
  }
  // Auth first: a refused configuration leaves the data dir untouched.
  const auth = await authFor(config);
  const seeded = await seedNodeDemoIfEmpty(config.dataDir);
  const backend = new NodeFileSnapshotStore({
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
 * Caller auth for the embedded and relay backends (Kubernetes mode gets it
 * with its parts). Kubernetes' client is loaded only when it is used.
 */
async function authFor(config: Config): Promise<Authenticator> {
  if (config.auth === "passthrough" && config.backend === "embedded") {
    throw new ConfigError(
      "--auth passthrough forwards callers' tokens to an upstream to check, and the embedded store has none: use --auth kubernetes",
    );
  }
  const kubernetes = config.auth === "kubernetes"
    ? await import("./kubernetes-mode.ts")
    : undefined;
  return callerAuth(config.auth, () => kubernetes!.kubernetesAuth(config));
}

/** --backend grpc: relay to a static upstream (no store, no demo seed). */
async function startRelay(config: Config): Promise<StartedFromConfig> {
  const backend = new NodeGrpcRelayBackend({
    url: config.upstreamUrl!,
    caPem: config.upstreamCa
      ? await readTextFile(config.upstreamCa)
      : undefined,
  });
  const running = await startGateway(config, {
    backend,
    auth: await authFor(config),
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

/** --backend kubernetes: discovery, minted tokens, caller auth (issue 5). */
async function startKubernetes(config: Config): Promise<StartedFromConfig> {
  // Loaded on demand: the embedded default needn't pay for client-node.
  const { createKubernetesParts } = await import(
    "./kubernetes-mode.ts"
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
