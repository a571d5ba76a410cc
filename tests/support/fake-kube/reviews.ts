/**
 * The authentication/authorization APIs: TokenReview, SubjectAccessReview
 * (JSON or protobuf in and out) and TokenRequest (the serviceaccounts/token
 * subresource), answered from the fake's tokens and policy.
 */
import { type JsonObject, normalizeK8sJson } from "../k8s-protobuf.ts";
import { type Exchange, readObject, respond } from "./exchange.ts";
import type { Policy, RequestAttributes } from "./policy.ts";
import type { ResourceType } from "./resources.ts";
import { badRequest, invalid, notFound } from "./status.ts";
import { type ObjectStore, rfc3339 } from "./store.ts";
import type { TokenAuthority } from "./tokens.ts";

function expectKind(obj: JsonObject, apiVersion: string, kind: string) {
  if (obj.kind !== kind || obj.apiVersion !== apiVersion) {
    throw badRequest(
      `the object provided is of kind ${obj.apiVersion}, Kind=${obj.kind}; expected ${apiVersion}, Kind=${kind}`,
    );
  }
}

export function tokenReview(ex: Exchange, tokens: TokenAuthority) {
  const review = readObject(ex, { protobuf: true });
  ex.record.body = review;
  expectKind(review, "authentication.k8s.io/v1", "TokenReview");
  const spec = review.spec ?? {};
  if (!spec.token) {
    throw badRequest("token is required for TokenReview in authentication");
  }
  const result = tokens.authenticate(spec.token, spec.audiences ?? []);
  const status = result.authenticated
    ? {
      authenticated: true,
      user: result.user,
      audiences: result.audiences,
    }
    : { user: {}, error: result.error };
  respond(
    ex,
    201,
    normalizeK8sJson({
      kind: "TokenReview",
      apiVersion: "authentication.k8s.io/v1",
      metadata: {},
      spec,
      status,
    }),
    { protobuf: true },
  );
}

export function subjectAccessReview(ex: Exchange, policy: Policy) {
  const review = readObject(ex, { protobuf: true });
  ex.record.body = review;
  expectKind(review, "authorization.k8s.io/v1", "SubjectAccessReview");
  const spec = review.spec ?? {};
  const ra = spec.resourceAttributes;
  const nra = spec.nonResourceAttributes;
  if (!!ra === !!nra) {
    throw invalid(
      "authorization.k8s.io",
      "SubjectAccessReview",
      "",
      "spec.resourceAttributes",
      "FieldValueInvalid",
      `Invalid value: ${
        JSON.stringify(ra ?? null)
      }: exactly one of nonResourceAttributes or resourceAttributes must be specified`,
    );
  }
  if (!spec.user && !(spec.groups ?? []).length) {
    throw invalid(
      "authorization.k8s.io",
      "SubjectAccessReview",
      "",
      "spec.user",
      "FieldValueInvalid",
      `Invalid value: "": at least one of user or group must be specified`,
    );
  }
  const attrs: RequestAttributes = ra
    ? {
      verb: ra.verb ?? "",
      group: ra.group ?? "",
      version: ra.version,
      resource: ra.resource ?? "",
      subresource: ra.subresource || undefined,
      namespace: ra.namespace || undefined,
      name: ra.name || undefined,
    }
    : { verb: nra.verb ?? "", group: "", resource: "", path: nra.path ?? "" };
  const d = policy.authorize({
    username: spec.user ?? "",
    uid: spec.uid,
    groups: spec.groups ?? [],
    extra: spec.extra,
  }, attrs);
  respond(
    ex,
    201,
    normalizeK8sJson({
      kind: "SubjectAccessReview",
      apiVersion: "authorization.k8s.io/v1",
      metadata: {},
      spec,
      status: { allowed: d.allowed, denied: d.denied, reason: d.reason },
    }),
    { protobuf: true },
  );
}

/** Shortest and longest lifetimes the real TokenRequest validation allows. */
const MIN_EXPIRATION_SECONDS = 600;
const MAX_EXPIRATION_SECONDS = 2 ** 32;

export function tokenRequest(
  ex: Exchange,
  tokens: TokenAuthority,
  store: ObjectStore,
  serviceAccounts: ResourceType,
) {
  const { namespace, name } = ex.info;
  const request = readObject(ex);
  ex.record.body = request;
  const sa = store.get(serviceAccounts, namespace, name);
  if (!sa) throw notFound("", "serviceaccounts", name);
  const spec = request.spec ?? {};
  const expirationSeconds: number = spec.expirationSeconds ?? 3600;
  const tooShort = expirationSeconds < MIN_EXPIRATION_SECONDS;
  if (tooShort || expirationSeconds > MAX_EXPIRATION_SECONDS) {
    throw invalid(
      "authentication.k8s.io",
      "TokenRequest",
      name,
      "spec.expirationSeconds",
      "FieldValueInvalid",
      `Invalid value: ${expirationSeconds}: ${
        tooShort
          ? "may not specify a duration less than 10 minutes"
          : "may not specify a duration larger than 2^32 seconds"
      }`,
    );
  }
  const audiences: string[] = spec.audiences?.length
    ? spec.audiences
    : tokens.apiAudiences;
  const issued = tokens.issueServiceAccountToken(
    { namespace, name, uid: sa.metadata.uid },
    audiences,
    expirationSeconds,
  );
  respond(ex, 201, {
    kind: "TokenRequest",
    apiVersion: "authentication.k8s.io/v1",
    metadata: {
      name,
      namespace,
      creationTimestamp: rfc3339(tokens.clock.now()),
    },
    spec: {
      audiences,
      expirationSeconds,
      boundObjectRef: spec.boundObjectRef ?? null,
    },
    status: {
      token: issued.token,
      expirationTimestamp: rfc3339(issued.expiresAt),
    },
  });
}
