/**
 * The Connect upstream backend (relay/connect-upstream.ts) against a real
 * in-cluster gateway on the embedded store, with a TCP proxy between them
 * that can cut the link: what the resume decorator and the edge tier rely
 * on. Streams equal ground truth from any starting offset; the upstream's
 * error codes come through unchanged; a cut link is Unavailable (never a
 * short stream that looks complete, never half a message); the caller's
 * signal ends the upstream stream; the bearer token is what the upstream
 * sees. Also `--backend connect` on the Deno server, and the built bundle's
 * shape.
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  GetMetadataAllocatedResponseSchema,
  GetMetadataDeltaResponseSchema,
} from "../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import { ConnectUpstreamBackend } from "../src/relay/connect-upstream.ts";
import type { CallOptions } from "../src/backend/backend.ts";
import { NodeFileSnapshotStore } from "../src/adapter/node-fs/file-store.ts";
import { startGateway } from "../src/server/start.ts";
import { startFromConfig } from "../src/server/from-config.ts";
import { parseConfig } from "../src/config.ts";
import { hasEnvelopeRuns } from "../src/wire/envelopes.ts";
import { FIXED_LENGTH } from "../src/wire/metadata-message.ts";
import {
  allocatedBlocks,
  changedBlocks,
  expectedTuples,
  type Tuple,
} from "./support/ground-truth.ts";
import { mutate, randomImage, Rng, writeImage } from "./support/images.ts";
import { TokenAuth } from "./support/token-auth.ts";
import { startCutProxy } from "./support/cut-proxy.ts";
import { SlowStore } from "./support/slow-store.ts";
import { parseNdjson, tuplesOf } from "./support/json-records.ts";
import { buildEdgeBundle, BUNDLE } from "./support/edge-hosts.ts";

const NS = "up";
const SIZE = 1024 * 1024 + 100;

function call(token?: string, signal = new AbortController().signal) {
  return {
    signal,
    caller: token
      ? { username: "forwarded", bearerToken: token }
      : { username: "anonymous" },
  } satisfies CallOptions;
}

/** Tuples of a stream of encoded response messages, decoded by the generated code. */
async function tuples(stream: AsyncIterable<Uint8Array>): Promise<Tuple[]> {
  const out: Tuple[] = [];
  for await (const bytes of stream) {
    for (
      const b of fromBinary(GetMetadataDeltaResponseSchema, bytes).blockMetadata
    ) {
      out.push([Number(b.byteOffset), Number(b.sizeBytes)]);
    }
  }
  return out;
}

async function codeOf(p: Promise<unknown>): Promise<Code | undefined> {
  try {
    await p;
  } catch (e) {
    return ConnectError.from(e).code;
  }
  return undefined;
}

async function upstreamTier() {
  const dataDir = await Deno.makeTempDir({ prefix: "cbt-connect-up-" });
  const rng = new Rng(2222);
  const base = randomImage(rng, SIZE);
  const target = mutate(rng, base, SIZE);
  await writeImage(dataDir, NS, "vol", "base", base);
  await writeImage(dataDir, NS, "vol", "target", target);
  const slow = new SlowStore(
    new NodeFileSnapshotStore({ dataDir, blockMetadataType: FIXED_LENGTH }),
    { slow: { servedAs: "target", intervalMs: 50 } },
  );
  const log: string[] = [];
  const gateway = await startGateway(
    { host: "127.0.0.1", port: 0, grpcPort: 0, corsOrigins: [] },
    {
      backend: slow,
      auth: new TokenAuth({
        "alice-token": { user: "alice", namespaces: [NS] },
        "bob-token": { user: "bob", namespaces: ["elsewhere"] },
      }),
      log: (line) => log.push(line),
    },
  );
  const proxy = startCutProxy(Number(new URL(gateway.httpUrl).port));
  const backend = new ConnectUpstreamBackend({ baseUrl: proxy.url });
  return {
    dataDir,
    base,
    target,
    slow,
    log,
    gateway,
    proxy,
    backend,
    async dispose() {
      await backend.close();
      await proxy.close();
      await gateway.close();
      await Deno.remove(dataDir, { recursive: true });
    },
  };
}

