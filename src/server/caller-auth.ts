/**
 * `--auth` → the caller Authenticator, the one place every backend's
 * composition gets it from. Kubernetes auth is built by the caller's
 * `kubernetes` function, so the embedded default never loads client-node.
 */
import type { AuthMode } from "../config.ts";
import { type Authenticator, NoAuth } from "../auth/authenticator.ts";
import { ForwardAuth } from "../auth/forward-auth.ts";
import { PassthroughAuth } from "../auth/passthrough-auth.ts";

export function callerAuth(
  mode: AuthMode,
  kubernetes: () => Authenticator,
): Authenticator {
  switch (mode) {
    case "none":
      return new NoAuth();
    case "passthrough":
      return new PassthroughAuth();
    case "forward":
      return new ForwardAuth();
    case "kubernetes":
      return kubernetes();
  }
}
