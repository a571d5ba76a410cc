/**
 * The gateway behind a real ingress: Debian's nginx running the shipped
 * deploy/nginx/cbt-gateway.conf (only ports and read timeouts rendered for
 * the test), with the clients users use — connect-web (Connect binary and
 * JSON, gRPC-Web), `buf curl --protocol grpc` through grpc_pass, and `curl -N`.
 *
 * What a proxy gets wrong, each shown not to happen here: streams held back
 * until they end, a slow client's stream spooled to disk (the upstream runs
 * unchecked), quiet streams cut by the idle timeout, mid-stream errors lost.
 * nginx's read timeout is set short (READ_TIMEOUT_S) so the quiet stream test
 * is quick, and a control run without heartbeats proves that timeout is armed.
 * Each config line these tests lean on was checked by breaking it: buffering
 * on fails the slow-client test, gzip on the NDJSON encoding check, both
 * together the early-records test.
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
import { create, toBinary } from "@bufbuild/protobuf";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import {
  GetMetadataAllocatedRequestSchema,
  SnapshotMetadata,
} from "../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import { createHttpJsonRoutes } from "../src/front/http-json/index.ts";
import { type RunningGateway, startGateway } from "../src/server/start.ts";
import { seedNodeDemoIfEmpty } from "../src/adapter/node-fs/file-store.ts";
import type {
  AllocatedQuery,
  Backend,
  CallOptions,
} from "../src/backend/backend.ts";
import {
  encodeMetadataMessage,
  FIXED_LENGTH,
} from "../src/wire/metadata-message.ts";
import { startTestGateway } from "./support/gateway.ts";
import {
  allocatedBlocks,
  changedBlocks,
  expectedTuples,
  type Tuple,
} from "./support/ground-truth.ts";
import {
  parseNdjson,
  parseSse,
  type Rec,
  sseRecords,
  tuplesOf,
} from "./support/json-records.ts";
import {
  BLOCK_SIZE,
  demoBackend,
  MemoryBackend,
} from "./support/memory-backend.ts";
import { loadManifests } from "./support/kube-fixture.ts";
import {
  gatewayNginxConfig,
  type RunningNginx,
  SHIPPED_CONFIG,
  startNginx,
} from "./support/nginx.ts";
import { parseJsonSequence } from "./support/json-sequence.ts";
import { ROOT } from "./support/run.ts";

/** nginx's proxy_read_timeout / grpc_read_timeout in these tests. */
const READ_TIMEOUT_S = 2;
/** The gateway's HTTP/JSON heartbeat, well inside the read timeout. */
const HEARTBEAT_MS = 300;
/** Upper bound for any one client process or call. */
const CALL_TIMEOUT_MS = 30_000;
/**
 * How long the first records may take to arrive while the upstream holds the
 * rest (they leave the gateway at once; a buffering proxy would hold them
 * until its read timeout, which the buffering test sets far longer).
 */
const EARLY_MS = 10_000;
const BUFFERING_TEST_READ_TIMEOUT_S = 60;

const SNAPSHOT_METADATA = "snapshotmetadata.SnapshotMetadata";

// ---------------------------------------------------------------------------
// The stack: a gateway, nginx in front of both its ports.

interface Stack {
  /** nginx's HTTP/1.1 listener: Connect, gRPC-Web, HTTP/JSON. */
  httpUrl: string;
  /** nginx's cleartext HTTP/2 listener: native gRPC via grpc_pass. */
  grpcUrl: string;
  nginx: RunningNginx;
}