Deno.test("Connect upstream: streams, codes, cuts and cancellation through a real upstream gateway", async (t) => {
  const up = await upstreamTier();
  try {
    await t.step(
      "allocated and delta equal ground truth from any offset, per message and as runs",
      async () => {
        for (const from of [0, 4096 * 9, 4096 * 77 + 5]) {
          const allocated = up.backend.getMetadataAllocated({
            namespace: NS,
            snapshotName: "target",
            startingOffset: from,
            maxResults: 11,
            securityToken: "",
          }, call("alice-token"));
          deepStrictEqual(
            await tuples(allocated),
            expectedTuples(
              allocatedBlocks(up.target),
              "FIXED",
              up.target.length,
              from,
            ),
          );
          const delta = up.backend.getMetadataDelta({
            namespace: NS,
            baseSnapshotId: "vol/base",
            targetSnapshotName: "target",
            startingOffset: from,
            maxResults: 0,
            securityToken: "",
          }, call("alice-token"));
          ok(hasEnvelopeRuns(delta));
          // The runs are the upstream's envelopes as they are: whole, flags 0.
          const runs: Uint8Array[] = [];
          for await (const run of delta.envelopeRuns()) runs.push(run);
          const messages: Uint8Array[] = [];
          for (const run of runs) {
            let pos = 0;
            while (pos < run.length) {
              equal(run[pos], 0);
              const len = new DataView(run.buffer, run.byteOffset + pos + 1, 4)
                .getUint32(0);
              messages.push(run.subarray(pos + 5, pos + 5 + len));
              pos += 5 + len;
            }
            equal(pos, run.length);
          }
          deepStrictEqual(
            await tuples((async function* () {
              yield* messages;
            })()),
            expectedTuples(
              changedBlocks(up.base, up.target),
              "FIXED",
              up.target.length,
              from,
            ),
          );
        }
      },
    );

    await t.step(
      "the snapshot list and lookups are the upstream's",
      async () => {
        const listed = await up.backend.listSnapshots(NS, call("alice-token"));
        deepStrictEqual(
          listed.map((s) => [s.name, s.snapshotId, s.volumeCapacityBytes])
            .sort(),
          [["base", "vol/base", SIZE], ["target", "vol/target", SIZE]],
        );
        equal(
          (await up.backend.getSnapshot(NS, "base", call("alice-token")))
            .snapshotId,
          "vol/base",
        );
        equal(
          await codeOf(up.backend.getSnapshot(NS, "nope", call("alice-token"))),
          Code.NotFound,
        );
      },
    );

    await t.step(
      "the upstream's error codes come through unchanged",
      async () => {
        const allocated = (
          token: string | undefined,
          fields: { snapshotName?: string; startingOffset?: number } = {},
        ) =>
          tuples(up.backend.getMetadataAllocated({
            namespace: NS,
            snapshotName: fields.snapshotName ?? "target",
            startingOffset: fields.startingOffset ?? 0,
            maxResults: 0,
            securityToken: "",
          }, call(token)));
        equal(await codeOf(allocated(undefined)), Code.Unauthenticated);
        equal(await codeOf(allocated("bob-token")), Code.PermissionDenied);
        equal(
          await codeOf(allocated("alice-token", { snapshotName: "missing" })),
          Code.NotFound,
        );
        equal(
          await codeOf(allocated("alice-token", { snapshotName: "../etc" })),
          Code.InvalidArgument,
        );
        equal(
          await codeOf(allocated("alice-token", { startingOffset: -1 })),
          Code.OutOfRange,
        );
        equal(
          await codeOf(up.backend.listSnapshots(NS, call("bob-token"))),
          Code.PermissionDenied,
        );
      },
    );

    await t.step(
      "a link cut mid-stream is Unavailable after whole messages only",
      async () => {
        const expected = expectedTuples(
          allocatedBlocks(up.target),
          "FIXED",
          up.target.length,
          0,
        );
        for (const cutAt of [300, 1000, 2000]) {
          const cut = up.proxy.cutAfter(cutAt);
          const got: Tuple[] = [];
          let error: ConnectError | undefined;
          try {
            for await (
              const bytes of up.backend.getMetadataAllocated({
                namespace: NS,
                snapshotName: "target",
                startingOffset: 0,
                maxResults: 2,
                securityToken: "",
              }, call("alice-token"))
            ) {
              const m = fromBinary(GetMetadataAllocatedResponseSchema, bytes);
              for (const b of m.blockMetadata) {
                got.push([Number(b.byteOffset), Number(b.sizeBytes)]);
              }
            }
          } catch (e) {
            error = ConnectError.from(e);
          }
          equal(error?.code, Code.Unavailable, `cut at ${cutAt}: ${error}`);
          await cut;
          ok(got.length < expected.length, `cut at ${cutAt} came too late`);
          // What came is a prefix of the truth, in whole 2-tuple messages.
          deepStrictEqual(got, expected.slice(0, got.length));
          equal(got.length % 2, 0);
        }
      },
    );

    await t.step("an upstream that is not there is Unavailable", async () => {
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = (listener.addr as Deno.NetAddr).port;
      listener.close();
      const nobody = new ConnectUpstreamBackend({
        baseUrl: `http://127.0.0.1:${port}`,
      });
      equal(
        await codeOf(tuples(nobody.getMetadataAllocated({
          namespace: NS,
          snapshotName: "target",
          startingOffset: 0,
          maxResults: 0,
          securityToken: "",
        }, call("alice-token")))),
        Code.Unavailable,
      );
      equal(
        await codeOf(nobody.listSnapshots(NS, call("alice-token"))),
        Code.Unavailable,
      );
    });

    await t.step("the caller's signal ends the upstream stream", async () => {
      const before = up.slow.abortedWhileSlow;
      const abort = new AbortController();
      const stream = up.backend.getMetadataAllocated({
        namespace: NS,
        snapshotName: "slow",
        startingOffset: 0,
        maxResults: 1,
        securityToken: "",
      }, call("alice-token", abort.signal));
      let error: ConnectError | undefined;
      try {
        for await (const _ of stream) abort.abort();
      } catch (e) {
        error = ConnectError.from(e);
      }
      equal(error?.code, Code.Canceled);
      const deadline = Date.now() + 10_000;
      while (up.slow.abortedWhileSlow === before) {
        ok(Date.now() < deadline, "the upstream stream was never cancelled");
        await new Promise((r) => setTimeout(r, 20));
      }
      const line = JSON.parse(up.log.at(-1)!);
      equal(line.snapshot, "slow");
      equal(line.code, "canceled");
    });
  } finally {
    await up.dispose();
  }
});

