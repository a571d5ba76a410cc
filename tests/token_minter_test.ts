/**
 * TokenMinter (src/kubernetes/token-minter.ts) against the fake API server:
 * audience-scoped ServiceAccount tokens, cached and renewed, and a clear
 * Unavailable where RBAC forbids minting.
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { TokenMinter } from "../src/kubernetes/token-minter.ts";
import { withGatewayKubeApi } from "./support/kube-fixture.ts";

Deno.test("TokenMinter: audience-scoped, cached per audience, renewed at 80% of its life", async () => {
  await withGatewayKubeApi(async (kube, api) => {
    const minter = new TokenMinter(api, {
      namespace: "cbt-gateway",
      name: "cbt-gateway",
    }, {
      now: () => kube.clock.now(),
    });
    const t1 = await minter.token("aud-1");
    const [a, b] = await Promise.all([
      minter.token("aud-1"),
      minter.token("aud-2"),
    ]);
    equal(a, t1);
    notSame(b, t1);
    equal(minter.requests, 2);
    // The fake accepts it for that audience only.
    equal(kube.tokens.authenticate(t1, ["aud-1"]).authenticated, true);
    equal(kube.tokens.authenticate(t1, ["aud-2"]).authenticated, false);
    const req = kube.requestsFor({ resource: "serviceaccounts" })[0];
    deepStrictEqual((req.body as { spec: unknown }).spec, {
      audiences: ["aud-1"],
      expirationSeconds: 600,
    });
    kube.advanceClock(470_000); // 78%: still cached
    equal(await minter.token("aud-1"), t1);
    kube.advanceClock(20_000); // 81%: renewed
    const t2 = await minter.token("aud-1");
    notSame(t2, t1);
    equal(minter.requests, 3);
  });
});

function notSame(a: string, b: string) {
  ok(a !== b, "expected different tokens");
}

Deno.test("TokenMinter: a ServiceAccount it may not mint for → Unavailable without the token", async () => {
  await withGatewayKubeApi(async (kube, api) => {
    kube.addServiceAccount("other", "victim");
    const minter = new TokenMinter(api, { namespace: "other", name: "victim" });
    try {
      await minter.token("aud");
      throw new Error("minted");
    } catch (e) {
      const err = ConnectError.from(e);
      equal(err.code, Code.Unavailable);
      ok(
        /other\/victim/.test(err.message) && /403/.test(err.message),
        err.message,
      );
    }
  });
});
