/**
 * `--auth kubernetes`: the caller presents `Authorization: Bearer <token>`
 * (any token the API server accepts). TokenReview establishes who they are,
 * then a SubjectAccessReview asks whether that user may `get`
 * volumesnapshots in the request's namespace — the same checks the sidecar
 * makes (spec §5), made before anything reaches it. The caller's token
 * stays here: upstream gets the gateway's own token.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import {
  describeApiError,
  type KubeApi,
  type ReviewedUser,
} from "../kube/kube-api.ts";
import type { Caller } from "../backend/backend.ts";
import {
  type Authenticator,
  type AuthRequest,
  bearerToken,
} from "./authenticator.ts";
import { ReviewCache } from "./kubernetes-review-cache.ts";

export interface KubernetesAuthOptions {
  /** TokenReview audiences; empty = the API server's own. */
  audiences?: string[];
  /** How long answers are reused (default 10 s). */
  cacheTtlMs?: number;
  /** Most answers kept (default 1000 of each kind). */
  cacheEntries?: number;
}

async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(text),
  );
  return Array.from(
    new Uint8Array(digest),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
}

export class KubernetesAuth implements Authenticator {
  readonly mode = "kubernetes";
  readonly #api: KubeApi;
  readonly #audiences: string[];
  readonly #users: ReviewCache<ReviewedUser>;
  readonly #decisions: ReviewCache<boolean>;

  constructor(api: KubeApi, options: KubernetesAuthOptions = {}) {
    this.#api = api;
    this.#audiences = options.audiences ?? [];
    const ttl = options.cacheTtlMs ?? 10_000;
    const size = options.cacheEntries ?? 1000;
    this.#users = new ReviewCache(ttl, size);
    this.#decisions = new ReviewCache(ttl, size);
  }

  async authenticate(request: AuthRequest): Promise<Caller> {
    const token = bearerToken(request.headers);
    if (token === undefined) {
      throw new ConnectError(
        "missing credentials: send 'Authorization: Bearer <token>' with a " +
          "token the Kubernetes API server accepts",
        Code.Unauthenticated,
      );
    }
    // Keyed by a hash so the cache never holds the token itself.
    const key = await sha256(token);
    const cached = this.#users.get(key);
    if (cached) return { ...cached };
    let review;
    try {
      review = await this.#api.reviewToken(token, this.#audiences);
    } catch (err) {
      throw new ConnectError(
        `TokenReview failed: ${describeApiError(err)}`,
        Code.Internal,
      );
    }
    if (!review.authenticated) {
      throw new ConnectError(
        `bearer token rejected by TokenReview: ${review.error}`,
        Code.Unauthenticated,
      );
    }
    if (
      this.#audiences.length &&
      !review.audiences.some((a) => this.#audiences.includes(a))
    ) {
      throw new ConnectError(
        `bearer token is not valid for audiences ${this.#audiences.join(", ")}`,
        Code.Unauthenticated,
      );
    }
    this.#users.set(key, review.user);
    return { ...review.user };
  }

  async authorize(
    caller: Caller,
    namespace: string,
    _signal?: AbortSignal,
  ): Promise<void> {
    const key = JSON.stringify([
      caller.username,
      caller.uid ?? "",
      caller.groups ?? [],
      caller.extra ?? {},
      namespace,
    ]);
    let allowed = this.#decisions.get(key);
    if (allowed === undefined) {
      let decision;
      try {
        decision = await this.#api.mayReadSnapshots(caller, namespace);
      } catch (err) {
        throw new ConnectError(
          `SubjectAccessReview failed: ${describeApiError(err)}`,
          Code.Internal,
        );
      }
      allowed = decision.allowed;
      this.#decisions.set(key, allowed);
    }
    if (!allowed) {
      throw new ConnectError(
        `${caller.username} may not get volumesnapshots.snapshot.storage.k8s.io ` +
          `in namespace ${namespace}`,
        Code.PermissionDenied,
      );
    }
  }
}
