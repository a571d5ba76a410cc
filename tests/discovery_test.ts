/** Discovery's address parsing (`hostOf`, src/kubernetes/discovery.ts): host:port and [v6]:port. */
import { equal, throws } from "node:assert/strict";
import { Code, type ConnectError } from "@connectrpc/connect";
import { hostOf } from "../src/kubernetes/discovery.ts";

Deno.test("hostOf: host:port and [v6]:port; anything else is Unavailable", () => {
  equal(hostOf("sidecar.ns.svc:6443"), "sidecar.ns.svc");
  equal(hostOf("127.0.0.1:50051"), "127.0.0.1");
  equal(hostOf("[::1]:50051"), "::1");
  throws(
    () => hostOf("https://x:1"),
    (e: ConnectError) => e.code === Code.Unavailable,
  );
  throws(
    () => hostOf("nohost"),
    (e: ConnectError) => e.code === Code.Unavailable,
  );
});