Deno.test("--backend connect: the Deno server as an edge tier, forwarding callers' tokens", async () => {
  const up = await upstreamTier();
  const config = parseConfig([
    "--backend",
    "connect",
    "--upstream-url",
    up.gateway.httpUrl,
    "--port",
    "0",
    "--grpc-port",
    "0",
  ], {});
  equal(config.auth, "forward");
  const edge = await startFromConfig(config);
  try {
    const at =
      `${edge.httpUrl}/v1/namespaces/${NS}/snapshots/target/delta?baseSnapshotName=base`;
    const refused = await fetch(at, {
      headers: { authorization: "Bearer bob-token" },
    });
    equal(refused.status, 403);
    await refused.body?.cancel();
    const response = await fetch(at, {
      headers: { authorization: "Bearer alice-token" },
    });
    equal(response.status, 200);
    const records = parseNdjson(await response.text());
    equal(records.at(-1)?.type, "end");
    deepStrictEqual(
      tuplesOf(records),
      expectedTuples(
        changedBlocks(up.base, up.target),
        "FIXED",
        up.target.length,
        0,
      ),
    );
  } finally {
    await edge.close();
    await up.dispose();
  }
});

Deno.test("the edge bundle is one self-contained ES module with the Workers contract", async () => {
  await buildEdgeBundle();
  const text = await Deno.readTextFile(BUNDLE);
  // No import left: no static or dynamic import, no require.
  equal(/(^|[;}\s])import\s*[\s{*("']/.test(text), false);
  equal(/\brequire\s*\(/.test(text), false);
  equal(/["']node:[a-z_/]+["']/.test(text), false, "a node: module");
  equal(/\bDeno\.\w+/.test(text), false, "the Deno namespace");
  equal(text.includes("@kubernetes/client-node"), false);
  ok(/export\s*\{\s*\w+ as default\s*\}\s*;?\s*$/.test(text));
  const worker = (await import(`file://${BUNDLE}`)).default;
  equal(typeof worker.fetch, "function");
  // Configured by env alone; a missing upstream is a clear 500, not a crash.
  const misconfigured = await worker.fetch(
    new Request("http://edge.example/healthz"),
    {},
  );
  equal(misconfigured.status, 500);
  ok((await misconfigured.json()).message.includes("CBT_GATEWAY_UPSTREAM_URL"));
  // Workers limit: 3 MB compressed.
  const gzipped = await new Response(
    new Blob([text]).stream().pipeThrough(new CompressionStream("gzip")),
  ).arrayBuffer();
  ok(gzipped.byteLength < 3_000_000, `${gzipped.byteLength} bytes gzipped`);
});