async function behindNginx<T>(
  gw: RunningGateway,
  body: (s: Stack) => Promise<T>,
  readTimeoutS = READ_TIMEOUT_S,
): Promise<T> {
  try {
    const nginx = await startNginx(
      2,
      ([listenHttp, listenGrpc]) =>
        gatewayNginxConfig({
          listenHttp,
          listenGrpc,
          gatewayHttp: Number(new URL(gw.httpUrl).port),
          gatewayGrpc: Number(new URL(gw.grpcUrl).port),
          readTimeout: `${readTimeoutS}s`,
        }),
    );
    try {
      return await body({
        httpUrl: `http://127.0.0.1:${nginx.ports[0]}`,
        grpcUrl: `http://127.0.0.1:${nginx.ports[1]}`,
        nginx,
      });
    } finally {
      await nginx.close();
    }
  } finally {
    await gw.close();
  }
}

/** A gateway on a memory backend that can pause or fail mid-stream. */
async function memoryGateway(
  backend: Backend,
  heartbeatMs = HEARTBEAT_MS,
): Promise<RunningGateway> {
  return await startGateway(
    { host: "127.0.0.1", port: 0, grpcPort: 0, corsOrigins: [] },
    {
      backend,
      routes: (gateway) => [createHttpJsonRoutes(gateway, { heartbeatMs })],
    },
  );
}

