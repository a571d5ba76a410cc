/**
 * The auth stage of the data path: who is calling, and may they read the
 * snapshots of a namespace. Each `--auth` mode is one implementation.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Caller } from "../backend/backend.ts";

export interface AuthRequest {
  /** Request headers as the front received them (Authorization, …). */
  headers: Headers;
  /** The `security_token` field of the request message ("" when absent). */
  securityToken: string;
  signal: AbortSignal;
}

export interface Authenticator {
  /** Mode name as given to `--auth`. */
  readonly mode: string;
  /**
   * Establishes the caller. Throws ConnectError Unauthenticated for a missing
   * or rejected credential, Internal when the check itself failed.
   */
  authenticate(request: AuthRequest): Promise<Caller>;
  /**
   * Checks that the caller may read VolumeSnapshots in `namespace`. Throws
   * ConnectError PermissionDenied when not.
   */
  authorize(
    caller: Caller,
    namespace: string,
    signal: AbortSignal,
  ): Promise<void>;
}

/**
 * `--auth none`: everyone is "anonymous" and may read everything. Only
 * allowed on a loopback listener (see config.ts).
 */
export class NoAuth implements Authenticator {
  readonly mode = "none";
  authenticate(): Promise<Caller> {
    return Promise.resolve({ username: "anonymous" });
  }
  authorize(): Promise<void> {
    return Promise.resolve();
  }
}

/** Reads `Authorization: Bearer <token>`; undefined when absent. */
export function bearerToken(headers: Headers): string | undefined {
  const value = headers.get("authorization");
  if (!value) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(value);
  if (!match) {
    throw new ConnectError(
      "Authorization header is not of the form 'Bearer <token>'",
      Code.Unauthenticated,
    );
  }
  return match[1];
}
