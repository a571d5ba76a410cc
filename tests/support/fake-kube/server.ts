/**
 * A fake Kubernetes API server for tests: HTTPS on 127.0.0.1 with its own
 * CA, bearer-token authentication and policy authorization of every
 * request, snapshot custom resources (get/list/watch/create/update/patch/
 * delete), TokenRequest, TokenReview and SubjectAccessReview (JSON and
 * protobuf), real Status error bodies, and a record of every request.
 *
 *   const kube = await startFakeKube({ policy: [...] });
 *   new KubeConfig().loadFromString(kube.kubeconfig());
 *   ...
 *   await kube.close();
 */
import { createServer, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { Buffer } from "node:buffer";
import { issueServerCert, makeCertificateAuthority } from "../certs.ts";
import type { JsonObject } from "../k8s-protobuf.ts";
import { type Exchange, type RecordedRequest, respond } from "./exchange.ts";
import {
  snapshotMetadataService,
  type SnapshotMetadataServiceOptions,
  snapshotObjects,
  type SnapshotOptions,
} from "./fixtures.ts";
import { Policy, type PolicyRule } from "./policy.ts";
import { requestInfo } from "./request-info.ts";
import { type ActiveWatch, render, serveResource } from "./rest.ts";
import {
  apiVersionOf,
  defaultResources,
  type ResourceType,
} from "./resources.ts";
import { subjectAccessReview, tokenRequest, tokenReview } from "./reviews.ts";
import {
  forbidden,
  notFoundPath,
  statusBody,
  StatusError,
  unauthorized,
} from "./status.ts";
import { ObjectStore } from "./store.ts";
import {
  Clock,
  TokenAuthority,
  type UserInfo,
  type UserTokenOptions,
} from "./tokens.ts";

export { Policy, type PolicyRule, serviceAccountUser } from "./policy.ts";
export type { RecordedRequest } from "./exchange.ts";
export type { UserInfo, UserTokenOptions } from "./tokens.ts";
export type { ResourceType } from "./resources.ts";
export * from "./fixtures.ts";

export const DEFAULT_API_AUDIENCE =
  "https://kubernetes.default.svc.cluster.local";

export interface FakeKubeOptions {
  /** Authorization rules (or a Policy to share). Default: none (only admin). */
  policy?: PolicyRule[] | Policy;
  /** The API server's audiences (default [DEFAULT_API_AUDIENCE]). */
  apiAudiences?: string[];
  /** ServiceAccount token issuer (default DEFAULT_API_AUDIENCE). */
  issuer?: string;
  /** Extra resource types to serve besides the defaults. */
  resources?: ResourceType[];
  /** How often watches with allowWatchBookmarks get a BOOKMARK (default 1000; 0 = never). */
  bookmarkIntervalMs?: number;
  /** Objects to store before serving (any served kind). */
  objects?: JsonObject[];
  /** ServiceAccounts to create before serving. */
  serviceAccounts?: { namespace: string; name: string }[];
  /** Request bodies larger than this are refused with 413 (default 3 MiB, as the real server). */
  maxBodyBytes?: number;
}

const ADMIN: UserInfo = {
  username: "kubernetes-admin",
  groups: ["system:masters", "system:authenticated"],
};

/** Non-resource paths every authenticated user may GET (system:discovery). */
const PUBLIC_PATHS = new Set([
  "/version",
  "/healthz",
  "/livez",
  "/readyz",
  "/api",
  "/apis",
]);

export class FakeKube {
  /** `https://127.0.0.1:<port>` */
  readonly url: string;
  readonly caPem: string;
  /** The CA certificate file (for tools that want a path). */
  readonly caPath: string;
  /** A token for `kubernetes-admin` (system:masters: allowed everything). */
  readonly adminToken: string;
  readonly policy: Policy;
  readonly clock: Clock;
  readonly tokens: TokenAuthority;
  readonly store: ObjectStore;
  /** Every request received, in order. */
  readonly requests: RecordedRequest[] = [];
  private readonly resources: ResourceType[];
  private readonly watches = new Set<ActiveWatch>();
  private readonly sockets = new Set<Socket>();
  private seq = 0;
  private readonly bookmarkIntervalMs: number;
  private readonly maxBodyBytes: number;

  /** @internal use startFakeKube */
  constructor(
    private readonly server: Server,
    private readonly dir: string,
    init: {
      url: string;
      caPem: string;
      caPath: string;
      policy: Policy;
      clock: Clock;
      tokens: TokenAuthority;
      store: ObjectStore;
      resources: ResourceType[];
      bookmarkIntervalMs: number;
      maxBodyBytes: number;
    },
  ) {
    this.url = init.url;
    this.caPem = init.caPem;
    this.caPath = init.caPath;
    this.policy = init.policy;
    this.clock = init.clock;
    this.tokens = init.tokens;
    this.store = init.store;
    this.resources = init.resources;
    this.bookmarkIntervalMs = init.bookmarkIntervalMs;
    this.maxBodyBytes = init.maxBodyBytes;
    this.adminToken = this.tokens.addUserToken(ADMIN);
    // Both the TCP and the TLS socket, so close() can end half-open ones.
    const track = (s: Socket) => {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
    };
    server.on("connection", track);
    server.on("secureConnection", track);
    server.on(
      "request",
      (req: IncomingMessage, res: ServerResponse) => this.handle(req, res),
    );
  }

  // ---- test-side API ----

  /** The resource type for an apiVersion + kind (throws if not served). */
  resourceType(apiVersion: string, kind: string): ResourceType {
    const rt = this.resources.find((r) =>
      apiVersionOf(r) === apiVersion && r.kind === kind
    );
    if (!rt) throw new Error(`fake-kube does not serve ${apiVersion} ${kind}`);
    return rt;
  }

  /**
   * Creates or replaces an object directly (no auth, status included, no
   * resourceVersion check). Returns it as stored, as the API would show it.
   */
  put(obj: JsonObject): JsonObject {
    const rt = this.resourceType(obj.apiVersion, obj.kind);
    const ns = rt.namespaced ? obj.metadata?.namespace : undefined;
    if (rt.namespaced && !ns) {
      throw new Error(`${obj.kind} needs metadata.namespace`);
    }
    const existing = this.store.get(rt, ns, obj.metadata.name);
    const stored = existing
      ? this.store.update(rt, {
        ...obj,
        metadata: { ...obj.metadata, resourceVersion: undefined },
      })
      : this.store.create(rt, obj);
    return render(rt, stored);
  }

  /** Reads an object directly (undefined when absent). */
  get(
    apiVersion: string,
    kind: string,
    name: string,
    namespace?: string,
  ): JsonObject | undefined {
    const rt = this.resourceType(apiVersion, kind);
    const o = this.store.get(rt, namespace, name);
    return o && render(rt, o);
  }

  /** Lists objects directly. */
  list(apiVersion: string, kind: string, namespace?: string): JsonObject[] {
    const rt = this.resourceType(apiVersion, kind);
    return this.store.list(rt, namespace).map((o) => render(rt, o));
  }

  /**
   * Deletes an object directly. With finalizers it only gets a
   * deletionTimestamp unless `force`.
   */
  delete(
    apiVersion: string,
    kind: string,
    name: string,
    namespace?: string,
    opts: { force?: boolean } = {},
  ): JsonObject {
    const rt = this.resourceType(apiVersion, kind);
    return render(rt, this.store.delete(rt, namespace, name, opts));
  }

  /** Makes every resourceVersion so far too old: later watches from them get 410. */
  compact(): number {
    return this.store.compact();
  }

  /** Ends every open watch stream, as an API server restart or timeout would. */
  closeWatches(): number {
    const n = this.watches.size;
    for (const w of [...this.watches]) w.close();
    return n;
  }

  /** Sends a BOOKMARK on every watch that allows them. */
  sendBookmarks() {
    for (const w of this.watches) w.bookmark();
  }

  /** Number of open watch streams. */
  get openWatches(): number {
    return this.watches.size;
  }

  /** Creates a ServiceAccount (if missing) and returns it. */
  addServiceAccount(namespace: string, name: string): JsonObject {
    return this.get("v1", "ServiceAccount", name, namespace) ??
      this.put({
        apiVersion: "v1",
        kind: "ServiceAccount",
        metadata: { name, namespace },
      });
  }

  /**
   * Mints a ServiceAccount token as TokenRequest would (creating the
   * ServiceAccount if missing). Audiences default to the API server's.
   */
  serviceAccountToken(
    namespace: string,
    name: string,
    opts: { audiences?: string[]; expirationSeconds?: number } = {},
  ): string {
    const sa = this.addServiceAccount(namespace, name);
    return this.tokens.issueServiceAccountToken(
      { namespace, name, uid: sa.metadata.uid },
      opts.audiences ?? this.tokens.apiAudiences,
      opts.expirationSeconds ?? 3600,
    ).token;
  }

  /**
   * Registers an opaque token for a user (system:authenticated is added).
   * Without `audiences` it is audience-agnostic like a static token: valid
   * for requests to this server, but not in a TokenReview for another audience.
   */
  mintUserToken(user: UserInfo, opts?: UserTokenOptions): string {
    return this.tokens.addUserToken(user, opts);
  }

  /** Makes a token invalid from now on. */
  revokeToken(token: string) {
    this.tokens.revoke(token);
  }

  /** Moves the fake clock (token expiry, timestamps) forward. */
  advanceClock(ms: number) {
    this.clock.advance(ms);
  }

  /**
   * Stores a bound VolumeSnapshot + VolumeSnapshotContent (+ the class if
   * missing), as the snapshot controller would leave them.
   */
  addSnapshot(
    o: SnapshotOptions,
  ): { snapshot: JsonObject; content: JsonObject; snapshotClass: JsonObject } {
    const objs = snapshotObjects(o);
    const snapshotClass = this.get(
      objs.snapshotClass.apiVersion,
      "VolumeSnapshotClass",
      objs.snapshotClass.metadata.name,
    ) ??
      this.put(objs.snapshotClass);
    const snapshot = this.put(objs.snapshot);
    objs.content.spec.volumeSnapshotRef.uid = snapshot.metadata.uid;
    objs.content.spec.volumeSnapshotRef.resourceVersion =
      snapshot.metadata.resourceVersion;
    const content = this.put(objs.content);
    return { snapshot, content, snapshotClass };
  }

  /** Stores a SnapshotMetadataService (named after the driver). */
  addSnapshotMetadataService(o: SnapshotMetadataServiceOptions): JsonObject {
    return this.put(snapshotMetadataService(o));
  }

  /** A kubeconfig (JSON, which is YAML) for this server and a bearer token. */
  kubeconfig(
    token: string = this.adminToken,
    opts: { namespace?: string } = {},
  ): string {
    return JSON.stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [{
        name: "fake-kube",
        cluster: {
          server: this.url,
          "certificate-authority-data": Buffer.from(this.caPem).toString(
            "base64",
          ),
        },
      }],
      users: [{ name: "fake-user", user: { token } }],
      contexts: [{
        name: "fake-kube",
        context: {
          cluster: "fake-kube",
          user: "fake-user",
          ...(opts.namespace ? { namespace: opts.namespace } : {}),
        },
      }],
      "current-context": "fake-kube",
    });
  }

  /** Writes `kubeconfig(token)` to a file in the fake's temp dir; returns its path. */
  async writeKubeconfig(
    token: string = this.adminToken,
    opts: { namespace?: string } = {},
  ): Promise<string> {
    const path = `${this.dir}/kubeconfig-${++this.seq}.json`;
    await Deno.writeTextFile(path, this.kubeconfig(token, opts));
    return path;
  }

  /** Forgets the recorded requests. */
  clearRequests() {
    this.requests.length = 0;
  }

  /** Recorded requests to resources (optionally one resource / verb). */
  requestsFor(
    filter: { resource?: string; verb?: string; user?: string } = {},
  ): RecordedRequest[] {
    return this.requests.filter((r) =>
      (filter.resource === undefined || r.info.resource === filter.resource) &&
      (filter.verb === undefined || r.info.verb === filter.verb) &&
      (filter.user === undefined || r.user === filter.user)
    );
  }

  /** Stops serving, ends watches and connections, removes the temp dir. */
  async close(): Promise<void> {
    this.closeWatches();
    const closed = new Promise<void>((resolve) =>
      this.server.close(() => resolve())
    );
    for (const s of this.sockets) s.destroy();
    await closed;
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }

  async [Symbol.asyncDispose]() {
    await this.close();
  }

  // ---- request handling ----

  private async handle(req: IncomingMessage, res: ServerResponse) {
    const url = new URL(req.url ?? "/", "https://fake");
    const headers: [string, string][] = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      headers.push([req.rawHeaders[i], req.rawHeaders[i + 1]]);
    }
    const info = requestInfo(
      req.method ?? "GET",
      url.pathname,
      url.searchParams,
    );
    const record: RecordedRequest = {
      seq: this.requests.length + 1,
      time: this.clock.now(),
      method: req.method ?? "GET",
      path: url.pathname,
      query: url.search.slice(1),
      params: Object.fromEntries(url.searchParams),
      headers,
      contentType: req.headers["content-type"] ?? null,
      accept: req.headers.accept ?? null,
      info,
      bodyBytes: new Uint8Array(),
    };
    this.requests.push(record);
    const ex: Exchange = {
      req,
      res,
      info,
      query: url.searchParams,
      user: { username: "" },
      body: new Uint8Array(),
      contentType: (req.headers["content-type"] ?? "").split(";")[0].trim()
        .toLowerCase(),
      record,
    };
    try {
      ex.body = record.bodyBytes = await this.readBody(req);
      this.authenticate(ex);
      this.route(ex);
    } catch (e) {
      const err = e instanceof StatusError ? e : new StatusError(
        500,
        statusBody(
          500,
          "InternalError",
          `Internal error occurred: ${(e as Error)?.message ?? e}`,
        ),
      );
      if (res.headersSent) {
        res.destroy();
        return;
      }
      // Statuses go out as protobuf too where the client prefers it, except
      // for custom resources, which the server only speaks in JSON.
      const custom = this.resources.find((r) =>
        r.group === info.group && r.resource === info.resource
      )?.custom;
      try {
        respond(ex, err.code, err.body, { protobuf: !custom });
      } catch {
        res.destroy();
      }
    }
  }

  private async readBody(req: IncomingMessage): Promise<Uint8Array> {
    const chunks: Uint8Array[] = [];
    let size = 0;
    for await (const chunk of req) {
      size += chunk.length;
      if (size > this.maxBodyBytes) {
        throw new StatusError(
          413,
          statusBody(
            413,
            "RequestEntityTooLarge",
            `Request entity too large: limit is ${this.maxBodyBytes}`,
          ),
        );
      }
      chunks.push(chunk);
    }
    return new Uint8Array(Buffer.concat(chunks));
  }

  private authenticate(ex: Exchange) {
    const header = ex.req.headers.authorization ?? "";
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m) throw unauthorized();
    const result = this.tokens.authenticate(m[1]);
    if (!result.authenticated) throw unauthorized();
    ex.user = result.user;
    ex.record.user = result.user.username;
  }

  private route(ex: Exchange) {
    const { info } = ex;
    if (!info.isResource) {
      const allowed =
        (ex.req.method === "GET" && PUBLIC_PATHS.has(info.path)) ||
        this.policy.authorize(ex.user, {
          verb: info.verb,
          group: "",
          resource: "",
          path: info.path,
        }).allowed;
      if (!allowed) {
        throw forbidden({
          user: ex.user.username,
          verb: info.verb,
          group: "",
          resource: "",
          path: info.path,
        });
      }
      if (info.path === "/version") {
        return respond(ex, 200, {
          major: "1",
          minor: "34",
          gitVersion: "v1.34.0-fake",
          platform: "linux/amd64",
        });
      }
      if (["/healthz", "/livez", "/readyz"].includes(info.path)) {
        ex.record.status = 200;
        ex.res.writeHead(200, { "Content-Type": "text/plain; charset=utf-8" });
        ex.res.end("ok");
        return;
      }
      throw notFoundPath();
    }
    const decision = this.policy.authorize(ex.user, {
      verb: info.verb,
      group: info.group,
      version: info.version,
      resource: info.resource,
      subresource: info.subresource || undefined,
      namespace: info.namespace || undefined,
      name: info.name || undefined,
    });
    if (!decision.allowed) {
      throw forbidden({
        user: ex.user.username,
        verb: info.verb,
        group: info.group,
        resource: info.resource,
        subresource: info.subresource,
        namespace: info.namespace,
        name: info.name,
        reason: decision.reason,
      });
    }
    const post = ex.req.method === "POST";
    const gv = info.group ? `${info.group}/${info.version}` : info.version;
    if (
      gv === "authentication.k8s.io/v1" && info.resource === "tokenreviews" &&
      post && !info.name
    ) {
      return tokenReview(ex, this.tokens);
    }
    if (
      gv === "authorization.k8s.io/v1" &&
      info.resource === "subjectaccessreviews" && post && !info.name
    ) {
      return subjectAccessReview(ex, this.policy);
    }
    if (
      gv === "v1" && info.resource === "serviceaccounts" &&
      info.subresource === "token"
    ) {
      if (!post) throw notFoundPath();
      return tokenRequest(
        ex,
        this.tokens,
        this.store,
        this.resourceType("v1", "ServiceAccount"),
      );
    }
    const rt = this.resources.find((r) =>
      r.group === info.group && r.version === info.version &&
      r.resource === info.resource
    );
    if (!rt) throw notFoundPath();
    serveResource(ex, rt, {
      store: this.store,
      watches: this.watches,
      bookmarkIntervalMs: this.bookmarkIntervalMs,
    });
  }
}

