/**
 * Bearer tokens of the fake API server: ServiceAccount tokens (HS256 JWTs
 * with the claims the real issuer writes, as from TokenRequest) and opaque
 * user tokens (like a static token file), checked against a controllable
 * clock. Used both to authenticate requests and to answer TokenReviews.
 */
import { Buffer } from "node:buffer";
import { createHmac, randomUUID, timingSafeEqual } from "node:crypto";

export interface UserInfo {
  username: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

/** A clock the tests can move: real time plus an offset. */
export class Clock {
  private offsetMs = 0;
  now(): number {
    return Date.now() + this.offsetMs;
  }
  advance(ms: number) {
    this.offsetMs += ms;
  }
  set(epochMs: number) {
    this.offsetMs = epochMs - Date.now();
  }
}

export interface ServiceAccountRef {
  namespace: string;
  name: string;
  uid: string;
}

export interface UserTokenOptions {
  /** The token string; random when omitted. */
  token?: string;
  /**
   * Audiences the token is valid for. Omitted: audience-agnostic, like the
   * real static-token authenticator, which the API server only accepts for
   * its own audiences.
   */
  audiences?: string[];
  /** Epoch ms after which the token is rejected. */
  expiresAt?: number;
}

export type AuthResult =
  | { authenticated: true; user: UserInfo; audiences: string[] }
  | { authenticated: false; error: string };

interface UserToken {
  user: UserInfo;
  audiences?: string[];
  expiresAt?: number;
}

const b64url = (data: string | Uint8Array) =>
  Buffer.from(data).toString("base64url");

const AUTHENTICATED = "system:authenticated";

function quoteList(list: string[]): string {
  return `[${list.map((a) => JSON.stringify(a)).join(" ")}]`;
}

export class TokenAuthority {
  private readonly key: Uint8Array;
  private readonly userTokens = new Map<string, UserToken>();
  private readonly revoked = new Set<string>();

  constructor(
    readonly clock: Clock,
    /** The API server's own audiences (--api-audiences). */
    readonly apiAudiences: string[],
    readonly issuer: string,
    /** Looks up a ServiceAccount's current uid (undefined if deleted). */
    private readonly serviceAccountUid: (
      namespace: string,
      name: string,
    ) => string | undefined,
  ) {
    this.key = crypto.getRandomValues(new Uint8Array(32));
  }

  /** Registers an opaque user token and returns it. */
  addUserToken(user: UserInfo, opts: UserTokenOptions = {}): string {
    const token = opts.token ??
      `user-${b64url(crypto.getRandomValues(new Uint8Array(18)))}`;
    this.userTokens.set(token, {
      user,
      audiences: opts.audiences,
      expiresAt: opts.expiresAt,
    });
    return token;
  }

  /** Makes any token (user or ServiceAccount) invalid from now on. */
  revoke(token: string) {
    this.userTokens.delete(token);
    this.revoked.add(token);
  }

  /** Signs a ServiceAccount token, as TokenRequest does. */
  issueServiceAccountToken(
    sa: ServiceAccountRef,
    audiences: string[],
    expirationSeconds: number,
  ): { token: string; expiresAt: number; jti: string } {
    const nowS = Math.floor(this.clock.now() / 1000);
    const jti = randomUUID();
    const claims = {
      aud: audiences,
      exp: nowS + expirationSeconds,
      iat: nowS,
      iss: this.issuer,
      jti,
      "kubernetes.io": {
        namespace: sa.namespace,
        serviceaccount: { name: sa.name, uid: sa.uid },
      },
      nbf: nowS,
      sub: `system:serviceaccount:${sa.namespace}:${sa.name}`,
    };
    const head = b64url(JSON.stringify({ alg: "HS256", kid: "fake-kube" }));
    const body = b64url(JSON.stringify(claims));
    const token = `${head}.${body}.${this.sign(`${head}.${body}`)}`;
    return { token, expiresAt: (nowS + expirationSeconds) * 1000, jti };
  }

  private sign(input: string): string {
    return createHmac("sha256", this.key).update(input).digest("base64url");
  }

  /**
   * Authenticates `token` for `audiences` (the API server's own when
   * empty), as the TokenReview API and request authentication do.
   */
  authenticate(token: string, audiences: string[] = []): AuthResult {
    const wanted = audiences.length ? audiences : this.apiAudiences;
    if (this.revoked.has(token)) {
      return { authenticated: false, error: "invalid bearer token" };
    }
    const fail = (why: string): AuthResult => ({
      authenticated: false,
      error: `[invalid bearer token, ${why}]`,
    });
    const nowMs = this.clock.now();
    const user = this.userTokens.get(token);
    if (user) {
      if (user.expiresAt !== undefined && nowMs >= user.expiresAt) {
        return fail("token has expired");
      }
      const tokenAudiences = user.audiences ?? this.apiAudiences;
      const matched = wanted.filter((a) => tokenAudiences.includes(a));
      if (!matched.length) {
        return fail(
          `token audiences ${
            quoteList(tokenAudiences)
          } is invalid for the target audiences ${quoteList(wanted)}`,
        );
      }
      const groups = user.user.groups ?? [];
      return {
        authenticated: true,
        user: {
          ...user.user,
          groups: groups.includes(AUTHENTICATED)
            ? groups
            : [...groups, AUTHENTICATED],
        },
        audiences: matched,
      };
    }
    const parts = token.split(".");
    if (parts.length !== 3) {
      return { authenticated: false, error: "invalid bearer token" };
    }
    const expected = Buffer.from(this.sign(`${parts[0]}.${parts[1]}`));
    const given = Buffer.from(parts[2]);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
      return fail("square/go-jose: error in cryptographic primitive");
    }
    // deno-lint-ignore no-explicit-any
    let claims: any;
    try {
      claims = JSON.parse(Buffer.from(parts[1], "base64url").toString());
    } catch {
      return fail("malformed token claims");
    }
    const nowS = nowMs / 1000;
    if (nowS >= claims.exp) return fail("service account token has expired");
    if (nowS < claims.nbf) {
      return fail("service account token is not valid yet");
    }
    const tokenAudiences: string[] = claims.aud ?? [];
    const matched = wanted.filter((a) => tokenAudiences.includes(a));
    if (!matched.length) {
      return fail(
        `token audiences ${
          quoteList(tokenAudiences)
        } is invalid for the target audiences ${quoteList(wanted)}`,
      );
    }
    const k = claims["kubernetes.io"];
    const ns: string = k.namespace;
    const sa = k.serviceaccount;
    if (this.serviceAccountUid(ns, sa.name) !== sa.uid) {
      return fail(`service account ${ns}/${sa.name} has been deleted`);
    }
    return {
      authenticated: true,
      user: {
        username: `system:serviceaccount:${ns}:${sa.name}`,
        uid: sa.uid,
        groups: [
          "system:serviceaccounts",
          `system:serviceaccounts:${ns}`,
          AUTHENTICATED,
        ],
        extra: {
          "authentication.kubernetes.io/credential-id": [`JTI=${claims.jti}`],
        },
      },
      audiences: matched,
    };
  }
}
