/** PassthroughAuth (src/auth/passthrough-auth.ts): the security_token is required. */
import { equal } from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { PassthroughAuth } from "../src/auth/passthrough-auth.ts";

Deno.test("PassthroughAuth: security_token required", async () => {
  const auth = new PassthroughAuth();
  const signal = new AbortController().signal;
  try {
    await auth.authenticate({
      headers: new Headers(),
      securityToken: "",
      signal,
    });
    throw new Error("accepted");
  } catch (e) {
    equal(ConnectError.from(e).code, Code.InvalidArgument);
  }
  equal(
    (await auth.authenticate({
      headers: new Headers(),
      securityToken: "t",
      signal,
    })).username,
    "passthrough",
  );
});
