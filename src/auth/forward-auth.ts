/**
 * `--auth forward`: the tier behind decides. Nothing is checked here; the
 * caller's `Authorization: Bearer` token goes on with every upstream call
 * (`Caller.bearerToken`), so an in-cluster gateway authenticates and
 * authorizes the caller exactly as if called directly, and its refusals
 * come back with their codes. For an edge tier in front of a gateway.
 */
import type { Caller } from "../backend/backend.ts";
import {
  type Authenticator,
  type AuthRequest,
  bearerToken,
} from "./authenticator.ts";

export class ForwardAuth implements Authenticator {
  readonly mode = "forward";

  authenticate(request: AuthRequest): Promise<Caller> {
    try {
      const token = bearerToken(request.headers);
      return Promise.resolve(
        token === undefined
          ? { username: "anonymous" }
          : { username: "forwarded", bearerToken: token },
      );
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** The upstream tier authorizes every call itself. */
  authorize(): Promise<void> {
    return Promise.resolve();
  }
}
