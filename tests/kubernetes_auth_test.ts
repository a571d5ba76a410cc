/**
 * KubernetesAuth (src/auth/kubernetes-auth.ts) against the fake API server:
 * TokenReview + SubjectAccessReview, cached briefly without the token, and
 * audiences enforced.
 */
import { deepStrictEqual, equal } from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { KubernetesAuth } from "../src/auth/kubernetes-auth.ts";
import { withGatewayKubeApi } from "./support/kube-fixture.ts";

Deno.test("KubernetesAuth: reviews are cached briefly, keyed without the token", async () => {
  await withGatewayKubeApi(async (kube, api) => {
    kube.policy.allow({
      users: ["dana"],
      verbs: ["get"],
      apiGroups: ["snapshot.storage.k8s.io"],
      resources: ["volumesnapshots"],
      namespaces: ["n"],
    });
    const auth = new KubernetesAuth(api, { cacheTtlMs: 200 });
    const token = kube.mintUserToken({ username: "dana" });
    const headers = new Headers({ authorization: `Bearer ${token}` });
    const signal = new AbortController().signal;
    const mark = kube.requests.length;
    for (let i = 0; i < 3; i++) {
      const caller = await auth.authenticate({
        headers,
        securityToken: "",
        signal,
      });
      equal(caller.username, "dana");
      equal(
        caller.bearerToken,
        undefined,
        "the caller's token is not carried on",
      );
      await auth.authorize(caller, "n", signal);
    }
    deepStrictEqual(kube.requests.slice(mark).map((r) => r.info.resource), [
      "tokenreviews",
      "subjectaccessreviews",
    ]);
    kube.revokeToken(token);
    await new Promise((r) => setTimeout(r, 250));
    try {
      await auth.authenticate({ headers, securityToken: "", signal });
      throw new Error("accepted a revoked token");
    } catch (e) {
      equal(ConnectError.from(e).code, Code.Unauthenticated);
    }
  });
});

Deno.test("KubernetesAuth: audiences are enforced", async () => {
  await withGatewayKubeApi(async (kube, api) => {
    const auth = new KubernetesAuth(api, { audiences: ["cbt-gateway"] });
    const signal = new AbortController().signal;
    const good = kube.mintUserToken({ username: "e" }, {
      audiences: ["cbt-gateway"],
    });
    const wrong = kube.mintUserToken({ username: "e" }, {
      audiences: ["other"],
    });
    equal(
      (await auth.authenticate({
        headers: new Headers({ authorization: `Bearer ${good}` }),
        securityToken: "",
        signal,
      })).username,
      "e",
    );
    try {
      await auth.authenticate({
        headers: new Headers({ authorization: `Bearer ${wrong}` }),
        securityToken: "",
        signal,
      });
      throw new Error("accepted");
    } catch (e) {
      equal(ConnectError.from(e).code, Code.Unauthenticated);
    }
  });
});