/** The seeded demo on the embedded store, and ground truth from its image files. */
async function withDemo(
  body: (gw: RunningGateway, truth: DemoTruth) => Promise<void>,
): Promise<void> {
  const dataDir = await Deno.makeTempDir({ prefix: "cbt-ingress-" });
  try {
    await seedNodeDemoIfEmpty(dataDir);
    const image = (snap: string) =>
      Deno.readFileSync(`${dataDir}/demo/vol-1/${snap}.img`);
    const truth: DemoTruth = {
      allocated: (snap, start = 0) => {
        const img = image(snap);
        return expectedTuples(allocatedBlocks(img), "FIXED", img.length, start);
      },
      delta: (base, target) => {
        const t = image(target);
        return expectedTuples(
          changedBlocks(image(base), t),
          "FIXED",
          t.length,
          0,
        );
      },
      capacity: image("snap-1").length,
    };
    await body(await startTestGateway({ dataDir }), truth);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
}

interface DemoTruth {
  allocated(snap: string, start?: number): Tuple[];
  delta(base: string, target: string): Tuple[];
  capacity: number;
}

interface Call {
  rpc: "GetMetadataAllocated" | "GetMetadataDelta";
  request: Record<string, string | number>;
  expected: Tuple[];
}

function demoCalls(truth: DemoTruth): Call[] {
  const calls: Call[] = [];
  for (const snap of ["snap-1", "snap-2", "snap-3"]) {
    calls.push({
      rpc: "GetMetadataAllocated",
      request: { namespace: "demo", snapshotName: snap, maxResults: 7 },
      expected: truth.allocated(snap),
    });
  }
  const start = 4096 * 120 + 5;
  calls.push({
    rpc: "GetMetadataAllocated",
    request: {
      namespace: "demo",
      snapshotName: "snap-3",
      startingOffset: start,
    },
    expected: truth.allocated("snap-3", start),
  });
  for (
    const [b, t] of [["snap-1", "snap-2"], ["snap-2", "snap-3"], [
      "snap-1",
      "snap-3",
    ]]
  ) {
    calls.push({
      rpc: "GetMetadataDelta",
      request: {
        namespace: "demo",
        baseSnapshotId: `vol-1/${b}`,
        targetSnapshotName: t,
        maxResults: 10,
      },
      expected: truth.delta(b, t),
    });
  }
  return calls;
}

// ---------------------------------------------------------------------------
// Clients.

const webClients: Record<string, (baseUrl: string) => Transport> = {
  "Connect binary": (baseUrl) =>
    createConnectTransport({ baseUrl, useBinaryFormat: true }),
  "Connect JSON": (baseUrl) =>
    createConnectTransport({ baseUrl, useBinaryFormat: false }),
  "gRPC-Web": (baseUrl) => createGrpcWebTransport({ baseUrl }),
};

/** A response stream of either RPC: only the tuples matter here. */
type BlockStream = AsyncIterable<
  { blockMetadata: { byteOffset: bigint; sizeBytes: bigint }[] }
>;

function startCall(
  transport: Transport,
  call: Pick<Call, "rpc" | "request">,
): BlockStream {
  const client = createClient(SnapshotMetadata, transport);
  const options = { timeoutMs: CALL_TIMEOUT_MS };
  return call.rpc === "GetMetadataAllocated"
    ? client.getMetadataAllocated(call.request, options)
    : client.getMetadataDelta(call.request, options);
}

/** Messages' tuples until the stream ends, and the error that ended it, if any. */
async function collect(
  stream: BlockStream,
): Promise<{ tuples: Tuple[]; messages: number; error?: ConnectError }> {
  const tuples: Tuple[] = [];
  let messages = 0;
  try {
    for await (const m of stream) {
      messages++;
      for (const b of m.blockMetadata) {
        tuples.push([Number(b.byteOffset), Number(b.sizeBytes)]);
      }
    }
  } catch (err) {
    ok(err instanceof ConnectError, `not a ConnectError: ${err}`);
    return { tuples, messages, error: err };
  }
  return { tuples, messages };
}

/** A child process whose stdout is read as it arrives; killed if it outlives CALL_TIMEOUT_MS. */
class Proc {
  readonly #child: Deno.ChildProcess;
  readonly #reader: ReadableStreamDefaultReader<string>;
  readonly #watchdog: ReturnType<typeof setTimeout>;
  readonly stderr: Promise<string>;
  text = "";

  constructor(cmd: string, args: string[]) {
    this.#child = new Deno.Command(cmd, {
      args,
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#reader = this.#child.stdout.pipeThrough(new TextDecoderStream())
      .getReader();
    this.stderr = new Response(this.#child.stderr).text();
    this.#watchdog = setTimeout(() => this.kill(), CALL_TIMEOUT_MS);
  }

  /** Reads until `done(text)`; false if the output ended first. */
  async readUntil(done: (text: string) => boolean): Promise<boolean> {
    while (!done(this.text)) {
      const { done: ended, value } = await this.#reader.read();
      if (ended) return false;
      this.text += value;
    }
    return true;
  }

  /** All output, and the exit code. */
  async finish(): Promise<{ code: number; stdout: string; stderr: string }> {
    await this.readUntil(() => false);
    const { code } = await this.#child.status;
    clearTimeout(this.#watchdog);
    return { code, stdout: this.text, stderr: await this.stderr };
  }

  kill(): void {
    try {
      this.#child.kill("SIGKILL");
    } catch { /* already exited */ }
  }

  /** For finally blocks: never leaves the process or its pipes behind. */
  async close(): Promise<void> {
    this.kill();
    await this.finish().catch(() => {});
  }
}

function curl(...args: string[]): Proc {
  return new Proc("curl", ["-sS", "-N", "--max-time", "30", ...args]);
}

const BUF = `${ROOT}/node_modules/.bin/buf`;

function bufCurlGrpc(url: string, rpc: string, request: unknown): Proc {
  return new Proc(BUF, [
    "curl",
    "--schema",
    `${ROOT}/proto`,
    "--protocol",
    "grpc",
    "--http2-prior-knowledge",
    "--data",
    JSON.stringify(request),
    `${url}/${SNAPSHOT_METADATA}/${rpc}`,
  ]);
}

function bufTuples(messages: Rec[]): Tuple[] {
  return messages.flatMap((m) =>
    (m.blockMetadata ?? []).map((
      b: Rec,
    ) => [Number(b.byteOffset ?? 0), Number(b.sizeBytes ?? 0)] as Tuple)
  );
}

/** Complete NDJSON lines received so far. */
function ndjsonSoFar(text: string): Rec[] {
  return parseNdjson(text.slice(0, text.lastIndexOf("\n") + 1));
}

/** `p`, or a failure saying `what` did not happen within `ms`. */
async function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what}: not within ${ms} ms`)),
      ms,
    );
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

async function poll(
  what: string,
  check: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// ---------------------------------------------------------------------------

Deno.test("ingress: Connect, gRPC-Web and HTTP/JSON through nginx equal ground truth", async () => {
  await withDemo((gw, truth) =>
    behindNginx(gw, async ({ httpUrl }) => {
      for (const [name, make] of Object.entries(webClients)) {
        const transport = make(httpUrl);
        for (const call of demoCalls(truth)) {
          const got = await collect(startCall(transport, call));
          equal(got.error, undefined, `${name} ${call.rpc}: ${got.error}`);
          deepStrictEqual(
            got.tuples,
            call.expected,
            `${name} ${call.rpc} ${JSON.stringify(call.request)}`,
          );
        }
        const missing = await collect(startCall(transport, {
          rpc: "GetMetadataAllocated",
          request: { namespace: "demo", snapshotName: "snap-9" },
        }));
        equal(missing.messages, 0);
        equal(Code[missing.error!.code], Code[Code.NotFound], name);
      }

      // curl asks for gzip and the parent http {} gzips these types: the
      // shipped `gzip off` keeps streams as they are.
      const base = `${httpUrl}/v1/namespaces/demo/snapshots`;
      const ndjson = await curl(
        "--compressed",
        "-D",
        "/dev/stderr",
        `${base}/snap-2/delta?baseSnapshotName=snap-1&maxResults=10`,
      ).finish();
      equal(ndjson.code, 0, ndjson.stderr);
      ok(/^HTTP\/1\.1 200/m.test(ndjson.stderr), ndjson.stderr);
      ok(
        !/^content-encoding:/im.test(ndjson.stderr),
        `nginx compressed the stream:\n${ndjson.stderr}`,
      );
      const records = parseNdjson(ndjson.stdout);
      deepStrictEqual(tuplesOf(records), truth.delta("snap-1", "snap-2"));
      equal(records[records.length - 1].type, "end");
      const sse = await curl(
        "-H",
        "Accept: text/event-stream",
        `${base}/snap-3/allocated?maxResults=9`,
      ).finish();
      equal(sse.code, 0, sse.stderr);
      const events = sseRecords(parseSse(sse.stdout));
      deepStrictEqual(tuplesOf(events), truth.allocated("snap-3"));
      equal(events[events.length - 1].type, "end");
    })
  );
});

Deno.test("ingress: native gRPC through nginx grpc_pass (buf curl) equals ground truth, errors keep their code", async () => {
  await withDemo((gw, truth) =>
    behindNginx(gw, async ({ grpcUrl, nginx }) => {
      const calls = demoCalls(truth).filter((_, i) => i === 1 || i >= 3);
      for (const call of calls) {
        const r = await bufCurlGrpc(grpcUrl, call.rpc, call.request).finish();
        equal(r.code, 0, `buf curl ${call.rpc}: ${r.stderr}`);
        deepStrictEqual(
          bufTuples(parseJsonSequence(r.stdout)),
          call.expected,
          `buf curl grpc ${call.rpc} ${JSON.stringify(call.request)}`,
        );
      }
      const errors: [string, Record<string, string>][] = [
        ["GetMetadataAllocated", { namespace: "demo", snapshotName: "snap-9" }],
        ["GetMetadataDelta", {
          namespace: "demo",
          baseSnapshotId: "vol-1/snap-9",
          targetSnapshotName: "snap-2",
        }],
      ];
      for (const [rpc, request] of errors) {
        const r = await bufCurlGrpc(grpcUrl, rpc, request).finish();
        ok(
          r.code !== 0,
          `buf curl ${rpc} ${JSON.stringify(request)} succeeded`,
        );
        equal(parseJsonSequence(r.stdout).length, 0);
        equal(parseJsonSequence(r.stderr)[0]?.code, "not_found", r.stderr);
      }
      // Every call went through nginx as HTTP/2.
      const want = calls.length + errors.length;
      await poll("nginx's access log", async () =>
        (await nginx.accessLog()).split("\n").filter((l) =>
          l.includes(`"POST /${SNAPSHOT_METADATA}/`) && l.includes("HTTP/2.0")
        ).length === want);
    })
  );
});

