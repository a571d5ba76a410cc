/**
 * HTTP/JSON requests have no `security_token` field. With `--auth passthrough`
 * the gateway forwards the caller's own audience-scoped token to the sidecar,
 * and over plain HTTP the only place for it is `Authorization: Bearer`; in
 * every other mode the field stays empty, so no caller token travels upstream.
 */
import { type Authenticator, bearerToken } from "../../auth/authenticator.ts";

export function securityTokenFrom(
  auth: Authenticator,
  headers: Headers,
): string {
  return auth.mode === "passthrough" ? bearerToken(headers) ?? "" : "";
}
