/**
 * Kubernetes mode end to end: a Connect client (connect-web) → gateway
 * (`--backend kubernetes --auth kubernetes`, RBAC from deploy/) → discovery
 * against the fake API server → TLS sidecar stand-ins that check tokens
 * with TokenReview/SubjectAccessReview as the real sidecar does. Answers are
 * checked against ground truth from the image bytes; refusals are checked
 * to happen before any upstream call (upstream call log, fake's request log).
 */
import {
  deepStrictEqual,
  equal,
  match,
  notEqual,
  ok,
} from "node:assert/strict";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { SnapshotMetadata } from "../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import {
  allocatedBlocks,
  changedBlocks,
  expectedTuples,
} from "./support/ground-truth.ts";
import { collectTuples } from "./support/collect.ts";
import { mutate, randomImage, Rng } from "./support/images.ts";
import {
  addSnapshot,
  GATEWAY_SA,
  type KubeFixture,
  startKubeFixture,
} from "./support/kube-fixture.ts";
import { CBT_API } from "./support/fake-kube/server.ts";
import { waitFor } from "./support/wait.ts";

const HOSTPATH = "hostpath.csi.k8s.io";
const OTHER = "other.csi.k8s.io";
const NOCBT = "nocbt.csi.k8s.io";
const SIZE = 512 * 1024 + 4096 * 3;
const GATEWAY_USER =
  `system:serviceaccount:${GATEWAY_SA.namespace}:${GATEWAY_SA.name}`;

function client(f: KubeFixture, token?: string) {
  return createClient(
    SnapshotMetadata,
    createConnectTransport({
      baseUrl: f.gateway.httpUrl,
      useBinaryFormat: true,
      interceptors: token
        ? [(next) => (req) => {
          req.header.set("authorization", `Bearer ${token}`);
          return next(req);
        }]
        : [],
    }),
  );
}

async function refused(
  call: () => Promise<unknown>,
  code: Code,
  message?: RegExp,
): Promise<ConnectError> {
  try {
    await call();
  } catch (e) {
    const err = ConnectError.from(e);
    equal(Code[err.code], Code[code], err.message);
    if (message) match(err.message, message);
    return err;
  }
  throw new Error(`expected ${Code[code]}, the call succeeded`);
}

