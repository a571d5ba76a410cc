/**
 * A test Authenticator with a fixed table of bearer tokens: who each one is,
 * and which namespaces they may read. `revoked` withdraws access later (to
 * check that stream tickets are re-authorized when redeemed).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type Authenticator,
  bearerToken,
} from "../../src/auth/authenticator.ts";
import type { Caller } from "../../src/backend/backend.ts";

export class TokenAuth implements Authenticator {
  readonly mode = "test-tokens";
  readonly revoked = new Set<string>();

  constructor(
    private readonly tokens: Record<
      string,
      { user: string; namespaces: string[] }
    >,
  ) {}

  authenticate({ headers }: { headers: Headers }): Promise<Caller> {
    try {
      const token = bearerToken(headers);
      if (token === undefined) {
        throw new ConnectError("no bearer token", Code.Unauthenticated);
      }
      const entry = this.tokens[token];
      if (!entry) {
        throw new ConnectError("token rejected", Code.Unauthenticated);
      }
      return Promise.resolve({ username: entry.user, groups: ["testers"] });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  authorize(caller: Caller, namespace: string): Promise<void> {
    const entry = Object.values(this.tokens).find((t) =>
      t.user === caller.username
    );
    if (
      !entry || !entry.namespaces.includes(namespace) ||
      this.revoked.has(caller.username)
    ) {
      return Promise.reject(
        new ConnectError(
          `${caller.username} may not read snapshots in ${namespace}`,
          Code.PermissionDenied,
        ),
      );
    }
    return Promise.resolve();
  }
}

/** alice reads demo; bob reads only elsewhere. */
export function demoAuth(): TokenAuth {
  return new TokenAuth({
    "alice-token": { user: "alice", namespaces: ["demo"] },
    "bob-token": { user: "bob", namespaces: ["other"] },
  });
}