Deno.test("ingress: nginx passes records and messages on before the stream ends", async () => {
  const backend = demoBackend();
  const request = { namespace: "demo", snapshotName: "snap-2", maxResults: 5 };
  await behindNginx(
    await memoryGateway(backend),
    async ({ httpUrl, grpcUrl }) => {
      // The upstream holds its third message until release(); whatever a client
      // has by then, nginx did not buffer.
      backend.armPause(2);
      const c = curl(
        `${httpUrl}/v1/namespaces/demo/snapshots/snap-2/allocated?maxResults=5`,
      );
      try {
        ok(
          await within(
            EARLY_MS,
            "NDJSON records while the upstream is held",
            c.readUntil((t) => t.split("\n").length >= 4),
          ),
          `curl output ended early: ${c.text}`,
        );
        deepStrictEqual(ndjsonSoFar(c.text).map((r) => r.type), [
          "header",
          "blocks",
          "blocks",
        ]);
        equal(backend.streamsFinished, 0, "the stream finished before release");
        backend.release();
        const r = await c.finish();
        equal(r.code, 0, r.stderr);
        const records = parseNdjson(r.stdout);
        equal(records[records.length - 1].type, "end");
        equal(tuplesOf(records).length, 56);
      } finally {
        await c.close();
      }

      // Connect and gRPC-Web responses carry no X-Accel-Buffering header, so
      // only the config decides (with buffering on and gzip on, nginx holds
      // them until the stream ends).
      for (const [name, make] of Object.entries(webClients)) {
        backend.armPause(2);
        const finishedBefore: number = backend.streamsFinished;
        const it = startCall(make(httpUrl), {
          rpc: "GetMetadataAllocated",
          request,
        })[Symbol.asyncIterator]();
        try {
          for (let i = 0; i < 2; i++) {
            const m = await within(
              EARLY_MS,
              `${name} message ${i} while the upstream is held`,
              it.next(),
            );
            ok(!m.done, `${name}: stream ended early`);
            equal(m.value.blockMetadata.length, 5);
          }
          equal(
            backend.streamsFinished,
            finishedBefore,
            `${name}: finished before release`,
          );
          backend.release();
          let rest = 0;
          while (!(await it.next()).done) rest++;
          equal(rest, 10, name);
        } finally {
          backend.release();
          await it.return?.();
        }
      }

      backend.armPause(2);
      const before: number = backend.streamsFinished;
      const b = bufCurlGrpc(grpcUrl, "GetMetadataAllocated", request);
      try {
        ok(
          await within(
            EARLY_MS,
            "gRPC messages while the upstream is held",
            b.readUntil((t) => parseJsonSequence(t).length >= 2),
          ),
          `buf curl output ended early: ${b.text}`,
        );
        equal(
          backend.streamsFinished,
          before,
          "gRPC: finished before release",
        );
        backend.release();
        const r = await b.finish();
        equal(r.code, 0, r.stderr);
        equal(bufTuples(parseJsonSequence(r.stdout)).length, 56);
      } finally {
        backend.release();
        await b.close();
      }
    },
    BUFFERING_TEST_READ_TIMEOUT_S,
  );
});

