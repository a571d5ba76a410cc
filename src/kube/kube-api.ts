/**
 * The Kubernetes API calls the gateway makes, and nothing else: a thin,
 * typed layer over @kubernetes/client-node. The deploy/ RBAC rules grant
 * exactly these calls (tests/kube_deploy_test.ts checks that), so adding a
 * method here means adding a rule there.
 */
import { ConfigError } from "../config.ts";
import {
  ApiException,
  AuthenticationV1Api,
  AuthorizationV1Api,
  CoreV1Api,
  createConfiguration,
  CustomObjectsApi,
  KubeConfig,
  type RequestContext,
  type SecurityAuthentication,
  ServerConfiguration,
  Watch,
} from "@kubernetes/client-node";

export const SNAPSHOT_GROUP = "snapshot.storage.k8s.io";
export const SNAPSHOT_VERSION = "v1";
export const CBT_GROUP = "cbt.storage.k8s.io";
export const CBT_VERSION = "v1beta1";

/** The fields of any object the gateway reads; everything else is opaque. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    deletionTimestamp?: string;
  };
  // deno-lint-ignore no-explicit-any
  spec?: any;
  // deno-lint-ignore no-explicit-any
  status?: any;
}

export interface ObjectList {
  items: KubeObject[];
  resourceVersion: string;
}

export type WatchEventType = "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK";

/** The user a TokenReview established. */
export interface ReviewedUser {
  username: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

export type TokenReviewResult =
  | { authenticated: true; user: ReviewedUser; audiences: string[] }
  | { authenticated: false; error: string };

export interface AccessDecision {
  allowed: boolean;
  reason: string;
}

/** HTTP status of a failed API call, or undefined for transport failures. */
export function apiStatus(err: unknown): number | undefined {
  if (err instanceof ApiException) return err.code;
  const code = (err as { statusCode?: number })?.statusCode;
  return typeof code === "number" ? code : undefined;
}

/** A one-line description of a failed API call for error messages. */
export function describeApiError(err: unknown): string {
  if (err instanceof ApiException) {
    let body = err.body;
    if (typeof body === "string") {
      try {
        body = JSON.parse(body);
      } catch { /* keep the text */ }
    }
    const message = (body as { message?: string })?.message;
    return `HTTP ${err.code}${message ? `: ${message}` : ""}`;
  }
  return String((err as Error)?.message ?? err);
}

/**
 * Loads the cluster connection: `kubeconfig` file when given, else the
 * pod's in-cluster ServiceAccount.
 */
export function loadKubeConfig(kubeconfig?: string): KubeConfig {
  const config = new KubeConfig();
  try {
    if (kubeconfig) config.loadFromFile(kubeconfig);
    else config.loadFromCluster();
    // client-node accepts empty files; a config without a cluster is useless.
    if (!config.getCurrentCluster()) throw new Error("it names no cluster");
  } catch (e) {
    throw new ConfigError(
      kubeconfig
        ? `cannot use kubeconfig ${kubeconfig}: ${(e as Error).message}`
        : `cannot load the in-cluster config (not in a pod? pass --kubeconfig): ${
          (e as Error).message
        }`,
    );
  }
  return config;
}

/**
 * The KubeConfig's authentication with one keep-alive agent. client-node
 * 1.4 gives every request a new https.Agent, so every API call was a new
 * TLS connection: a handshake and certificate parsing for each of the calls
 * a stream makes (snapshot, content; reviews when not cached), most of the
 * gateway's fixed CPU per stream. The KubeConfig still does everything else
 * each call (it re-reads a rotated in-cluster token); a changed TLS setting
 * (a rotated CA file) gets a new agent.
 */
type RequestAgent = NonNullable<ReturnType<RequestContext["getAgent"]>>;

class KeepAliveAuthentication implements SecurityAuthentication {
  #agent?: { key: string; agent: RequestAgent };

  constructor(private readonly config: KubeConfig) {}

  getName(): string {
    return "kubeconfig with a keep-alive agent";
  }

  async applySecurityAuthentication(context: RequestContext): Promise<void> {
    await this.config.applySecurityAuthentication(context);
    const fresh = context.getAgent();
    // Only node's own (http|https).Agent is cloned (built from its own
    // constructor, so this module imports no runtime); proxy agents stay as
    // client-node made them.
    if (fresh?.constructor.name !== "Agent") return;
    // https.Agent keeps its constructor options (not in every typing).
    const o = (fresh as unknown as { options: Record<string, unknown> })
      .options;
    const key = [o.ca, o.cert, o.key, o.pfx, o.servername, o.rejectUnauthorized]
      .map(String).join("\0");
    if (this.#agent?.key !== key) {
      // The previous agent's idle sockets close on their own timeout.
      const Agent = fresh.constructor as new (
        options: Record<string, unknown>,
      ) => RequestAgent;
      this.#agent = {
        key,
        agent: new Agent({ ...o, keepAlive: true, timeout: IDLE_SOCKET_MS }),
      };
    }
    context.setAgent(this.#agent.agent);
  }
}

/** Idle API connections close after this long. */
const IDLE_SOCKET_MS = 30_000;

export class KubeApi {
  readonly #custom: CustomObjectsApi;
  readonly #core: CoreV1Api;
  readonly #authn: AuthenticationV1Api;
  readonly #authz: AuthorizationV1Api;
  readonly #watch: Watch;

