/**
 * Config → the parts of a Kubernetes-mode gateway: the cluster connection,
 * discovery, the gateway's ServiceAccount and token minter, the sidecar
 * connection pool, the backend, and the caller authenticator.
 */
import type { Authenticator } from "../auth/authenticator.ts";
import { KubernetesAuth } from "../auth/kubernetes-auth.ts";
import { PassthroughAuth } from "../auth/passthrough-auth.ts";
import type { Config } from "../config.ts";
import { ConfigError } from "../config.ts";
import { KubeApi, loadKubeConfig } from "../kube/kube-api.ts";
import { Discovery, type DiscoveryOptions } from "./discovery.ts";
import { KubernetesBackend } from "./kubernetes-backend.ts";
import { UpstreamPool } from "./kubernetes-upstream-pool.ts";
import {
  inClusterServiceAccount,
  type ServiceAccountRef,
  TokenMinter,
} from "./token-minter.ts";

export interface KubernetesParts {
  api: KubeApi;
  backend: KubernetesBackend;
  /** Undefined with `--auth none` (loopback only). */
  auth?: Authenticator;
  discovery: Discovery;
  minter?: TokenMinter;
  pool: UpstreamPool;
}

export function parseServiceAccount(text: string): ServiceAccountRef {
  const [namespace, name] = text.split("/");
  return { namespace, name };
}

export function createKubernetesParts(
  config:
    & Pick<
      Config,
      | "kubeconfig"
      | "serviceAccount"
      | "auth"
      | "authAudiences"
      | "serviceOverrides"
    >
    & Partial<Pick<Config, "upstreamMaxTimeoutS">>,
  options: { discovery?: Omit<DiscoveryOptions, "serviceOverrides"> } = {},
): KubernetesParts {
  const api = new KubeApi(loadKubeConfig(config.kubeconfig));
  let minter: TokenMinter | undefined;
  if (config.auth !== "passthrough") {
    const sa = config.serviceAccount
      ? parseServiceAccount(config.serviceAccount)
      : inClusterServiceAccount();
    if (!sa) {
      throw new ConfigError(
        "the kubernetes backend needs the gateway's ServiceAccount: run in a " +
          "pod, or pass --service-account <namespace>/<name>",
      );
    }
    minter = new TokenMinter(api, sa);
  }
  const discovery = new Discovery(api, {
    ...options.discovery,
    serviceOverrides: config.serviceOverrides,
  });
  const pool = new UpstreamPool({
    maxTimeoutMs: (config.upstreamMaxTimeoutS ?? 0) * 1000,
  });
  const backend = new KubernetesBackend({ discovery, pool, minter });
  const auth = config.auth === "kubernetes"
    ? new KubernetesAuth(api, { audiences: config.authAudiences })
    : config.auth === "passthrough"
    ? new PassthroughAuth()
    : undefined;
  return { api, backend, auth, discovery, minter, pool };
}
