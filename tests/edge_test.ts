/**
 * One built file on four runtimes: `dist/cbt-gateway-edge.js` (built here
 * with `deno task build:edge`) under workerd, Bun, Node and Deno, each as an
 * edge tier in front of an in-cluster gateway on the embedded store, with a
 * TCP proxy between the tiers that can cut the link mid-stream.
 *
 * Per runtime: every protocol equals ground truth computed from the image
 * bytes; a client's cancel at the edge ends the stream at the in-cluster
 * gateway (seen in its access log and metrics); callers' Authorization
 * reaches the in-cluster tier, whose refusals keep their codes; tickets,
 * CORS, /ui/, /openapi.json and /healthz are answered at the edge.
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import {
  Code,
  ConnectError,
  createClient,
  type Transport,
} from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-web";
import { SnapshotMetadata } from "../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import { GatewayService } from "../gen/cbtgateway/v1/gateway_pb.ts";
import { startGateway } from "../src/server/start.ts";
import { NodeFileSnapshotStore } from "../src/adapter/node-fs/file-store.ts";
import { FIXED_LENGTH } from "../src/wire/metadata-message.ts";
import {
  allocatedBlocks,
  changedBlocks,
  expectedTuples,
  type Tuple,
} from "./support/ground-truth.ts";
import { collectTuples } from "./support/collect.ts";
import { mutate, randomImage, Rng, writeImage } from "./support/images.ts";
import { TokenAuth } from "./support/token-auth.ts";
import {
  parseNdjson,
  parseSse,
  type Rec,
  sseRecords,
  tuplesOf,
} from "./support/json-records.ts";
import { type CutProxy, startCutProxy } from "./support/cut-proxy.ts";
import { SlowStore } from "./support/slow-store.ts";
import {
  EDGE_RUNTIMES,
  type EdgeRuntime,
  startEdgeHost,
} from "./support/edge-hosts.ts";

const NS = "edge";
const SIZE = 2 * 1024 * 1024 + 512;
const ALICE = { authorization: "Bearer alice-token" };
const BOB = { authorization: "Bearer bob-token" };
const APP_ORIGIN = "https://app.example";
/** Unaligned on purpose: a resumed stream starts at the block holding it. */
const RESUME_AT = 4096 * 50 + 7;

interface Fixture {
  base: Uint8Array;
  target: Uint8Array;
  /** The in-cluster gateway's access log, one JSON line per call. */
  log: string[];
  inCluster: Awaited<ReturnType<typeof startGateway>>;
  slow: SlowStore;
  proxy: CutProxy;
  dispose(): Promise<void>;
}

