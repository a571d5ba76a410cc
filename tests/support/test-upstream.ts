/**
 * A stand-in for a CSI driver's snapshot-metadata sidecar: the embedded
 * store served as native gRPC over TLS (its own CA), checking each
 * request's `security_token` the way the real sidecar does (spec §5):
 * TokenReview with its audience (authenticated, audience echoed), then a
 * SubjectAccessReview for `get volumesnapshots` in the request namespace,
 * both against the fake API server with the sidecar's own ServiceAccount
 * token. Written independently of the gateway's auth code on purpose.
 *
 * Every request that reaches it is logged (`calls`), so tests can prove that
 * refused requests never got this far.
 */
import { request as httpsRequest } from "node:https";
import { Code, ConnectError } from "@connectrpc/connect";
import type {
  Authenticator,
  AuthRequest,
} from "../../src/auth/authenticator.ts";
import { type RunningGateway, startGateway } from "../../src/server/start.ts";
import { NodeFileSnapshotStore } from "../../src/adapter/node-fs/file-store.ts";
import type { Caller } from "../../src/backend/backend.ts";
import { issueServerCert, makeCertificateAuthority } from "./certs.ts";
import type { FakeKube } from "./fake-kube/server.ts";

export interface UpstreamCall {
  /** The security_token as received (the gateway's minted token). */
  securityToken: string;
  /** Who TokenReview said the token belongs to (undefined if rejected). */
  user?: string;
  /** The audiences TokenReview confirmed. */
  audiences?: string[];
  outcome: "ok" | "unauthenticated" | "denied";
}

export interface TestUpstream {
  /** `127.0.0.1:<port>`, as a SnapshotMetadataService's spec.address. */
  address: string;
  caPem: string;
  audience: string;
  calls: UpstreamCall[];
  close(): Promise<void>;
}

export interface TestUpstreamOptions {
  kube: FakeKube;
  dataDir: string;
  audience: string;
  /** The sidecar's ServiceAccount (default csi-driver/csi-snapshot-metadata). */
  serviceAccount?: { namespace: string; name: string };
}

/** POSTs a JSON object to the fake API server; returns the parsed answer. */
function postJson(
  kube: FakeKube,
  token: string,
  path: string,
  body: unknown,
): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = httpsRequest(kube.url + path, {
      method: "POST",
      ca: kube.caPem,
      headers: {
        authorization: `Bearer ${token}`,
        "content-type": "application/json",
        accept: "application/json",
      },
    }, (res) => {
      const chunks: Uint8Array[] = [];
      res.on("data", (c: Uint8Array) => chunks.push(c));
      res.on("end", () => {
        try {
          const text = new TextDecoder().decode(
            new Uint8Array(chunks.flatMap((c) => [...c])),
          );
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) });
        } catch (e) {
          reject(e);
        }
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(data);
  });
}

/** The sidecar's checks, in its order. */
class SidecarAuth implements Authenticator {
  readonly mode = "test-sidecar";
  constructor(
    private readonly kube: FakeKube,
    private readonly ownToken: () => string,
    private readonly audience: string,
    private readonly calls: UpstreamCall[],
  ) {}

  async authenticate(request: AuthRequest): Promise<Caller> {
    const call: UpstreamCall = {
      securityToken: request.securityToken,
      outcome: "unauthenticated",
    };
    this.calls.push(call);
    const review = await postJson(
      this.kube,
      this.ownToken(),
      "/apis/authentication.k8s.io/v1/tokenreviews",
      {
        apiVersion: "authentication.k8s.io/v1",
        kind: "TokenReview",
        spec: { token: request.securityToken, audiences: [this.audience] },
      },
    );
    if (review.status !== 201) {
      throw new ConnectError(
        `TokenReview: HTTP ${review.status}`,
        Code.Internal,
      );
    }
    // deno-lint-ignore no-explicit-any
    const status = review.body.status as any;
    if (!status?.authenticated || !status.audiences?.includes(this.audience)) {
      throw new ConnectError("unauthenticated", Code.Unauthenticated);
    }
    call.user = status.user.username;
    call.audiences = status.audiences;
    return {
      username: status.user.username,
      uid: status.user.uid,
      groups: status.user.groups,
      extra: status.user.extra,
    };
  }

  async authorize(caller: Caller, namespace: string): Promise<void> {
    const sar = await postJson(
      this.kube,
      this.ownToken(),
      "/apis/authorization.k8s.io/v1/subjectaccessreviews",
      {
        apiVersion: "authorization.k8s.io/v1",
        kind: "SubjectAccessReview",
        spec: {
          user: caller.username,
          uid: caller.uid,
          groups: caller.groups,
          extra: caller.extra,
          resourceAttributes: {
            verb: "get",
            group: "snapshot.storage.k8s.io",
            version: "v1",
            resource: "volumesnapshots",
            namespace,
          },
        },
      },
    );
    const call = this.calls.findLast((c) => c.user === caller.username);
    // deno-lint-ignore no-explicit-any
    if ((sar.body.status as any)?.allowed !== true) {
      if (call) call.outcome = "denied";
      throw new ConnectError("permission denied", Code.PermissionDenied);
    }
    if (call) call.outcome = "ok";
  }
}

/** Starts a TLS sidecar stand-in with a fresh CA. */
export async function startTestUpstream(
  options: TestUpstreamOptions,
): Promise<TestUpstream> {
  const { kube, audience } = options;
  const sa = options.serviceAccount ??
    { namespace: "csi-driver", name: "csi-snapshot-metadata" };
  const pki = await Deno.makeTempDir({ prefix: "cbt-upstream-pki-" });
  let running: RunningGateway | undefined;
  try {
    const ca = await makeCertificateAuthority(pki, {
      commonName: `sidecar-ca-${audience}`,
    });
    const cert = await issueServerCert(ca, {
      name: "sidecar",
      dnsNames: ["localhost"],
      ipAddresses: ["127.0.0.1"],
    });
    // The sidecar's RBAC, as its chart grants it.
    const user = `system:serviceaccount:${sa.namespace}:${sa.name}`;
    kube.policy.allow({
      name: `sidecar-${audience}`,
      users: [user],
      verbs: ["create"],
      apiGroups: ["authentication.k8s.io", "authorization.k8s.io"],
      resources: ["tokenreviews", "subjectaccessreviews"],
    });
    let own = kube.serviceAccountToken(sa.namespace, sa.name);
    const calls: UpstreamCall[] = [];
    const store = new NodeFileSnapshotStore({ dataDir: options.dataDir });
    running = await startGateway({
      host: "127.0.0.1",
      port: 0,
      grpcPort: 0,
      corsOrigins: [],
      tlsCert: cert.certPath,
      tlsKey: cert.keyPath,
    }, {
      backend: store,
      auth: new SidecarAuth(kube, () => own, audience, calls),
    });
    const port = new URL(running.grpcUrl).port;
    const r = running;
    return {
      address: `127.0.0.1:${port}`,
      caPem: ca.certPem,
      audience,
      calls,
      async close() {
        own = "";
        await r.close();
        await Deno.remove(pki, { recursive: true }).catch(() => {});
      },
    };
  } catch (e) {
    await running?.close();
    await Deno.remove(pki, { recursive: true }).catch(() => {});
    throw e;
  }
}
