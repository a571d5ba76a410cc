/**
 * `--auth passthrough`: the caller supplies an audience-scoped token in
 * `security_token`, as upstream clients do; the gateway forwards it
 * untouched and the sidecar decides (TokenReview + SubjectAccessReview on
 * its side). The gateway only insists the field is there.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Caller } from "../backend/backend.ts";
import type { Authenticator, AuthRequest } from "./authenticator.ts";

export class PassthroughAuth implements Authenticator {
  readonly mode = "passthrough";

  authenticate(request: AuthRequest): Promise<Caller> {
    if (request.securityToken === "") {
      return Promise.reject(
        new ConnectError(
          "security_token is required: pass a ServiceAccount token for the " +
            "driver's audience, as for the sidecar itself",
          Code.InvalidArgument,
        ),
      );
    }
    return Promise.resolve({ username: "passthrough" });
  }

  /** The sidecar authorizes; nothing to decide here. */
  authorize(): Promise<void> {
    return Promise.resolve();
  }
}