Deno.test("ingress: a quiet stream outlives nginx's read timeout on heartbeats and ends with its end record", async () => {
  const backend = demoBackend();
  const path = "/v1/namespaces/demo/snapshots/snap-2/allocated?maxResults=5";
  await behindNginx(await memoryGateway(backend), async ({ httpUrl }) => {
    backend.armPause(1); // after the first blocks record: silence upstream
    const ndjson = curl(`${httpUrl}${path}`);
    const sse = curl("-H", "Accept: text/event-stream", `${httpUrl}${path}`);
    try {
      ok(await ndjson.readUntil((t) => t.includes('"type":"blocks"')));
      ok(await sse.readUntil((t) => t.includes('"type":"blocks"')));
      const quietSince = Date.now();
      // Stay quiet upstream for longer than nginx's read timeout, plus a margin.
      const quietMs = READ_TIMEOUT_S * 1000 + 1500;
      ok(
        await ndjson.readUntil(() => Date.now() - quietSince > quietMs),
        `NDJSON cut during the quiet time: ${ndjson.text}`,
      );
      ok(
        await sse.readUntil(() => Date.now() - quietSince > quietMs),
        `SSE cut during the quiet time: ${sse.text}`,
      );
      equal(backend.streamsFinished, 0);
      backend.release();
      const n = await ndjson.finish();
      equal(n.code, 0, n.stderr);
      const records = parseNdjson(n.stdout);
      const heartbeats = records.filter((r) => r.type === "heartbeat").length;
      ok(heartbeats >= 5, `${heartbeats} heartbeats`);
      equal(records[records.length - 1].type, "end");
      equal(tuplesOf(records).length, 56);
      const s = await sse.finish();
      equal(s.code, 0, s.stderr);
      const events = parseSse(s.stdout);
      ok(events.filter((e) => e.comments.includes("heartbeat")).length >= 5);
      const sseRecs = sseRecords(events);
      equal(sseRecs[sseRecs.length - 1].type, "end");
      equal(tuplesOf(sseRecs).length, 56);
    } finally {
      backend.release();
      await ndjson.close();
      await sse.close();
    }
  });
});

