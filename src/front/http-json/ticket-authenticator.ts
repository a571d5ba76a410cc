/**
 * The Authenticator for a request that came with a stream ticket: the caller
 * is the one the ticket names, and authorization is still the gateway's own
 * (limited to the ticket's namespace), so the Gateway's data path is unchanged.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Authenticator } from "../../auth/authenticator.ts";
import type { Caller } from "../../backend/backend.ts";

export class TicketAuthenticator implements Authenticator {
  readonly mode: string;

  constructor(
    private readonly caller: Caller,
    private readonly namespace: string,
    private readonly inner: Authenticator,
  ) {
    this.mode = `ticket+${inner.mode}`;
  }

  authenticate(): Promise<Caller> {
    return Promise.resolve(this.caller);
  }

  async authorize(
    caller: Caller,
    namespace: string,
    signal: AbortSignal,
  ): Promise<void> {
    if (namespace !== this.namespace) {
      throw new ConnectError(
        "stream ticket was issued for another namespace",
        Code.PermissionDenied,
      );
    }
    await this.inner.authorize(caller, namespace, signal);
  }
}