Deno.test("kubernetes mode: discovery, tokens, caller auth, end to end", async (t) => {
  const f = await startKubeFixture({
    drivers: [HOSTPATH, OTHER],
    policy: [{
      name: "alice-reads-team-a",
      users: ["alice"],
      verbs: ["get", "list"],
      apiGroups: ["snapshot.storage.k8s.io"],
      resources: ["volumesnapshots"],
      namespaces: ["team-a"],
    }, {
      name: "carol-reads-team-b",
      users: ["carol"],
      verbs: ["get"],
      apiGroups: ["snapshot.storage.k8s.io"],
      resources: ["volumesnapshots"],
      namespaces: ["team-b"],
    }],
  });
  try {
    const rng = new Rng(5150);
    const base = randomImage(rng, SIZE);
    const target = mutate(rng, base, SIZE);
    const other = randomImage(rng, SIZE);
    await addSnapshot(f, {
      namespace: "team-a",
      name: "base",
      volume: "vol-a",
      image: base,
    });
    await addSnapshot(f, {
      namespace: "team-a",
      name: "target",
      volume: "vol-a",
      image: target,
    });
    await addSnapshot(f, {
      namespace: "team-a",
      name: "lone",
      volume: "vol-c",
      image: other,
    });
    await addSnapshot(f, {
      namespace: "team-b",
      name: "secret",
      volume: "vol-b",
      image: other,
    });
    await addSnapshot(f, {
      namespace: "team-a",
      name: "pending",
      volume: "vol-a",
      image: base,
      readyToUse: false,
    });
    await addSnapshot(f, {
      namespace: "team-a",
      name: "elsewhere",
      volume: "vol-e",
      image: other,
      driver: OTHER,
    });
    await addSnapshot(f, {
      namespace: "team-a",
      name: "nocbt",
      volume: "vol-n",
      image: other,
      driver: NOCBT,
    });

    const alice = f.kube.mintUserToken({
      username: "alice",
      uid: "u-alice",
      groups: ["devs"],
    });
    const bob = f.kube.mintUserToken({ username: "bob" });
    const a = client(f, alice);
    const up = f.drivers[HOSTPATH].upstream;
    const up2 = f.drivers[OTHER].upstream;

    await t.step(
      "allocated: right blocks, gateway's own audience token upstream",
      async () => {
        const got = await collectTuples(a.getMetadataAllocated({
          namespace: "team-a",
          snapshotName: "target",
          securityToken: "caller-field-never-forwarded",
        }));
        deepStrictEqual(
          got,
          expectedTuples(allocatedBlocks(target), "FIXED", SIZE, 0),
        );
        const last = up.calls.at(-1)!;
        equal(last.outcome, "ok");
        equal(last.user, GATEWAY_USER);
        deepStrictEqual(last.audiences, [up.audience]);
        notEqual(last.securityToken, alice);
        notEqual(last.securityToken, "caller-field-never-forwarded");
      },
    );

    await t.step("delta by handle, and an unaligned offset", async () => {
      const blocks = changedBlocks(base, target);
      const got = await collectTuples(a.getMetadataDelta({
        namespace: "team-a",
        baseSnapshotId: "vol-a/base",
        targetSnapshotName: "target",
      }));
      deepStrictEqual(got, expectedTuples(blocks, "FIXED", SIZE, 0));
      ok(got.length > 2, "the mutation changed some blocks");
      const offset = got[1][0] + 100; // inside the second changed block
      const from = await collectTuples(a.getMetadataDelta({
        namespace: "team-a",
        baseSnapshotId: "vol-a/base",
        targetSnapshotName: "target",
        startingOffset: BigInt(offset),
        maxResults: 3,
      }));
      deepStrictEqual(from, expectedTuples(blocks, "FIXED", SIZE, offset));
      ok(from[0][0] + from[0][1] > offset);
    });

    await t.step(
      "unauthenticated callers never reach discovery or upstream",
      async () => {
        const before = up.calls.length;
        const mark = f.kube.requests.length;
        await refused(
          () =>
            collectTuples(
              client(f).getMetadataAllocated({
                namespace: "team-a",
                snapshotName: "target",
              }),
            ),
          Code.Unauthenticated,
          /Bearer/,
        );
        equal(f.kube.requests.length, mark, "no API call without a credential");
        await refused(
          () =>
            collectTuples(
              client(f, "not-a-token").getMetadataAllocated({
                namespace: "team-a",
                snapshotName: "target",
              }),
            ),
          Code.Unauthenticated,
          /TokenReview/,
        );
        deepStrictEqual(
          f.kube.requests.slice(mark).map((r) => r.info.resource),
          ["tokenreviews"],
        );
        equal(up.calls.length, before);
      },
    );

    await t.step(
      "denied, and wrong namespace → PermissionDenied before upstream",
      async () => {
        const before = up.calls.length;
        const mark = f.kube.requests.length;
        await refused(
          () =>
            collectTuples(
              client(f, bob).getMetadataAllocated({
                namespace: "team-a",
                snapshotName: "target",
              }),
            ),
          Code.PermissionDenied,
          /bob may not get volumesnapshots/,
        );
        await refused(
          () =>
            collectTuples(
              a.getMetadataAllocated({
                namespace: "team-b",
                snapshotName: "secret",
              }),
            ),
          Code.PermissionDenied,
          /namespace team-b/,
        );
        const resources = f.kube.requests.slice(mark).map((r) =>
          r.info.resource
        );
        ok(
          !resources.includes("volumesnapshots"),
          `no snapshot read: ${resources}`,
        );
        equal(up.calls.length, before);
        // The SAR carried the reviewed user's identity.
        const sar = f.kube.requests.slice(mark).find((r) =>
          r.info.resource === "subjectaccessreviews" &&
          (r.body as { spec: { user: string } }).spec.user === "alice"
        );
        const spec = (sar!.body as { spec: Record<string, unknown> }).spec;
        equal(spec.uid, "u-alice");
        ok((spec.groups as string[]).includes("devs"));
        deepStrictEqual(spec.resourceAttributes, {
          verb: "get",
          group: "snapshot.storage.k8s.io",
          version: "v1",
          resource: "volumesnapshots",
          namespace: "team-b",
        });
      },
    );

    await t.step(
      "cross-namespace and other-volume base handles are refused before upstream",
      async () => {
        const before = up.calls.length;
        await refused(
          () =>
            collectTuples(
              a.getMetadataDelta({
                namespace: "team-a",
                baseSnapshotId: "vol-b/secret",
                targetSnapshotName: "target",
              }),
            ),
          Code.InvalidArgument,
          /same volume/,
        );
        await refused(
          () =>
            collectTuples(
              a.getMetadataDelta({
                namespace: "team-a",
                baseSnapshotId: "vol-c/lone",
                targetSnapshotName: "target",
              }),
            ),
          Code.InvalidArgument,
          /same volume/,
        );
        await refused(
          () =>
            collectTuples(
              a.getMetadataDelta({
                namespace: "team-a",
                baseSnapshotId: "no/such",
                targetSnapshotName: "target",
              }),
            ),
          Code.InvalidArgument,
        );
        equal(up.calls.length, before);
      },
    );

    await t.step(
      "not ready, missing snapshot, missing service → Unavailable naming the object",
      async () => {
        const before = up.calls.length;
        await refused(
          () =>
            collectTuples(
              a.getMetadataAllocated({
                namespace: "team-a",
                snapshotName: "pending",
              }),
            ),
          Code.Unavailable,
          /VolumeSnapshot team-a\/pending is not ready/,
        );
        await refused(
          () =>
            collectTuples(
              a.getMetadataAllocated({
                namespace: "team-a",
                snapshotName: "ghost",
              }),
            ),
          Code.Unavailable,
          /VolumeSnapshot team-a\/ghost not found/,
        );
        await refused(
          () =>
            collectTuples(
              a.getMetadataAllocated({
                namespace: "team-a",
                snapshotName: "nocbt",
              }),
            ),
          Code.Unavailable,
          /SnapshotMetadataService "nocbt\.csi\.k8s\.io"/,
        );
        equal(up.calls.length, before);
      },
    );

    await t.step(
      "a second driver is routed to its own sidecar with its own audience",
      async () => {
        const before = up.calls.length;
        const got = await collectTuples(
          a.getMetadataAllocated({
            namespace: "team-a",
            snapshotName: "elsewhere",
          }),
        );
        deepStrictEqual(
          got,
          expectedTuples(allocatedBlocks(other), "FIXED", SIZE, 0),
        );
        equal(up.calls.length, before);
        equal(up2.calls.at(-1)!.outcome, "ok");
        deepStrictEqual(up2.calls.at(-1)!.audiences, [up2.audience]);
      },
    );

    await t.step(
      "tokens and connections: one per audience / address, reused",
      () => {
        equal(f.parts.minter!.requests, 2);
        equal(f.parts.pool.connectionsOpened, 2);
        const minted = f.kube.requestsFor({ resource: "serviceaccounts" });
        equal(minted.length, 2);
        for (const r of minted) {
          equal(
            r.path,
            `/api/v1/namespaces/${GATEWAY_SA.namespace}/serviceaccounts/${GATEWAY_SA.name}/token`,
          );
        }
      },
    );

    await t.step(
      "CA rotation: a new address and CA apply to new streams without restart",
      async () => {
        const rotated = await f.startSpareUpstream(up.audience);
        f.kube.addSnapshotMetadataService({
          driver: HOSTPATH,
          address: rotated.address,
          audience: rotated.audience,
          caCertPem: rotated.caPem,
        });
        await waitFor("the rotated sidecar to get calls", async () => {
          await collectTuples(
            a.getMetadataAllocated({
              namespace: "team-a",
              snapshotName: "target",
            }),
          );
          return rotated.calls.length > 0;
        });
        await up.close(); // the old sidecar is gone for good
        const got = await collectTuples(
          a.getMetadataAllocated({
            namespace: "team-a",
            snapshotName: "target",
          }),
        );
        deepStrictEqual(
          got,
          expectedTuples(allocatedBlocks(target), "FIXED", SIZE, 0),
        );
        equal(rotated.calls.at(-1)!.outcome, "ok");
      },
    );

    await t.step("TLS trusts only the resource's caCert", async () => {
      const sms = f.kube.get(CBT_API, "SnapshotMetadataService", HOSTPATH)!;
      const current = f.drivers[HOSTPATH].upstream; // closed, replaced above
      const rotatedAddress = sms.spec.address;
      ok(rotatedAddress !== current.address);
      const calls = (): number =>
        Object.values(f.drivers).reduce(
          (n, d) => n + d.upstream.calls.length,
          0,
        );
      f.kube.addSnapshotMetadataService({
        driver: HOSTPATH,
        address: rotatedAddress,
        audience: up.audience,
        caCertPem: f.kube.caPem, // a CA that did not sign the sidecar's cert
      });
      const before = calls();
      await waitFor("TLS to the sidecar to fail verification", async () => {
        try {
          await collectTuples(
            a.getMetadataAllocated({
              namespace: "team-a",
              snapshotName: "target",
            }),
          );
          return false;
        } catch (e) {
          const err = ConnectError.from(e);
          return err.code === Code.Unavailable &&
            /certificate|self.signed|verify/i.test(err.message);
        }
      });
      equal(calls(), before);
      f.kube.put(sms); // back to the right CA
      await waitFor("the right CA to work again", async () => {
        try {
          await collectTuples(
            a.getMetadataAllocated({
              namespace: "team-a",
              snapshotName: "target",
            }),
          );
          return true;
        } catch {
          return false;
        }
      });
    });

    await t.step(
      "watch survives 410 Gone and dropped streams; a deleted service stops routing",
      async () => {
        const lists = f.parts.discovery.services.lists;
        f.kube.compact();
        f.kube.closeWatches();
        await waitFor(
          "a re-list after 410 Gone",
          () => f.parts.discovery.services.lists > lists,
        );
        f.kube.delete(CBT_API, "SnapshotMetadataService", OTHER);
        await waitFor("the deleted service to stop routing", async () => {
          try {
            await collectTuples(
              a.getMetadataAllocated({
                namespace: "team-a",
                snapshotName: "elsewhere",
              }),
            );
            return false;
          } catch (e) {
            return ConnectError.from(e).code === Code.Unavailable;
          }
        });
      },
    );

    await t.step(
      "every API call the gateway made is one deploy/rbac.yaml allows",
      () => {
        const mine = f.kube.requests.filter((r) => r.user === GATEWAY_USER);
        ok(mine.length > 0);
        for (const r of mine) {
          ok(r.status !== 403, `${r.method} ${r.path} was forbidden`);
        }
      },
    );
  } finally {
    await f.close();
  }
});

