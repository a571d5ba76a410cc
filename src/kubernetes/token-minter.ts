/**
 * The gateway's own credentials towards the sidecars: TokenRequest for its
 * ServiceAccount with each SnapshotMetadataService's audience, cached per
 * audience and renewed once 80% of a token's lifetime has passed. Tokens
 * are secrets: they never appear in errors or logs.
 */
import { base64Decode } from "@bufbuild/protobuf/wire";
import { Code, ConnectError } from "@connectrpc/connect";
import { describeApiError, type KubeApi } from "../kube/kube-api.ts";

export interface ServiceAccountRef {
  namespace: string;
  name: string;
}

export interface TokenMinterOptions {
  /** Requested lifetime (default 600 s, the minimum, as upstream asks). */
  expirationSeconds?: number;
  /** Fraction of the lifetime after which a token is renewed (default 0.8). */
  renewAfter?: number;
  now?: () => number;
}

interface Minted {
  token: string;
  renewAt: number;
  expiresAt: number;
}

export class TokenMinter {
  readonly #cache = new Map<string, Minted>();
  readonly #pending = new Map<string, Promise<Minted>>();
  readonly #expirationSeconds: number;
  readonly #renewAfter: number;
  readonly #now: () => number;
  /** TokenRequests made (for tests: caching must keep this low). */
  requests = 0;

  constructor(
    private readonly api: KubeApi,
    readonly serviceAccount: ServiceAccountRef,
    options: TokenMinterOptions = {},
  ) {
    this.#expirationSeconds = options.expirationSeconds ?? 600;
    this.#renewAfter = options.renewAfter ?? 0.8;
    this.#now = options.now ?? Date.now;
  }

  /** A valid token for `audience`, minted or cached. */
  async token(audience: string): Promise<string> {
    const cached = this.#cache.get(audience);
    if (cached && this.#now() < cached.renewAt) return cached.token;
    let pending = this.#pending.get(audience);
    if (!pending) {
      pending = this.#mint(audience).finally(() =>
        this.#pending.delete(audience)
      );
      this.#pending.set(audience, pending);
    }
    try {
      return (await pending).token;
    } catch (err) {
      // A still-valid older token beats failing the stream.
      if (cached && this.#now() < cached.expiresAt) return cached.token;
      throw err;
    }
  }

  async #mint(audience: string): Promise<Minted> {
    const { namespace, name } = this.serviceAccount;
    const issuedAt = this.#now();
    this.requests++;
    let answer;
    try {
      answer = await this.api.createServiceAccountToken(
        namespace,
        name,
        [audience],
        this.#expirationSeconds,
      );
    } catch (err) {
      throw new ConnectError(
        `could not mint a token for ServiceAccount ${namespace}/${name} ` +
          `with audience ${JSON.stringify(audience)}: ${describeApiError(err)}`,
        Code.Unavailable,
      );
    }
    const lifetime = Math.max(0, answer.expiresAt - issuedAt);
    const minted = {
      token: answer.token,
      expiresAt: answer.expiresAt,
      renewAt: issuedAt + lifetime * this.#renewAfter,
    };
    this.#cache.set(audience, minted);
    return minted;
  }
}

/** Where a pod's ServiceAccount token is mounted. */
export const SERVICE_ACCOUNT_TOKEN_PATH =
  "/var/run/secrets/kubernetes.io/serviceaccount/token";

/**
 * The pod's own ServiceAccount, from the claims of its mounted token (the
 * name is in no other file). Undefined for no token or one without them.
 */
export function serviceAccountOfToken(
  token: string | undefined,
): ServiceAccountRef | undefined {
  if (token === undefined) return undefined;
  try {
    const claims = JSON.parse(
      new TextDecoder().decode(base64Decode(token.trim().split(".")[1] ?? "")),
    );
    const k = claims["kubernetes.io"];
    if (k?.namespace && k?.serviceaccount?.name) {
      return { namespace: k.namespace, name: k.serviceaccount.name };
    }
    const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(claims.sub ?? "");
    return m ? { namespace: m[1], name: m[2] } : undefined;
  } catch {
    return undefined;
  }
}