Deno.test("ingress (control): without heartbeats nginx's read timeout does cut the quiet stream", async () => {
  const backend = demoBackend();
  await behindNginx(
    await memoryGateway(backend, 60_000),
    async ({ httpUrl, nginx }) => {
      backend.armPause(1);
      const started = Date.now();
      const c = curl(
        `${httpUrl}/v1/namespaces/demo/snapshots/snap-2/allocated?maxResults=5`,
      );
      try {
        const r = await c.finish();
        const elapsed = Date.now() - started;
        ok(elapsed >= READ_TIMEOUT_S * 1000 - 100, `cut after ${elapsed} ms`);
        ok(r.code !== 0, "curl saw a complete response");
        const records = ndjsonSoFar(r.stdout);
        deepStrictEqual(records.map((x) => x.type), ["header", "blocks"]);
        ok(/upstream timed out/.test(await nginx.errorLog()));
        // nginx closed its upstream connection too: the call was cancelled.
        await poll(
          "the upstream call to be aborted",
          () => Promise.resolve(backend.streamsAborted === 1),
        );
        equal(backend.streamsFinished, 0);
      } finally {
        backend.release();
        await c.close();
      }
    },
  );
});

Deno.test("ingress: a mid-stream failure through nginx still arrives, on every protocol", async () => {
  const backend = demoBackend();
  backend.injection = { failAfterMessages: 4 };
  const request = { namespace: "demo", snapshotName: "snap-2", maxResults: 6 };
  await behindNginx(
    await memoryGateway(backend),
    async ({ httpUrl, grpcUrl }) => {
      const url =
        `${httpUrl}/v1/namespaces/demo/snapshots/snap-2/allocated?maxResults=6`;
      const n = await curl(url).finish();
      equal(n.code, 0, n.stderr);
      const records = parseNdjson(n.stdout);
      const got = tuplesOf(records);
      equal(got.length, 24);
      const last = records[records.length - 1];
      equal(last.type, "error");
      equal(last.code, "unavailable");
      equal(last.nextOffset, got[23][0] + got[23][1]);
      ok(!records.some((r) => r.type === "end"));

      const s = await curl("-H", "Accept: text/event-stream", url).finish();
      equal(s.code, 0, s.stderr);
      const events = parseSse(s.stdout);
      const sseRecs = sseRecords(events);
      equal(sseRecs[sseRecs.length - 1].type, "error");
      equal(events[events.length - 1].id, String(last.nextOffset));

      for (const [name, make] of Object.entries(webClients)) {
        const r = await collect(
          startCall(make(httpUrl), { rpc: "GetMetadataAllocated", request }),
        );
        equal(r.messages, 4, name);
        deepStrictEqual(r.tuples, got, name);
        equal(
          Code[r.error!.code],
          Code[Code.Unavailable],
          `${name}: ${r.error}`,
        );
      }

      const g = await bufCurlGrpc(grpcUrl, "GetMetadataAllocated", request)
        .finish();
      ok(g.code !== 0, "buf curl reported success");
      deepStrictEqual(bufTuples(parseJsonSequence(g.stdout)), got);
      equal(parseJsonSequence(g.stderr)[0]?.code, "unavailable", g.stderr);
    },
  );
});