async function inClusterTier(): Promise<Fixture> {
  const dataDir = await Deno.makeTempDir({ prefix: "cbt-edge-" });
  const rng = new Rng(1111);
  const base = randomImage(rng, SIZE);
  const target = mutate(rng, base, SIZE + 4096);
  await writeImage(dataDir, NS, "vol", "base", base);
  await writeImage(dataDir, NS, "vol", "target", target);
  // The target's blocks paced: "slow" at one message per 100 ms (a stream
  // still running when a client cancels), "paced" at one per 2 ms, about a
  // real sidecar's pace (a cut that lands mid-stream, not after one burst).
  const slow = new SlowStore(
    new NodeFileSnapshotStore({ dataDir, blockMetadataType: FIXED_LENGTH }),
    {
      slow: { servedAs: "target", intervalMs: 100 },
      paced: { servedAs: "target", intervalMs: 2 },
    },
  );
  const log: string[] = [];
  const inCluster = await startGateway(
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
  const proxy = startCutProxy(Number(new URL(inCluster.httpUrl).port));
  return {
    base,
    target,
    log,
    inCluster,
    slow,
    proxy,
    async dispose() {
      await proxy.close();
      await inCluster.close();
      await Deno.remove(dataDir, { recursive: true });
    },
  };
}

function expectedAllocated(f: Fixture, from = 0): Tuple[] {
  return expectedTuples(
    allocatedBlocks(f.target),
    "FIXED",
    f.target.length,
    from,
  );
}

function expectedDelta(f: Fixture, from = 0): Tuple[] {
  return expectedTuples(
    changedBlocks(f.base, f.target),
    "FIXED",
    f.target.length,
    from,
  );
}

const transports: Record<string, (baseUrl: string) => Transport> = {
  "Connect": (baseUrl) =>
    createConnectTransport({ baseUrl, useBinaryFormat: true }),
  "Connect JSON": (baseUrl) => createConnectTransport({ baseUrl }),
  "gRPC-Web": (baseUrl) =>
    createGrpcWebTransport({ baseUrl, useBinaryFormat: true }),
};

/** An HTTP/JSON stream's records; the last one must say it ended. */
async function httpJsonRecords(
  url: string,
  format: "ndjson" | "sse",
  headers: Record<string, string> = ALICE,
): Promise<Rec[]> {
  const response = await fetch(url, {
    headers: {
      ...headers,
      accept: format === "sse" ? "text/event-stream" : "application/x-ndjson",
    },
  });
  const text = await response.text();
  equal(response.status, 200, text);
  const records = format === "sse"
    ? sseRecords(parseSse(text))
    : parseNdjson(text);
  equal(records.at(-1)?.type, "end", text.slice(-300));
  return records;
}

async function codeOf(call: Promise<unknown>): Promise<Code | undefined> {
  try {
    await call;
  } catch (e) {
    return ConnectError.from(e).code;
  }
  return undefined;
}

async function until(
  what: string,
  condition: () => boolean,
  detail?: () => string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) {
      throw new Error(
        `timed out waiting: ${what}${detail ? `: ${detail()}` : ""}`,
      );
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

function logged(f: Fixture, snapshot: string): Rec[] {
  return f.log.map((l) => JSON.parse(l)).filter((r) => r.snapshot === snapshot);
}

function activeStreams(f: Fixture): number {
  return [
    ...f.inCluster.gateway.metrics.render().matchAll(
      /^cbt_gateway_streams_active\{[^}]*\} (\d+)$/gm,
    ),
  ].reduce((sum, m) => sum + Number(m[1]), 0);
}

for (const runtime of EDGE_RUNTIMES) {
  Deno.test(`edge on ${runtime}: every surface, in front of an in-cluster gateway`, async (t) => {
    const f = await inClusterTier();
    const edge = await startEdgeHost(runtime, {
      CBT_GATEWAY_UPSTREAM_URL: f.proxy.url,
      CBT_GATEWAY_CORS_ORIGIN: APP_ORIGIN,
      CBT_GATEWAY_ACCESS_LOG: "on",
    });
    try {
      await t.step(
        "allocated, delta and a resumed delta equal ground truth on every protocol",
        async () => {
          for (const [name, transport] of Object.entries(transports)) {
            const client = createClient(SnapshotMetadata, transport(edge.url));
            const byName = createClient(GatewayService, transport(edge.url));
            for (const from of [0, RESUME_AT]) {
              const startingOffset = BigInt(from);
              deepStrictEqual(
                await collectTuples(client.getMetadataAllocated({
                  namespace: NS,
                  snapshotName: "target",
                  startingOffset,
                  maxResults: 13,
                }, { headers: ALICE })),
                expectedAllocated(f, from),
                `${name} allocated from ${from}`,
              );
              deepStrictEqual(
                await collectTuples(client.getMetadataDelta({
                  namespace: NS,
                  baseSnapshotId: "vol/base",
                  targetSnapshotName: "target",
                  startingOffset,
                  maxResults: 7,
                }, { headers: ALICE })),
                expectedDelta(f, from),
                `${name} delta from ${from}`,
              );
              deepStrictEqual(
                await collectTuples(byName.getMetadataDeltaByName({
                  namespace: NS,
                  baseSnapshotName: "base",
                  targetSnapshotName: "target",
                  startingOffset,
                }, { headers: ALICE })),
                expectedDelta(f, from),
                `${name} delta by name from ${from}`,
              );
            }
          }
          for (const format of ["ndjson", "sse"] as const) {
            const at = `${edge.url}/v1/namespaces/${NS}/snapshots/target`;
            for (const from of [0, RESUME_AT]) {
              deepStrictEqual(
                tuplesOf(
                  await httpJsonRecords(
                    `${at}/allocated?maxResults=13&startingOffset=${from}`,
                    format,
                  ),
                ),
                expectedAllocated(f, from),
                `${format} allocated from ${from}`,
              );
              deepStrictEqual(
                tuplesOf(
                  await httpJsonRecords(
                    `${at}/delta?baseSnapshotId=vol%2Fbase&startingOffset=${from}`,
                    format,
                  ),
                ),
                expectedDelta(f, from),
                `${format} delta from ${from}`,
              );
              deepStrictEqual(
                tuplesOf(
                  await httpJsonRecords(
                    `${at}/delta?baseSnapshotName=base&maxResults=5&startingOffset=${from}`,
                    format,
                  ),
                ),
                expectedDelta(f, from),
                `${format} delta by name from ${from}`,
              );
            }
          }
        },
      );

      await t.step(
        "the snapshot list comes from the in-cluster tier",
        async () => {
          const client = createClient(
            GatewayService,
            transports["Connect"](edge.url),
          );
          const { snapshots } = await client.listSnapshots({ namespace: NS }, {
            headers: ALICE,
          });
          deepStrictEqual(
            snapshots.map((s) => [s.name, s.snapshotId, s.volumeCapacityBytes])
              .sort(),
            [
              ["base", "vol/base", BigInt(SIZE)],
              ["target", "vol/target", BigInt(SIZE + 4096)],
            ],
          );
          const listed = await fetch(
            `${edge.url}/v1/namespaces/${NS}/snapshots`,
            { headers: ALICE },
          );
          equal(listed.status, 200);
          deepStrictEqual(
            (await listed.json()).snapshots.map((s: Rec) => s.name).sort(),
            ["base", "target"],
          );
        },
      );

      await t.step(
        "a client that cancels at the edge ends the in-cluster stream",
        async () => {
          for (const how of ["Connect", "NDJSON"]) {
            const before = logged(f, "slow").length;
            const abortedBefore = f.slow.abortedWhileSlow;
            const abort = new AbortController();
            if (how === "Connect") {
              const client = createClient(
                SnapshotMetadata,
                transports["Connect"](edge.url),
              );
              for await (
                const message of client.getMetadataAllocated(
                  { namespace: NS, snapshotName: "slow", maxResults: 1 },
                  { headers: ALICE, signal: abort.signal },
                )
              ) {
                equal(message.blockMetadata.length, 1);
                // connect-web 2.2 does not abort its fetch on a bare break.
                abort.abort();
                break;
              }
            } else {
              const response = await fetch(
                `${edge.url}/v1/namespaces/${NS}/snapshots/slow/allocated?maxResults=1`,
                { headers: ALICE, signal: abort.signal },
              );
              const reader = response.body!.getReader();
              let text = "";
              while (!text.includes('"type":"blocks"')) {
                const r = await reader.read();
                ok(!r.done, "the stream ended before its first blocks");
                text += new TextDecoder().decode(r.value);
              }
              abort.abort();
              await reader.cancel().catch(() => {});
            }
            // The in-cluster stream was still running (it would take
            // 30 s more): it must end now, as cancelled.
            await until(
              `${how}: the in-cluster stream is cancelled`,
              () =>
                f.slow.abortedWhileSlow === abortedBefore + 1 &&
                logged(f, "slow").length === before + 1,
              () =>
                `${f.slow.abortedWhileSlow} aborted; log: ${
                  f.log.slice(-2).join(" ")
                }; edge: ${edge.output()}`,
            );
            const line = logged(f, "slow").at(-1)!;
            equal(line.code, "canceled", JSON.stringify(line));
            equal(line.caller, "alice");
            ok(line.tuples < expectedAllocated(f).length);
            await until(
              `${how}: no stream active`,
              () => activeStreams(f) === 0,
            );
          }
        },
      );

      await t.step(
        "Authorization reaches the in-cluster tier; refusals keep their code",
        async () => {
          for (const [name, transport] of Object.entries(transports)) {
            const client = createClient(SnapshotMetadata, transport(edge.url));
            const call = (headers: Record<string, string>) =>
              collectTuples(client.getMetadataAllocated(
                { namespace: NS, snapshotName: "target" },
                { headers },
              ));
            equal(await codeOf(call({})), Code.Unauthenticated, name);
            equal(
              await codeOf(call({ authorization: "Bearer forged" })),
              Code.Unauthenticated,
              name,
            );
            equal(await codeOf(call(BOB)), Code.PermissionDenied, name);
          }
          const at =
            `${edge.url}/v1/namespaces/${NS}/snapshots/target/allocated`;
          for (
            const [headers, status, code] of [
              [{}, 401, "unauthenticated"],
              [BOB, 403, "permission_denied"],
            ] as const
          ) {
            const response = await fetch(at, { headers });
            equal(response.status, status);
            equal((await response.json()).code, code);
          }
          // Bob's token authenticated him there, so the refusal is about
          // the namespace, not a missing credential.
          ok(
            logged(f, "target").some((r) =>
              r.code === "permission_denied" && r.refused
            ),
            "the in-cluster tier refused bob itself",
          );
        },
      );

      await t.step(
        "stream tickets are minted and redeemed by the in-cluster tier",
        async () => {
          const at = `${edge.url}/v1/namespaces/${NS}/snapshots/target`;
          const refused = await fetch(`${at}/stream-tickets`, {
            method: "POST",
            headers: BOB,
          });
          equal(refused.status, 403);
          await refused.body?.cancel();
          const issued = await fetch(`${at}/stream-tickets`, {
            method: "POST",
            headers: ALICE,
          });
          equal(issued.status, 201);
          const { ticket } = await issued.json();
          deepStrictEqual(
            tuplesOf(
              await httpJsonRecords(
                `${at}/allocated?ticket=${encodeURIComponent(ticket)}`,
                "sse",
                {},
              ),
            ),
            expectedAllocated(f),
          );
        },
      );

      await t.step(
        "CORS preflight, /ui/, /openapi.json and /healthz are answered at the edge",
        async () => {
          const preflight = await fetch(
            `${edge.url}/snapshotmetadata.SnapshotMetadata/GetMetadataAllocated`,
            {
              method: "OPTIONS",
              headers: {
                origin: APP_ORIGIN,
                "access-control-request-method": "POST",
                "access-control-request-headers":
                  "authorization,content-type,connect-protocol-version",
              },
            },
          );
          await preflight.body?.cancel();
          equal(preflight.status, 204);
          equal(
            preflight.headers.get("access-control-allow-origin"),
            APP_ORIGIN,
          );
          ok(
            preflight.headers.get("access-control-allow-headers")?.includes(
              "authorization",
            ),
          );
          const stranger = await fetch(`${edge.url}/healthz`, {
            headers: { origin: "https://elsewhere.example" },
          });
          await stranger.body?.cancel();
          equal(stranger.headers.get("access-control-allow-origin"), null);

          const health = await fetch(`${edge.url}/healthz`);
          deepStrictEqual(await health.json(), {
            status: "ok",
            backend: "connect",
          });
          const ui = await fetch(`${edge.url}/ui/`);
          equal(ui.status, 200);
          ok(ui.headers.get("content-type")?.startsWith("text/html"));
          ok((await ui.text()).includes("<script"));
          const openapi = await fetch(`${edge.url}/openapi.json`);
          equal(openapi.status, 200);
          ok((await openapi.json()).openapi.startsWith("3.1"));
        },
      );
    } finally {
      await edge.close();
      await f.dispose();
    }
  });

  Deno.test({
    name:
      `edge on ${runtime}: a cut between the tiers mid-stream is resumed with nothing lost or doubled`,
    fn: () => cutBetweenTiers(runtime),
  });
}

/**
 * Where the link between the tiers is cut: past the response head and the
 * first messages (about a third of the paced stream). Earlier cuts fail on
 * Bun 1.4.4, whose fetch drops body bytes that arrive in the same read as
 * the connection closing: the edge then sees a failure before any message,
 * which resume deliberately does not retry (README, Deployment shapes).
 */
const MID_STREAM_CUT_BYTES = 1500;

async function cutBetweenTiers(runtime: EdgeRuntime): Promise<void> {
  const f = await inClusterTier();
  const edge = await startEdgeHost(runtime, {
    CBT_GATEWAY_UPSTREAM_URL: f.proxy.url,
  });
  try {
    for (const [name, transport] of Object.entries(transports)) {
      const client = createClient(SnapshotMetadata, transport(edge.url));
      const cut = f.proxy.cutAfter(MID_STREAM_CUT_BYTES);
      deepStrictEqual(
        await collectTuples(client.getMetadataAllocated({
          namespace: NS,
          snapshotName: "paced",
          maxResults: 2,
        }, { headers: ALICE })),
        expectedAllocated(f),
        name,
      );
      await cut; // it really was cut
    }
    for (const format of ["ndjson", "sse"] as const) {
      const cut = f.proxy.cutAfter(MID_STREAM_CUT_BYTES);
      const records = await httpJsonRecords(
        `${edge.url}/v1/namespaces/${NS}/snapshots/paced/allocated?maxResults=2`,
        format,
      );
      deepStrictEqual(tuplesOf(records), expectedAllocated(f), format);
      await cut;
    }
  } finally {
    await edge.close();
    await f.dispose();
  }
}
