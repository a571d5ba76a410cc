/**
 * Expecting a call to fail the Connect way: a ConnectError with this code
 * and a raw message (without the "[code]" prefix) matching a pattern.
 */
import { equal, ok } from "node:assert/strict";
import { type Code, ConnectError } from "@connectrpc/connect";

/** Resolves with the ConnectError `call` rejects with, after checking its code and message. */
export async function expectConnectError(
  call: Promise<unknown>,
  code: Code,
  message: RegExp,
): Promise<ConnectError> {
  let caught: unknown;
  try {
    await call;
  } catch (e) {
    caught = e;
  }
  ok(caught instanceof ConnectError, `expected a ConnectError, got ${caught}`);
  equal(caught.code, code, `code of: ${caught.message}`);
  ok(
    message.test(caught.rawMessage),
    `message ${JSON.stringify(caught.rawMessage)} !~ ${message}`,
  );
  return caught;
}
