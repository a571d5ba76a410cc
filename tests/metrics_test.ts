/**
 * /metrics and the access log, through a real gateway (embedded store, demo
 * seed) called over Connect, native gRPC and HTTP/JSON: completed streams,
 * errors before and during the stream, and clients that stop early.
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { SnapshotMetadata } from "../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import { GatewayService } from "../gen/cbtgateway/v1/gateway_pb.ts";
import { createUpstreamGrpcTransport } from "./support/grpc-transport.ts";
import { DEMO } from "../src/store/demo-seed.ts";
import {
  NodeFileSnapshotStore,
  seedNodeDemoIfEmpty,
} from "../src/adapter/node-fs/file-store.ts";
import { startGateway } from "../src/server/start.ts";
import {
  encodeMetadataMessage,
  FIXED_LENGTH,
} from "../src/wire/metadata-message.ts";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { CheckedStream } from "../src/gateway/checked-stream.ts";
import type {
  AllocatedQuery,
  Backend,
  CallOptions,
  DeltaQuery,
  EncodedMessageStream,
} from "../src/backend/backend.ts";
import { DEMO_BLOCKS, parseNdjson, tuplesOf } from "./support/json-records.ts";

const TOKEN = "s3cret-token-must-not-be-logged";
const RPCS = [
  "GetMetadataAllocated",
  "GetMetadataDelta",
  "GetMetadataDeltaByName",
] as const;

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses text exposition format 0.0.4; throws on any malformed line. */
function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  const typed = new Set<string>();
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
    if (meta) {
      if (meta[1] === "TYPE") {
        ok(/^(counter|gauge|histogram)$/.test(meta[3]), line);
        typed.add(meta[2]);
      }
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    ok(m, `not a sample line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    const labelRe = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y;
    const body = m[2] ?? "";
    let pos = 0;
    while (pos < body.length) {
      labelRe.lastIndex = pos;
      const l = labelRe.exec(body);
      ok(l, `bad labels in ${line}`);
      labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => c === "n" ? "\n" : c);
      pos = labelRe.lastIndex;
    }
    const value = Number(m[3]);
    ok(!Number.isNaN(value), line);
    ok(
      typed.has(m[1].replace(/_(bucket|sum|count)$/, "")) || typed.has(m[1]),
      `${m[1]} has no TYPE line`,
    );
    samples.push({ name: m[1], labels, value });
  }
  return samples;
}

/** The value of the one sample with exactly these labels (0 if absent). */
function value(
  samples: Sample[],
  name: string,
  labels: Record<string, string>,
): number {
  const hits = samples.filter((s) =>
    s.name === name &&
    Object.keys(s.labels).length === Object.keys(labels).length &&
    Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  );
  ok(hits.length <= 1, `${name} ${JSON.stringify(labels)} is duplicated`);
  return hits[0]?.value ?? 0;
}

function sum(samples: Sample[], name: string): number {
  return samples.filter((s) => s.name === name).reduce(
    (a, s) => a + s.value,
    0,
  );
}

async function expectCode(p: Promise<unknown>, code: Code): Promise<void> {
  try {
    await p;
  } catch (e) {
    equal(ConnectError.from(e).code, code, String(e));
    return;
  }
  throw new Error(`expected ${Code[code]}`);
}

async function drain(stream: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of stream) { /* read it all */ }
}

/** Reads one message, then cancels the call the way a client gives up. */
async function stopAfterFirst(
  call: (signal: AbortSignal) => AsyncIterable<unknown>,
): Promise<void> {
  const abort = new AbortController();
  let received = 0;
  await expectCode(
    (async () => {
      for await (const _ of call(abort.signal)) {
        received++;
        abort.abort();
      }
    })(),
    Code.Canceled,
  );
  equal(received, 1);
}

/** Counts the tuples of a Connect/gRPC response stream. */
async function countTuples(
  stream: AsyncIterable<{ blockMetadata: unknown[] }>,
): Promise<number> {
  let n = 0;
  for await (const m of stream) n += m.blockMetadata.length;
  return n;
}

/**
 * The embedded store, except that streams of snap-3 stall after their first
 * message until the call is aborted: the demo is small enough to be sent
 * whole before a client's early stop arrives, and a real upstream is slower.
 */
class StallingOnSnap3 implements Backend {
  readonly name = "embedded";
  constructor(private readonly store: NodeFileSnapshotStore) {}
  getMetadataAllocated(q: AllocatedQuery, o: CallOptions) {
    const s = this.store.getMetadataAllocated(q, o);
    return q.snapshotName === "snap-3" ? stallAfterFirst(s, o.signal) : s;
  }
  getMetadataDelta(q: DeltaQuery, o: CallOptions) {
    const s = this.store.getMetadataDelta(q, o);
    return q.targetSnapshotName === "snap-3" ? stallAfterFirst(s, o.signal) : s;
  }
  getSnapshot(ns: string, name: string, o: CallOptions) {
    return this.store.getSnapshot(ns, name, o);
  }
  listSnapshots(ns: string, o: CallOptions) {
    return this.store.listSnapshots(ns, o);
  }
  close() {
    return this.store.close();
  }
}

async function* stallAfterFirst(
  stream: EncodedMessageStream,
  signal: AbortSignal,
): EncodedMessageStream {
  for await (const message of stream) {
    yield message;
    break;
  }
  // Like a backend whose call was aborted: it stops quietly.
  if (!signal.aborted) {
    await new Promise((resolve) =>
      signal.addEventListener("abort", resolve, { once: true })
    );
  }
}

Deno.test("metrics and access log count every call, however it ends", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "cbt-metrics-" });
  await seedNodeDemoIfEmpty(dataDir);
  const lines: string[] = [];
  const store = new NodeFileSnapshotStore({
    dataDir,
    blockMetadataType: FIXED_LENGTH,
  });
  const gw = await startGateway({
    host: "127.0.0.1",
    port: 0,
    grpcPort: 0,
    corsOrigins: [],
  }, { backend: new StallingOnSnap3(store), log: (l) => lines.push(l) });
  const grpc = createUpstreamGrpcTransport({ baseUrl: gw.grpcUrl });
  try {
    const scrape = async () => {
      const r = await fetch(`${gw.httpUrl}/metrics`);
      equal(r.status, 200);
      equal(
        r.headers.get("content-type"),
        "text/plain; version=0.0.4; charset=utf-8",
      );
      return parseExposition(await r.text());
    };
    const connect = createClient(
      SnapshotMetadata,
      createConnectTransport({ baseUrl: gw.httpUrl }),
    );
    const grpcMeta = createClient(SnapshotMetadata, grpc);
    const grpcGateway = createClient(GatewayService, grpc);
    const auth = { headers: { authorization: `Bearer ${TOKEN}` } };

    // Before any call: the per-RPC series exist, at zero.
    const empty = await scrape();
    for (const rpc of RPCS) {
      equal(value(empty, "cbt_gateway_tuples_total", { rpc }), 0);
      equal(value(empty, "cbt_gateway_streams_active", { rpc }), 0);
    }

    // 1. Connect, completed, with a token in the message and the header.
    equal(
      await countTuples(connect.getMetadataAllocated({
        namespace: DEMO.namespace,
        snapshotName: "snap-1",
        securityToken: TOKEN,
      }, auth)),
      DEMO_BLOCKS["snap-1"].length,
    );
    // 2. Connect, completed delta.
    equal(
      await countTuples(connect.getMetadataDelta({
        namespace: DEMO.namespace,
        baseSnapshotId: "vol-1/snap-1",
        targetSnapshotName: "snap-2",
        securityToken: TOKEN,
      })),
      DEMO_BLOCKS["delta-1-2"].length,
    );
    // 3. Connect, refused by validation.
    await expectCode(
      drain(connect.getMetadataAllocated({ namespace: "", snapshotName: "x" })),
      Code.InvalidArgument,
    );
    // 4. Native gRPC, no such snapshot.
    await expectCode(
      drain(grpcMeta.getMetadataAllocated({
        namespace: DEMO.namespace,
        snapshotName: "nope",
      })),
      Code.NotFound,
    );
    // 5. Native gRPC, completed delta by name.
    equal(
      await countTuples(grpcGateway.getMetadataDeltaByName({
        namespace: DEMO.namespace,
        baseSnapshotName: "snap-1",
        targetSnapshotName: "snap-2",
      })),
      DEMO_BLOCKS["delta-1-2"].length,
    );
    // 6. HTTP/JSON, completed, with a bearer token.
    const r6 = await fetch(
      `${gw.httpUrl}/v1/namespaces/demo/snapshots/snap-2/allocated`,
      { headers: { accept: "application/x-ndjson", ...auth.headers } },
    );
    equal(r6.status, 200);
    deepStrictEqual(
      tuplesOf(parseNdjson(await r6.text())),
      DEMO_BLOCKS["snap-2"].map((b) => [b * 4096, 4096]),
    );
    // 7. HTTP/JSON, base snapshot not found (refused before the stream).
    const r7 = await fetch(
      `${gw.httpUrl}/v1/namespaces/demo/snapshots/snap-2/delta?baseSnapshotName=nope`,
      { headers: { accept: "application/x-ndjson" } },
    );
    equal(r7.status, 404);
    await r7.body?.cancel();

    // Exact counts for the calls so far.
    const s1 = await scrape();
    const calls = (rpc: string, code: string) =>
      value(s1, "cbt_gateway_calls_total", { rpc, code });
    equal(calls("GetMetadataAllocated", "ok"), 2);
    equal(calls("GetMetadataAllocated", "invalid_argument"), 1);
    equal(calls("GetMetadataAllocated", "not_found"), 1);
    equal(calls("GetMetadataDelta", "ok"), 1);
    equal(calls("GetMetadataDeltaByName", "ok"), 1);
    equal(calls("GetMetadataDeltaByName", "not_found"), 1);
    equal(sum(s1, "cbt_gateway_calls_total"), 7);
    equal(
      value(s1, "cbt_gateway_refused_total", { code: "invalid_argument" }),
      1,
    );
    // Allocated "nope" fails once streaming; the missing base is refused.
    equal(value(s1, "cbt_gateway_refused_total", { code: "not_found" }), 1);
    equal(sum(s1, "cbt_gateway_refused_total"), 2);
    const allocated = DEMO_BLOCKS["snap-1"].length +
      DEMO_BLOCKS["snap-2"].length;
    const delta = DEMO_BLOCKS["delta-1-2"].length;
    const tuples = { allocated, delta, byName: delta };
    deepStrictEqual(
      RPCS.map((rpc) => value(s1, "cbt_gateway_tuples_total", { rpc })),
      [tuples.allocated, tuples.delta, tuples.byName],
    );
    deepStrictEqual(
      RPCS.map((rpc) => value(s1, "cbt_gateway_bytes_covered_total", { rpc })),
      [tuples.allocated, tuples.delta, tuples.byName].map((n) => n * 4096),
    );
    // Histogram: one observation per stream (refused calls have none).
    deepStrictEqual(
      RPCS.map((rpc) =>
        value(s1, "cbt_gateway_stream_duration_seconds_count", { rpc })
      ),
      [3, 1, 1],
    );
    for (const rpc of RPCS) {
      const buckets = s1.filter((s) =>
        s.name === "cbt_gateway_stream_duration_seconds_bucket" &&
        s.labels.rpc === rpc
      );
      for (let i = 1; i < buckets.length; i++) {
        ok(buckets[i].value >= buckets[i - 1].value, "buckets are cumulative");
      }
      equal(buckets.at(-1)!.labels.le, "+Inf");
      equal(
        buckets.at(-1)!.value,
        value(s1, "cbt_gateway_stream_duration_seconds_count", { rpc }),
      );
      equal(value(s1, "cbt_gateway_streams_active", { rpc }), 0);
    }
    // No name of a namespace or snapshot in any label.
    for (const s of s1) {
      for (const v of Object.values(s.labels)) {
        ok(!/demo|snap|nope/.test(v), `label value ${v}`);
      }
    }

    // 8–10. Clients that stop after the first message (one tuple each).
    // (connect-es clients tell the server only when their call is aborted.)
    await stopAfterFirst((signal) =>
      connect.getMetadataAllocated({
        namespace: DEMO.namespace,
        snapshotName: "snap-3",
        maxResults: 1,
      }, { signal })
    );
    await stopAfterFirst((signal) =>
      grpcMeta.getMetadataDelta({
        namespace: DEMO.namespace,
        baseSnapshotId: "vol-1/snap-1",
        targetSnapshotName: "snap-3",
        maxResults: 1,
      }, { signal })
    );
    const r10 = await fetch(
      `${gw.httpUrl}/v1/namespaces/demo/snapshots/snap-3/delta?baseSnapshotName=snap-1&maxResults=1`,
      { headers: { accept: "application/x-ndjson" } },
    );
    const reader = r10.body!.getReader();
    ok(!(await reader.read()).done);
    await reader.cancel();

    // The server learns of each early stop on its own time: poll.
    let s2 = await scrape();
    for (
      const deadline = Date.now() + 10_000;
      sum(s2, "cbt_gateway_calls_total") < 10 && Date.now() < deadline;
    ) {
      await new Promise((r) => setTimeout(r, 20));
      s2 = await scrape();
    }
    equal(sum(s2, "cbt_gateway_calls_total"), 10);
    for (const rpc of RPCS) {
      equal(
        value(s2, "cbt_gateway_calls_total", { rpc, code: "canceled" }),
        1,
        rpc,
      );
      equal(value(s2, "cbt_gateway_streams_active", { rpc }), 0, rpc);
    }
    equal(sum(s2, "cbt_gateway_refused_total"), 2);

    // The access log: one line per call, in order, matching the metrics.
    equal(lines.length, 10);
    for (const line of lines) ok(!line.includes(TOKEN), `token in ${line}`);
    const log = lines.map((l) => JSON.parse(l));
    deepStrictEqual(
      log.map((l) => [l.rpc, l.namespace, l.snapshot, l.code, l.refused]),
      [
        ["GetMetadataAllocated", "demo", "snap-1", "ok", false],
        ["GetMetadataDelta", "demo", "snap-2", "ok", false],
        ["GetMetadataAllocated", "", "x", "invalid_argument", true],
        ["GetMetadataAllocated", "demo", "nope", "not_found", false],
        ["GetMetadataDeltaByName", "demo", "snap-2", "ok", false],
        ["GetMetadataAllocated", "demo", "snap-2", "ok", false],
        ["GetMetadataDeltaByName", "demo", "snap-2", "not_found", true],
        // The early stops may end in either order.
        ...log.slice(7).map((
          l,
        ) => [l.rpc, "demo", "snap-3", "canceled", false]),
      ],
    );
    deepStrictEqual(
      log.slice(7).map((l) => l.rpc).sort(),
      [...RPCS].sort(),
    );
    for (const l of log) {
      ok(typeof l.time === "string" && !Number.isNaN(Date.parse(l.time)));
      ok(l.durationMs >= 0);
      // Validation refuses before authentication: no caller yet.
      equal(l.caller, l.code === "invalid_argument" ? null : "anonymous");
    }
    deepStrictEqual(
      log.slice(0, 7).map((l) => [l.tuples, l.nextOffset]),
      [
        [
          DEMO_BLOCKS["snap-1"].length,
          (DEMO_BLOCKS["snap-1"].at(-1)! + 1) * 4096,
        ],
        [delta, (DEMO_BLOCKS["delta-1-2"].at(-1)! + 1) * 4096],
        [0, null],
        [0, 0],
        [delta, (DEMO_BLOCKS["delta-1-2"].at(-1)! + 1) * 4096],
        [
          DEMO_BLOCKS["snap-2"].length,
          (DEMO_BLOCKS["snap-2"].at(-1)! + 1) * 4096,
        ],
        [0, null],
      ],
    );
    // An early stop got its first message (the backend stalls after it);
    // the tuple counters moved by exactly what the log says was sent.
    for (const l of log.slice(7)) {
      deepStrictEqual([l.messages, l.tuples], [1, 1], JSON.stringify(l));
      equal(
        value(s2, "cbt_gateway_tuples_total", { rpc: l.rpc }) -
          value(s1, "cbt_gateway_tuples_total", { rpc: l.rpc }),
        1,
      );
    }
  } finally {
    grpc.close();
    await gw.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});

// --- CheckedStream's end report, on every way a stream can end ---

function message(offsets: number[]): Uint8Array {
  return encodeMetadataMessage({
    blockMetadataType: FIXED_LENGTH,
    volumeCapacityBytes: 1 << 20,
    offsets,
    sizes: offsets.map(() => 4096),
  });
}

const GOOD = [message([0, 4096]), message([8192])];

async function* upstreamOf(
  messages: Uint8Array[],
  failWith?: Error,
): AsyncGenerator<Uint8Array> {
  yield* messages;
  if (failWith) throw failWith;
}

/** An upstream that also hands out runs of whole envelopes, as relays do. */
function runUpstream(messages: Uint8Array[], failWith?: Error) {
  return {
    [Symbol.asyncIterator]: () => upstreamOf(messages, failWith),
    async *envelopeRuns(): AsyncGenerator<Uint8Array> {
      for (const m of messages) yield encodeEnvelope(0, m);
      if (failWith) throw failWith;
    },
  };
}

type Ending = "complete" | "error" | "broken" | "break" | "return-first";
type Path = "messages" | "runs" | "relay-runs";

/** Runs one stream to one ending; returns every onFinish report. */
async function endOnce(path: Path, ending: Ending) {
  const reports: [string, number][] = [];
  const messages = ending === "broken" ? [GOOD[1], GOOD[0]] : GOOD;
  const failWith = ending === "error"
    ? new ConnectError("gone", Code.NotFound)
    : undefined;
  const upstream = path === "relay-runs"
    ? runUpstream(messages, failWith)
    : upstreamOf(messages, failWith);
  const stream = new CheckedStream(
    upstream,
    0,
    undefined,
    (progress, error) =>
      reports.push([error ? Code[error.code] : "ok", progress.tuples]),
  );
  const it: AsyncIterator<unknown> = path === "messages"
    ? stream[Symbol.asyncIterator]()
    : stream.envelopeRuns();
  if (ending === "return-first") {
    await it.return!();
  } else if (ending === "break") {
    await it.next();
    await it.return!();
  } else {
    try {
      while (!(await it.next()).done) { /* drain */ }
    } catch { /* reported through onFinish */ }
  }
  // Nothing more may come, whatever the consumer does next.
  await it.return?.().catch(() => {});
  return reports;
}

Deno.test("CheckedStream reports its end exactly once, however it ends", async () => {
  const expected: Record<Ending, [string, number]> = {
    complete: ["ok", 3],
    error: ["NotFound", 3],
    broken: ["Internal", 1],
    break: ["Canceled", 2],
    "return-first": ["Canceled", 0],
  };
  for (const path of ["messages", "runs", "relay-runs"] as const) {
    for (const [ending, report] of Object.entries(expected)) {
      deepStrictEqual(
        await endOnce(path, ending as Ending),
        [report],
        `${path}, ${ending}`,
      );
    }
  }
});

Deno.test("an aborted call's reason is what an abandoned stream reports", async () => {
  const abort = new AbortController();
  const reports: string[] = [];
  const stream = new CheckedStream(
    upstreamOf(GOOD),
    0,
    abort.signal,
    (_, error) => reports.push(error ? Code[error.code] : "ok"),
  );
  const it = stream.envelopeRuns();
  await it.next();
  abort.abort(
    new ConnectError("the operation timed out", Code.DeadlineExceeded),
  );
  await it.return(undefined);
  deepStrictEqual(reports, ["DeadlineExceeded"]);
});