/**
 * Snapshot "long" of namespace "big": `messages` messages of 2048 tuples,
 * made only as the gateway pulls them, so `yielded` shows how far the
 * upstream ran ahead of the client.
 */
class LongStreamBackend extends MemoryBackend {
  static readonly TUPLES = 2048;
  yielded = 0;
  aborted = false;

  constructor(readonly messages: number) {
    super();
    this.add({
      namespace: "big",
      name: "long",
      volume: "vol-big",
      volumeCapacityBytes: messages * LongStreamBackend.TUPLES * BLOCK_SIZE,
      blocks: new Map(),
    });
  }

  override async *getMetadataAllocated(
    q: AllocatedQuery,
    o: CallOptions,
  ): AsyncGenerator<Uint8Array> {
    if (q.snapshotName !== "long") {
      yield* super.getMetadataAllocated(q, o);
      return;
    }
    const n = LongStreamBackend.TUPLES;
    const sizes = new Array<number>(n).fill(BLOCK_SIZE);
    o.signal.addEventListener("abort", () => (this.aborted = true));
    for (let m = 0; m < this.messages && !o.signal.aborted; m++) {
      const offsets = Array.from(
        { length: n },
        (_, i) => (m * n + i) * BLOCK_SIZE,
      );
      yield encodeMetadataMessage({
        blockMetadataType: FIXED_LENGTH,
        volumeCapacityBytes: this.messages * n * BLOCK_SIZE,
        offsets,
        sizes,
      });
      this.yielded++;
    }
  }
}

Deno.test("ingress: a client that stops reading holds the upstream back (nginx spools nothing), and its going away cancels it", async () => {
  // ~24 KiB a message: ~70 MiB in all, far more than the socket buffers
  // between client, nginx and gateway can hold.
  const backend = new LongStreamBackend(3000);
  await behindNginx(
    await memoryGateway(backend),
    async ({ httpUrl, nginx }) => {
      const body = encodeEnvelope(
        0,
        toBinary(
          GetMetadataAllocatedRequestSchema,
          create(GetMetadataAllocatedRequestSchema, {
            namespace: "big",
            snapshotName: "long",
          }),
        ),
      );
      const res = await fetch(
        `${httpUrl}/${SNAPSHOT_METADATA}/GetMetadataAllocated`,
        {
          method: "POST",
          headers: {
            "content-type": "application/connect+proto",
            "connect-protocol-version": "1",
          },
          body,
          signal: AbortSignal.timeout(CALL_TIMEOUT_MS),
        },
      );
      equal(res.status, 200);
      const reader = res.body!.getReader();
      try {
        ok(!(await reader.read()).done); // the stream runs; now stop reading
        // Wait until the upstream stalls: no new message for half a second.
        let last = -1;
        await poll("the upstream to stall", async () => {
          const now = backend.yielded;
          const stalled = now === last;
          last = now;
          if (!stalled) await new Promise((r) => setTimeout(r, 500));
          return stalled;
        });
        ok(
          backend.yielded < backend.messages / 2,
          `the upstream ran ahead to ${backend.yielded} of ${backend.messages} messages`,
        );
        ok(
          !/buffered to a temporary file/.test(await nginx.errorLog()),
          "nginx spooled the stream to disk",
        );
        equal(backend.aborted, false);
      } finally {
        await reader.cancel();
      }
      await poll(
        "the upstream call to be cancelled",
        () => Promise.resolve(backend.aborted),
      );
      ok(backend.yielded < backend.messages / 2);
    },
  );
});