  constructor(readonly config: KubeConfig) {
    const cluster = config.getCurrentCluster();
    if (!cluster) throw new Error("the kubeconfig names no cluster");
    const api = createConfiguration({
      baseServer: new ServerConfiguration(cluster.server, {}),
      authMethods: { default: new KeepAliveAuthentication(config) },
    });
    this.#custom = new CustomObjectsApi(api);
    this.#core = new CoreV1Api(api);
    this.#authn = new AuthenticationV1Api(api);
    this.#authz = new AuthorizationV1Api(api);
    this.#watch = new Watch(config);
  }

  /** GET a VolumeSnapshot; undefined when it does not exist. */
  getVolumeSnapshot(
    namespace: string,
    name: string,
  ): Promise<KubeObject | undefined> {
    return orUndefinedOn404(this.#custom.getNamespacedCustomObject({
      group: SNAPSHOT_GROUP,
      version: SNAPSHOT_VERSION,
      namespace,
      plural: "volumesnapshots",
      name,
    }));
  }

  async listVolumeSnapshots(namespace: string): Promise<KubeObject[]> {
    const list = await this.#custom.listNamespacedCustomObject({
      group: SNAPSHOT_GROUP,
      version: SNAPSHOT_VERSION,
      namespace,
      plural: "volumesnapshots",
    });
    return list.items ?? [];
  }

  /** GET a VolumeSnapshotContent (cluster-scoped); undefined when absent. */
  getVolumeSnapshotContent(name: string): Promise<KubeObject | undefined> {
    return orUndefinedOn404(this.#custom.getClusterCustomObject({
      group: SNAPSHOT_GROUP,
      version: SNAPSHOT_VERSION,
      plural: "volumesnapshotcontents",
      name,
    }));
  }

  async listVolumeSnapshotContents(): Promise<KubeObject[]> {
    const list = await this.#custom.listClusterCustomObject({
      group: SNAPSHOT_GROUP,
      version: SNAPSHOT_VERSION,
      plural: "volumesnapshotcontents",
    });
    return list.items ?? [];
  }

  async listSnapshotMetadataServices(): Promise<ObjectList> {
    const list = await this.#custom.listClusterCustomObject({
      group: CBT_GROUP,
      version: CBT_VERSION,
      plural: "snapshotmetadataservices",
    });
    return {
      items: list.items ?? [],
      resourceVersion: list.metadata?.resourceVersion ?? "",
    };
  }

  /**
   * Watches SnapshotMetadataServices from `resourceVersion`. `done` is
   * called once when the stream ends (err undefined/null for a clean end).
   * Returns a controller that stops the watch.
   */
  watchSnapshotMetadataServices(
    resourceVersion: string,
    timeoutSeconds: number,
    onEvent: (type: string, object: KubeObject) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    return this.#watch.watch(
      `/apis/${CBT_GROUP}/${CBT_VERSION}/snapshotmetadataservices`,
      { resourceVersion, allowWatchBookmarks: true, timeoutSeconds },
      (type, object) => onEvent(type, object),
      done,
    );
  }

  /** TokenRequest for a ServiceAccount (the gateway's own). */
  async createServiceAccountToken(
    namespace: string,
    name: string,
    audiences: string[],
    expirationSeconds: number,
  ): Promise<{ token: string; expiresAt: number }> {
    const answer = await this.#core.createNamespacedServiceAccountToken({
      namespace,
      name,
      body: {
        apiVersion: "authentication.k8s.io/v1",
        kind: "TokenRequest",
        spec: { audiences, expirationSeconds },
      },
    });
    const token = answer.status?.token;
    const expires = answer.status?.expirationTimestamp;
    if (!token || !expires) {
      throw new Error("TokenRequest answered without a token");
    }
    return { token, expiresAt: new Date(expires).getTime() };
  }

  /** TokenReview; audiences empty = the API server's own. */
  async reviewToken(
    token: string,
    audiences: string[],
  ): Promise<TokenReviewResult> {
    const review = await this.#authn.createTokenReview({
      body: {
        apiVersion: "authentication.k8s.io/v1",
        kind: "TokenReview",
        spec: { token, ...(audiences.length ? { audiences } : {}) },
      },
    });
    const status = review.status ?? {};
    if (!status.authenticated || !status.user?.username) {
      return {
        authenticated: false,
        error: status.error || "token not authenticated",
      };
    }
    const u = status.user;
    return {
      authenticated: true,
      user: {
        username: u.username!,
        uid: u.uid,
        groups: u.groups,
        extra: u.extra,
      },
      audiences: status.audiences ?? [],
    };
  }

  /** SubjectAccessReview: may `user` get volumesnapshots in `namespace`? */
  async mayReadSnapshots(
    user: ReviewedUser,
    namespace: string,
  ): Promise<AccessDecision> {
    const review = await this.#authz.createSubjectAccessReview({
      body: {
        apiVersion: "authorization.k8s.io/v1",
        kind: "SubjectAccessReview",
        spec: {
          user: user.username,
          uid: user.uid,
          groups: user.groups,
          extra: user.extra,
          resourceAttributes: {
            verb: "get",
            group: SNAPSHOT_GROUP,
            version: SNAPSHOT_VERSION,
            resource: "volumesnapshots",
            namespace,
          },
        },
      },
    });
    return {
      allowed: review.status?.allowed === true &&
        review.status?.denied !== true,
      reason: review.status?.reason ?? "",
    };
  }
}

async function orUndefinedOn404(
  call: Promise<KubeObject>,
): Promise<KubeObject | undefined> {
  try {
    return await call;
  } catch (err) {
    if (apiStatus(err) === 404) return undefined;
    throw err;
  }
}
