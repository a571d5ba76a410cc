/**
 * metav1.Status failure bodies with the messages, reasons and details the
 * real API server writes (k8s.io/apimachinery/pkg/api/errors), and the
 * error type the fake throws to answer with one.
 */
import type { JsonObject } from "../k8s-protobuf.ts";

export interface StatusCause {
  reason?: string;
  message?: string;
  field?: string;
}

export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  causes?: StatusCause[];
  retryAfterSeconds?: number;
}

export function statusBody(
  code: number,
  reason: string,
  message: string,
  details?: StatusDetails,
): JsonObject {
  const body: JsonObject = {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message,
    reason,
  };
  if (details) {
    // Go's omitempty: empty strings are left out.
    const d: JsonObject = {};
    if (details.name) d.name = details.name;
    if (details.group) d.group = details.group;
    if (details.kind) d.kind = details.kind;
    if (details.causes?.length) d.causes = details.causes;
    if (details.retryAfterSeconds) {
      d.retryAfterSeconds = details.retryAfterSeconds;
    }
    body.details = d;
  }
  body.code = code;
  return body;
}

/** A failure the server answers with a Status body (and HTTP `code`). */
export class StatusError extends Error {
  constructor(readonly code: number, readonly body: JsonObject) {
    super(body.message as string);
  }
}

/** `volumesnapshots.snapshot.storage.k8s.io` (just `serviceaccounts` for core). */
export function qualifiedResource(group: string, resource: string): string {
  return group ? `${resource}.${group}` : resource;
}

export function notFound(
  group: string,
  resource: string,
  name: string,
): StatusError {
  return new StatusError(
    404,
    statusBody(
      404,
      "NotFound",
      `${qualifiedResource(group, resource)} "${name}" not found`,
      { name, group, kind: resource },
    ),
  );
}

export function alreadyExists(
  group: string,
  resource: string,
  name: string,
): StatusError {
  return new StatusError(
    409,
    statusBody(
      409,
      "AlreadyExists",
      `${qualifiedResource(group, resource)} "${name}" already exists`,
      { name, group, kind: resource },
    ),
  );
}

/** Optimistic-concurrency failure (stale metadata.resourceVersion). */
export function conflict(
  group: string,
  resource: string,
  name: string,
): StatusError {
  const message = `Operation cannot be fulfilled on ${
    qualifiedResource(group, resource)
  } "${name}": the object has been modified; please apply your changes to the latest version and try again`;
  return new StatusError(
    409,
    statusBody(409, "Conflict", message, { name, group, kind: resource }),
  );
}

export function unauthorized(): StatusError {
  return new StatusError(401, statusBody(401, "Unauthorized", "Unauthorized"));
}

export interface ForbiddenAttributes {
  user: string;
  verb: string;
  group: string;
  resource: string;
  subresource?: string;
  namespace?: string;
  name?: string;
  /** For non-resource requests. */
  path?: string;
  /** The authorizer's reason, appended after ": " when non-empty. */
  reason?: string;
}

/** The apiserver's forbidden message (endpoints/handlers/responsewriters). */
export function forbidden(a: ForbiddenAttributes): StatusError {
  let why: string;
  if (a.path !== undefined) {
    why = `User "${a.user}" cannot ${a.verb} path "${a.path}"`;
  } else {
    const res = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
    why =
      `User "${a.user}" cannot ${a.verb} resource "${res}" in API group "${a.group}"` +
      (a.namespace
        ? ` in the namespace "${a.namespace}"`
        : " at the cluster scope");
  }
  if (a.reason) why += `: ${a.reason}`;
  const qr = a.path !== undefined ? "" : qualifiedResource(a.group, a.resource);
  const message = qr === ""
    ? `forbidden: ${why}`
    : a.name
    ? `${qr} "${a.name}" is forbidden: ${why}`
    : `${qr} is forbidden: ${why}`;
  return new StatusError(
    403,
    statusBody(403, "Forbidden", message, {
      name: a.name,
      group: a.group,
      kind: a.path !== undefined ? undefined : a.resource,
    }),
  );
}

/** 410 for a watch or list from a compacted resourceVersion. */
export function expired(message: string): StatusError {
  return new StatusError(410, statusBody(410, "Expired", message));
}

export function badRequest(message: string): StatusError {
  return new StatusError(400, statusBody(400, "BadRequest", message));
}

export function methodNotAllowed(): StatusError {
  return new StatusError(
    405,
    statusBody(
      405,
      "MethodNotAllowed",
      "the server does not allow this method on the requested resource",
    ),
  );
}

export function unsupportedMediaType(accepted: string[]): StatusError {
  return new StatusError(
    415,
    statusBody(
      415,
      "UnsupportedMediaType",
      `the body of the request was in an unknown format - accepted media types include: ${
        accepted.join(", ")
      }`,
    ),
  );
}

export function notAcceptable(accepted: string[]): StatusError {
  return new StatusError(
    406,
    statusBody(
      406,
      "NotAcceptable",
      `only the following media types are accepted: ${accepted.join(", ")}`,
    ),
  );
}

/**
 * 422 Invalid for one field (`kind` is the Kind, e.g. "VolumeSnapshot";
 * `causeReason` e.g. "FieldValueRequired", `detail` the field error text).
 */
export function invalid(
  group: string,
  kind: string,
  name: string,
  field: string,
  causeReason: string,
  detail: string,
): StatusError {
  const qk = group ? `${kind}.${group}` : kind;
  const fieldError = `${field}: ${detail}`;
  return new StatusError(
    422,
    statusBody(422, "Invalid", `${qk} "${name}" is invalid: ${fieldError}`, {
      name,
      group,
      kind,
      causes: [{ reason: causeReason, message: detail, field }],
    }),
  );
}

export function notFoundPath(): StatusError {
  return new StatusError(
    404,
    statusBody(
      404,
      "NotFound",
      "the server could not find the requested resource",
      {},
    ),
  );
}