/** nginx time ("1h", "90s", "500ms"…) in seconds. */
function nginxSeconds(value: string): number {
  const m = /^(\d+)(ms|s|m|h|d)?$/.exec(value);
  if (!m) throw new Error(`not an nginx time: ${value}`);
  const unit = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 }[m[2] ?? "s"]!;
  return Number(m[1]) * unit;
}

Deno.test("ingress: deploy/ingress.yaml routes to the Service's ports with the nginx config's settings", async () => {
  const manifests = await loadManifests();
  const conf = await Deno.readTextFile(SHIPPED_CONFIG);
  const directive = (name: string) => {
    const all = [...conf.matchAll(new RegExp(`^\\s*${name} (\\S+);$`, "gm"))];
    equal(all.length, 1, `${name} in ${SHIPPED_CONFIG}`);
    return all[0][1];
  };
  const svc = manifests.find((m) =>
    m.kind === "Service" && m.metadata.name === "cbt-gateway"
  );
  ok(svc, "Service cbt-gateway");
  const ingresses = manifests.filter((m) => m.kind === "Ingress");
  equal(ingresses.length, 2);
  const byPort = new Map<string, Rec>();
  for (const ing of ingresses) {
    equal(ing.metadata.namespace, svc.metadata.namespace);
    const hosts = ing.spec.rules.map((r: Rec) => r.host);
    deepStrictEqual(ing.spec.tls.flatMap((t: Rec) => t.hosts), hosts);
    for (const rule of ing.spec.rules) {
      for (const path of rule.http.paths) {
        equal(path.backend.service.name, svc.metadata.name);
        const port = svc.spec.ports.find((p: Rec) =>
          p.name === path.backend.service.port.name
        );
        ok(port, `Service port ${path.backend.service.port.name}`);
        byPort.set(port.name, { ing, port, hosts });
      }
    }
  }
  const http = byPort.get("http")!, grpc = byPort.get("grpc")!;
  ok(http && grpc && http.ing !== grpc.ing, "one Ingress per Service port");
  const a = (x: Rec, key: string) =>
    x.ing.metadata.annotations[`nginx.ingress.kubernetes.io/${key}`];
  // Connect and gRPC share URL paths: only distinct hosts keep them apart.
  ok(!http.hosts.some((h: string) => grpc.hosts.includes(h)));
  equal(a(grpc, "backend-protocol"), "GRPC");
  equal(grpc.port.appProtocol, "kubernetes.io/h2c");
  ok([undefined, "HTTP"].includes(a(http, "backend-protocol")));
  equal(a(http, "proxy-buffering"), directive("proxy_buffering"));
  equal(
    a(http, "proxy-request-buffering"),
    directive("proxy_request_buffering"),
  );
  equal(
    Number(a(http, "proxy-read-timeout")),
    nginxSeconds(directive("proxy_read_timeout")),
  );
  equal(
    Number(a(grpc, "proxy-read-timeout")),
    nginxSeconds(directive("grpc_read_timeout")),
  );
  equal(
    Number(a(http, "proxy-send-timeout")),
    nginxSeconds(directive("proxy_send_timeout")),
  );
  equal(
    Number(a(grpc, "proxy-send-timeout")),
    nginxSeconds(directive("grpc_send_timeout")),
  );
});