Deno.test("kubernetes mode, --auth passthrough: the caller's security_token goes upstream untouched", async () => {
  const f = await startKubeFixture({
    auth: "passthrough",
    policy: [{
      name: "alice-reads-team-a",
      users: ["alice"],
      verbs: ["get"],
      apiGroups: ["snapshot.storage.k8s.io"],
      resources: ["volumesnapshots"],
      namespaces: ["team-a"],
    }],
  });
  try {
    const image = randomImage(new Rng(7), SIZE);
    await addSnapshot(f, {
      namespace: "team-a",
      name: "s1",
      volume: "vol-a",
      image,
    });
    const up = f.drivers[HOSTPATH].upstream;
    const token = f.kube.mintUserToken({ username: "alice" }, {
      audiences: [up.audience],
    });
    const c = client(f);
    const got = await collectTuples(
      c.getMetadataAllocated({
        namespace: "team-a",
        snapshotName: "s1",
        securityToken: token,
      }),
    );
    deepStrictEqual(
      got,
      expectedTuples(allocatedBlocks(image), "FIXED", SIZE, 0),
    );
    equal(up.calls.at(-1)!.securityToken, token);
    equal(up.calls.at(-1)!.user, "alice");
    equal(f.parts.minter, undefined);
    equal(
      f.kube.requestsFor({ resource: "serviceaccounts" }).length,
      0,
      "no TokenRequest",
    );

    const before = up.calls.length;
    await refused(
      () =>
        collectTuples(
          c.getMetadataAllocated({ namespace: "team-a", snapshotName: "s1" }),
        ),
      Code.InvalidArgument,
      /security_token/,
    );
    equal(up.calls.length, before);
    // The sidecar decides: a token without rights there is refused by it.
    const bob = f.kube.mintUserToken({ username: "bob" }, {
      audiences: [up.audience],
    });
    await refused(
      () =>
        collectTuples(
          c.getMetadataAllocated({
            namespace: "team-a",
            snapshotName: "s1",
            securityToken: bob,
          }),
        ),
      Code.PermissionDenied,
    );
    equal(up.calls.at(-1)!.outcome, "denied");
  } finally {
    await f.close();
  }
});
