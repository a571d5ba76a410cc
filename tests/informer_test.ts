/**
 * Informer (src/kube/informer.ts) against the fake API server: list, then
 * follow the watch; re-list after 410 Gone and compaction; retry failing
 * lists with backoff; stop() ends the watch.
 */
import { equal, ok } from "node:assert/strict";
import { Informer } from "../src/kube/informer.ts";
import { CBT_API } from "./support/fake-kube/server.ts";
import { withGatewayKubeApi } from "./support/kube-fixture.ts";
import { waitFor } from "./support/wait.ts";

Deno.test("Informer: lists, follows the watch, re-lists after 410 and compaction, retries after failures", async () => {
  await withGatewayKubeApi(async (kube, api) => {
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
      await waitFor("the watch to open", () => kube.openWatches > 0);
      kube.put(sms("d1", "h1:2"));
      kube.put(sms("d2", "h2:1"));
      await waitFor(
        "the watched update and add",
        () =>
          informer.get("d1")?.spec.address === "h1:2" && !!informer.get("d2"),
      );
      // Server ends the watch and forgets history: the next watch gets 410.
      const lists = informer.lists;
      kube.compact();
      kube.closeWatches();
      kube.put(sms("d3", "h3:1"));
      await waitFor(
        "a re-list after 410",
        () => informer.lists > lists && !!informer.get("d3"),
      );
      kube.delete(CBT_API, "SnapshotMetadataService", "d2");
      await waitFor("the delete", () => informer.get("d2") === undefined);
      // A forced resync re-lists and keeps the state.
      const seen = kube.requests.length;
      informer.resync();
      await waitFor("the forced re-list", () => informer.lists > lists + 1);
      equal(informer.get("d1")?.spec.address, "h1:2");
      // Go on once that list has landed and the informer watches again: a
      // resync asked for while a list is in flight is taken by that list,
      // whose answer predates the RBAC change below.
      await waitFor("the watch after the re-list", () => {
        const since = kube.requestsFor({ resource: "snapshotmetadataservices" })
          .filter((r) => r.seq > seen);
        const list = since.findIndex((r) => r.info.verb === "list");
        return list >= 0 &&
          since.slice(list + 1).some((r) => r.info.verb === "watch");
      });
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
      await waitFor(
        "two failed lists",
        () => errors.length >= failuresBefore + 2,
      );
      equal(informer.get("d1")?.spec.address, "h1:2");
      kube.policy.rules.pop();
      const listsNow = informer.lists;
      kube.put(sms("d4", "h4:1"));
      await waitFor(
        "a good list after the failures",
        () => informer.lists > listsNow && !!informer.get("d4"),
      );
    } finally {
      await informer.stop();
    }
    // The server notices the closed connection shortly after.
    await waitFor("stop() to end the watch", () => kube.openWatches === 0);
  });
});