/** Starts a fake API server on 127.0.0.1 (ephemeral port) with a fresh CA. */
export async function startFakeKube(
  opts: FakeKubeOptions = {},
): Promise<FakeKube> {
  const dir = await Deno.makeTempDir({ prefix: "fake-kube-" });
  try {
    const ca = await makeCertificateAuthority(dir, {
      commonName: "fake-kube-ca",
    });
    const cert = await issueServerCert(ca, {
      name: "apiserver",
      dnsNames: ["localhost", "kubernetes.default.svc"],
      ipAddresses: ["127.0.0.1"],
    });
    const server = createServer({ cert: cert.certPem, key: cert.keyPem });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    const port = (server.address() as { port: number }).port;
    const clock = new Clock();
    const store = new ObjectStore(clock);
    const resources = [...defaultResources, ...(opts.resources ?? [])];
    const saType = resources.find((r) =>
      r.group === "" && r.resource === "serviceaccounts"
    )!;
    const apiAudiences = opts.apiAudiences ?? [DEFAULT_API_AUDIENCE];
    const tokens = new TokenAuthority(
      clock,
      apiAudiences,
      opts.issuer ?? DEFAULT_API_AUDIENCE,
      (ns, name) => store.get(saType, ns, name)?.metadata.uid,
    );
    const policy = opts.policy instanceof Policy
      ? opts.policy
      : new Policy(opts.policy ?? []);
    const kube = new FakeKube(server, dir, {
      url: `https://127.0.0.1:${port}`,
      caPem: ca.certPem,
      caPath: ca.certPath,
      policy,
      clock,
      tokens,
      store,
      resources,
      bookmarkIntervalMs: opts.bookmarkIntervalMs ?? 1000,
      maxBodyBytes: opts.maxBodyBytes ?? 3 * 1024 * 1024,
    });
    for (const sa of opts.serviceAccounts ?? []) {
      kube.addServiceAccount(sa.namespace, sa.name);
    }
    for (const o of opts.objects ?? []) kube.put(o);
    return kube;
  } catch (e) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw e;
  }
}
