/**
 * Config → the parts of a Kubernetes-mode gateway: the cluster connection,
 * discovery, the gateway's ServiceAccount and token minter, the sidecar
 * connection pool, the backend, and the caller authenticator.
 */
import type { Authenticator } from "../auth/authenticator.ts";
import { KubernetesAuth } from "../auth/kubernetes-auth.ts";
import { type Config, ConfigError } from "../config.ts";
import { KubeApi, loadKubeConfig } from "../kube/kube-api.ts";
import { Discovery, type DiscoveryOptions } from "../kubernetes/discovery.ts";
import { KubernetesBackend } from "../kubernetes/kubernetes-backend.ts";
import { UpstreamPool } from "../adapter/node-http2/upstream-pool.ts";
import {
  SERVICE_ACCOUNT_TOKEN_PATH,
  serviceAccountOfToken,
  type ServiceAccountRef,
  TokenMinter,
} from "../kubernetes/token-minter.ts";
import { readTextFileIfPresent } from "../adapter/deno/files.ts";
import { callerAuth } from "./caller-auth.ts";

export interface KubernetesParts {
  api: KubeApi;
  backend: KubernetesBackend;
  auth: Authenticator;
  discovery: Discovery;
  minter?: TokenMinter;
  pool: UpstreamPool;
}

export function parseServiceAccount(text: string): ServiceAccountRef {
  const [namespace, name] = text.split("/");
  return { namespace, name };
}

/** `--auth kubernetes`: TokenReview + SubjectAccessReview through `api`. */
export function kubernetesAuth(
  config: Pick<Config, "kubeconfig" | "authAudiences">,
  api = new KubeApi(loadKubeConfig(config.kubeconfig)),
): KubernetesAuth {
  return new KubernetesAuth(api, { audiences: config.authAudiences });
}

export function createKubernetesParts(
  config: Pick<
    Config,
    | "kubeconfig"
    | "serviceAccount"
    | "auth"
    | "authAudiences"
    | "serviceOverrides"
  >,
  options: { discovery?: Omit<DiscoveryOptions, "serviceOverrides"> } = {},
): KubernetesParts {
  const api = new KubeApi(loadKubeConfig(config.kubeconfig));
  let minter: TokenMinter | undefined;
  if (config.auth !== "passthrough") {
    const sa = config.serviceAccount
      ? parseServiceAccount(config.serviceAccount)
      : serviceAccountOfToken(
        readTextFileIfPresent(SERVICE_ACCOUNT_TOKEN_PATH),
      );
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
  const pool = new UpstreamPool();
  const backend = new KubernetesBackend({ discovery, pool, minter });
  const auth = callerAuth(config.auth, () => kubernetesAuth(config, api));
  return { api, backend, auth, discovery, minter, pool };
}
