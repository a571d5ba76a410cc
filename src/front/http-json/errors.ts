/**
 * Errors before a stream starts: an HTTP status and a JSON body
 * `{"code": "<connect code name>", "message": "…"}`. Status and names come
 * from connect-es, so every surface of the gateway agrees on them.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import {
  codeToHttpStatus,
  codeToString,
} from "@connectrpc/connect/protocol-connect";

/** Any thrown value as a ConnectError (unexpected ones become Internal). */
export function asConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  return ConnectError.from(err, Code.Internal);
}

/** The JSON error body's fields for a ConnectError. */
export function errorFields(
  err: ConnectError,
): { code: string; message: string } {
  return { code: codeToString(err.code), message: err.rawMessage };
}

/** A JSON error response; `status` overrides the code's usual HTTP status. */
export function errorResponse(
  err: unknown,
  status?: number,
  headers: Record<string, string> = {},
): Response {
  const e = asConnectError(err);
  const h = new Headers({ "cache-control": "no-store", ...headers });
  if (e.code === Code.Unauthenticated) {
    h.set("www-authenticate", 'Bearer realm="cbt-gateway"');
  }
  // A limit says when to come back (429 Too Many Requests + Retry-After).
  const retryAfter = e.metadata.get("retry-after");
  if (retryAfter !== null) h.set("retry-after", retryAfter);
  return Response.json(errorFields(e), {
    status: status ?? codeToHttpStatus(e.code),
    headers: h,
  });
}

/** Shorthand for a 400 InvalidArgument. */
export function invalidArgument(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}
