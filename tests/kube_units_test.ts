/**
 * The Kubernetes-mode pieces on their own: token minting and renewal,
 * caller-review caching, offset alignment, address parsing, and the
 * informer's reconnect behaviour — against the fake API server where a
 * server is involved.
 */
import { deepStrictEqual, equal, ok, throws } from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { KubeConfig } from "@kubernetes/client-node";
import { KubeApi } from "../src/kube/kube-api.ts";
import { Informer } from "../src/kube/informer.ts";
import { TokenMinter } from "../src/kubernetes/token-minter.ts";
import { KubernetesAuth } from "../src/auth/kubernetes-auth.ts";
import { ReviewCache } from "../src/auth/kubernetes-review-cache.ts";
import { PassthroughAuth } from "../src/auth/passthrough-auth.ts";
import {
  alignDown,
  dropTuplesBefore,
} from "../src/kubernetes/offset-alignment.ts";
import { hostOf } from "../src/kubernetes/discovery.ts";
import {
  decodeMetadataMessage,
  encodeMetadataMessage,
} from "../src/wire/metadata-message.ts";
import {
  CBT_API,
  type FakeKube,
  startFakeKube,
} from "./support/fake-kube/server.ts";
import { loadManifests, policyFromRbac } from "./support/kube-fixture.ts";

function apiFor(kube: FakeKube, token: string): KubeApi {
  const config = new KubeConfig();
  config.loadFromString(kube.kubeconfig(token));
  return new KubeApi(config);
}

async function withKube(fn: (kube: FakeKube, api: KubeApi) => Promise<void>) {
  const kube = await startFakeKube({
    policy: policyFromRbac(await loadManifests()),
    serviceAccounts: [{ namespace: "cbt-gateway", name: "cbt-gateway" }],
    bookmarkIntervalMs: 100,
  });
  try {
    await fn(
      kube,
      apiFor(kube, kube.serviceAccountToken("cbt-gateway", "cbt-gateway")),
    );
  } finally {
    await kube.close();
  }
}

Deno.test("TokenMinter: audience-scoped, cached per audience, renewed at 80% of its life", async () => {
  await withKube(async (kube, api) => {
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
  await withKube(async (kube, api) => {
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

Deno.test("KubernetesAuth: reviews are cached briefly, keyed without the token", async () => {
  await withKube(async (kube, api) => {
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
  await withKube(async (kube, api) => {
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

Deno.test("ReviewCache: bounded, oldest out, entries expire", () => {
  let now = 0;
  const c = new ReviewCache<number>(100, 2, () => now);
  c.set("a", 1);
  c.set("b", 2);
  c.set("c", 3);
  equal(c.size, 2);
  equal(c.get("a"), undefined);
  equal(c.get("c"), 3);
  now = 100;
  equal(c.get("c"), undefined);
});

Deno.test("offset alignment: ask from the block boundary, drop what ends at or before the offset", async () => {
  equal(alignDown(4096 * 3 + 5), 4096 * 3);
  equal(alignDown(8192), 8192);
  const msg = (offsets: number[]) =>
    encodeMetadataMessage({
      blockMetadataType: 1,
      volumeCapacityBytes: 1 << 20,
      offsets,
      sizes: offsets.map(() => 4096),
    });
  async function* upstream() {
    yield msg([0, 4096]); // all end at or before 8192+1? 0-4096 and 4096-8192: dropped
    yield msg([8192, 12288]); // 8192-12288 ends after 8193: kept
    yield msg([16384]);
  }
  const out = [];
  for await (const b of dropTuplesBefore(upstream(), 8193)) {
    out.push(decodeMetadataMessage(b).offsets);
  }
  deepStrictEqual(out, [[8192, 12288], [16384]]);
  // Aligned offsets pass through untouched (same bytes).
  const first = msg([0]);
  async function* one() {
    yield first;
  }
  for await (const b of dropTuplesBefore(one(), 0)) equal(b, first);
});

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

Deno.test("Informer: lists, follows the watch, re-lists after 410 and compaction, retries after failures", async () => {
  await withKube(async (kube, api) => {
    const errors: unknown[] = [];
    const sms = (name: string, address: string) => ({
      apiVersion: CBT_API,
      kind: "SnapshotMetadataService",
      metadata: { name },
      spec: { address, audience: "a", caCert: "Zm9v", someFutureField: true },
    });
    kube.put(sms("d1", "h1:1"));
    const informer = new Informer({
      list: () => api.listSnapshotMetadataServices(),
      watch: (rv, t, onEvent, done) =>
        api.watchSnapshotMetadataServices(rv, t, onEvent, done),
    }, { retryMs: 20, maxRetryMs: 100, onError: (e) => errors.push(e) });
    informer.start();
    try {
      ok(await informer.waitForSync(5000));
      equal(informer.get("d1")?.spec.address, "h1:1");
      const until = async (check: () => boolean) => {
        for (let i = 0; i < 200 && !check(); i++) {
          await new Promise((r) => setTimeout(r, 20));
        }
        ok(check(), "condition not reached");
      };
      await until(() => kube.openWatches > 0);
      kube.put(sms("d1", "h1:2"));
      kube.put(sms("d2", "h2:1"));
      await until(() =>
        informer.get("d1")?.spec.address === "h1:2" && !!informer.get("d2")
      );
      // Server ends the watch and forgets history: the next watch gets 410.
      const lists = informer.lists;
      kube.compact();
      kube.closeWatches();
      kube.put(sms("d3", "h3:1"));
      await until(() => informer.lists > lists && !!informer.get("d3"));
      kube.delete(CBT_API, "SnapshotMetadataService", "d2");
      await until(() => informer.get("d2") === undefined);
      // A forced resync re-lists and keeps the state.
      informer.resync();
      await until(() => informer.lists > lists + 1);
      equal(informer.get("d1")?.spec.address, "h1:2");
      // A failing list (RBAC withdrawn) is retried with backoff; the last
      // good state stays readable meanwhile.
      kube.policy.deny({
        users: ["*"],
        verbs: ["list"],
        apiGroups: ["cbt.storage.k8s.io"],
        resources: ["snapshotmetadataservices"],
      });
      const failuresBefore = errors.length;
      informer.resync();
      await until(() => errors.length >= failuresBefore + 2);
      equal(informer.get("d1")?.spec.address, "h1:2");
      kube.policy.rules.pop();
      const listsNow = informer.lists;
      kube.put(sms("d4", "h4:1"));
      await until(() => informer.lists > listsNow && !!informer.get("d4"));
    } finally {
      await informer.stop();
    }
    // The server notices the closed connection shortly after.
    for (let i = 0; i < 100 && kube.openWatches > 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    equal(kube.openWatches, 0, "stop() ends the watch");
  });
});
