/**
 * Transparent resume end to end: a gateway (static relay, and Kubernetes
 * mode) in front of a sidecar-like upstream that cuts streams as the real
 * sidecar does (DeadlineExceeded at its stream cap, Unavailable, RST_STREAM,
 * connection resets, GOAWAY, restarts) at seeded points. Real clients —
 * connect-web (Connect, gRPC-Web), connect-node under Node.js (gRPC), curl
 * (NDJSON, SSE) — must get one whole stream equal to ground truth computed
 * from the image bytes; a stream the gateway gives up on says where to
 * continue, on every protocol.
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import {
  createConnectTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-web";
import { SnapshotMetadata } from "../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import { type RunningGateway, startGateway } from "../src/server/start.ts";
import { NodeGrpcRelayBackend } from "../src/adapter/node-http2/relay-backend.ts";
import {
  DEFAULT_RESUME_POLICY,
  type ResumePolicy,
  ResumingBackend,
  withResume,
} from "../src/relay/resume.ts";
import { FIXED_LENGTH, VARIABLE_LENGTH } from "../src/wire/metadata-message.ts";
import {
  allocatedBlocks,
  changedBlocks,
  expectedTuples,
  type Tuple,
} from "./support/ground-truth.ts";
import { mutate, randomImage, Rng, writeImage } from "./support/images.ts";
import { startTestGateway } from "./support/gateway.ts";
import {
  type Fault,
  type FaultKind,
  seededFaults,
  type SidecarUpstream,
  startSidecarUpstream,
} from "./support/sidecar-upstream.ts";
import {
  addSnapshot,
  type KubeFixture,
  startKubeFixture,
} from "./support/kube-fixture.ts";
import { issueServerCert, makeCertificateAuthority } from "./support/certs.ts";
import { parseNdjson, parseSse, sseRecords } from "./support/json-records.ts";
import { ROOT, run } from "./support/run.ts";

const NS = "resume";
const BLOCK = 4096;
const SIZE = 128 * BLOCK + 1000;
const MAX_RESULTS = 3;
const ALL_FAULTS: FaultKind[] = [
  "deadline",
  "status",
  "rst",
  "reset",
  "goaway",
  "restart",
];

type Rpc = "allocated" | "delta";
type Protocol = "connect" | "grpc-web" | "grpc" | "ndjson" | "sse";
const PROTOCOLS: Protocol[] = ["connect", "grpc-web", "grpc", "ndjson", "sse"];

interface Outcome {
  tuples: Tuple[];
  /** Connect code name and the offset the error says to continue from. */
  error?: { code: string; nextOffset?: number; message?: string };
}

interface ReadOptions {
  startingOffset?: number;
  timeoutMs?: number;
  /** Pause after the first message. */
  stallMs?: number;
  /** Use the JSON codec (served by the connect-es router, not the frame relay). */
  json?: boolean;
  /** Told when the first message has arrived (connect-web only). */
  onFirstMessage?: () => void;
}

interface Images {
  base: Uint8Array;
  target: Uint8Array;
}

function images(): Images {
  const rng = new Rng(20261203);
  const base = randomImage(rng, SIZE);
  return { base, target: mutate(rng, base, SIZE) };
}

function expected(img: Images, type: "FIXED" | "VARIABLE", rpc: Rpc, from = 0) {
  const blocks = rpc === "allocated"
    ? allocatedBlocks(img.target)
    : changedBlocks(img.base, img.target);
  return expectedTuples(blocks, type, img.target.length, from);
}

function request(rpc: Rpc, startingOffset: number) {
  return rpc === "allocated"
    ? {
      namespace: NS,
      snapshotName: "target",
      startingOffset,
      maxResults: MAX_RESULTS,
    }
    : {
      namespace: NS,
      baseSnapshotId: "vol/base",
      targetSnapshotName: "target",
      startingOffset,
      maxResults: MAX_RESULTS,
    };
}

function nextOffsetOf(value: string | null | undefined): number | undefined {
  return value === null || value === undefined ? undefined : Number(value);
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** connect-web: Connect or gRPC-Web over fetch. */
async function viaConnectWeb(
  gw: RunningGateway,
  protocol: "connect" | "grpc-web",
  rpc: Rpc,
  o: ReadOptions,
  signal?: AbortSignal,
): Promise<Outcome> {
  const transport = protocol === "connect"
    ? createConnectTransport({ baseUrl: gw.httpUrl, useBinaryFormat: !o.json })
    : createGrpcWebTransport({ baseUrl: gw.httpUrl, useBinaryFormat: !o.json });
  const client = createClient(SnapshotMetadata, transport);
  const req = request(rpc, o.startingOffset ?? 0);
  const call = { timeoutMs: o.timeoutMs, signal };
  const tuples: Tuple[] = [];
  try {
    const stream = rpc === "allocated"
      ? client.getMetadataAllocated(
        { ...req, startingOffset: BigInt(req.startingOffset) } as never,
        call,
      )
      : client.getMetadataDelta(
        { ...req, startingOffset: BigInt(req.startingOffset) } as never,
        call,
      );
    let first = true;
    for await (const m of stream) {
      for (const b of m.blockMetadata) {
        tuples.push([Number(b.byteOffset), Number(b.sizeBytes)]);
      }
      if (first) o.onFirstMessage?.();
      if (first && o.stallMs) await delay(o.stallMs);
      first = false;
    }
  } catch (e) {
    const err = ConnectError.from(e);
    return {
      tuples,
      error: {
        code: codeToString(err.code),
        nextOffset: nextOffsetOf(err.metadata.get("cbt-next-offset")),
        message: err.rawMessage,
      },
    };
  }
  return { tuples };
}

let descriptorSet: string | undefined;

/** connect-node's gRPC transport under Node.js (tests/support/node-grpc-client.mjs). */
async function viaNodeGrpc(
  gw: RunningGateway,
  rpc: Rpc,
  o: ReadOptions,
): Promise<Outcome> {
  if (!descriptorSet) {
    const dir = await Deno.makeTempDir({ prefix: "cbt-resume-schema-" });
    // Built once for the whole file; gone when the test process ends.
    globalThis.addEventListener(
      "unload",
      () => Deno.removeSync(dir, { recursive: true }),
    );
    descriptorSet = `${dir}/schema.binpb`;
    const built = await run(`${ROOT}/node_modules/.bin/buf`, [
      "build",
      `${ROOT}/proto`,
      "-o",
      descriptorSet,
    ]);
    equal(built.code, 0, built.stderr);
  }
  const req = request(rpc, o.startingOffset ?? 0);
  const r = await run("node", [`${ROOT}/tests/support/node-grpc-client.mjs`], {
    cwd: ROOT,
    stdin: new TextEncoder().encode(JSON.stringify({
      url: gw.grpcUrl,
      descriptorSet,
      json: o.json,
      calls: [{
        rpc: rpc === "allocated" ? "GetMetadataAllocated" : "GetMetadataDelta",
        request: { ...req, startingOffset: String(req.startingOffset) },
        timeoutMs: o.timeoutMs,
        stallMs: o.stallMs,
      }],
    })),
  });
  equal(r.code, 0, r.stderr);
  const [result] = JSON.parse(r.stdout);
  const tuples: Tuple[] = [];
  for (const m of result.messages) {
    for (const b of m.blockMetadata ?? []) {
      tuples.push([Number(b.byteOffset ?? 0), Number(b.sizeBytes ?? 0)]);
    }
  }
  if (!result.error) return { tuples };
  return {
    tuples,
    error: {
      code: codeToString(result.error.code),
      nextOffset: nextOffsetOf(result.error.metadata?.["cbt-next-offset"]),
    },
  };
}

function httpJsonUrl(gw: RunningGateway, rpc: Rpc, startingOffset: number) {
  const q = `maxResults=${MAX_RESULTS}&startingOffset=${startingOffset}`;
  const base = `${gw.httpUrl}/v1/namespaces/${NS}/snapshots/target`;
  return rpc === "allocated"
    ? `${base}/allocated?${q}`
    : `${base}/delta?baseSnapshotId=vol/base&${q}`;
}

/** Records → outcome; a stream without an end record is not complete. */
function fromRecords(records: Record<string, unknown>[]): Outcome {
  const tuples: Tuple[] = [];
  for (const r of records) {
    if (r.type !== "blocks") continue;
    for (const b of r.blocks as { offset: number; length: number }[]) {
      tuples.push([b.offset, b.length]);
    }
  }
  const last = records.at(-1);
  if (last?.type === "error") {
    return {
      tuples,
      error: { code: String(last.code), nextOffset: Number(last.nextOffset) },
    };
  }
  if (last?.type !== "end") {
    return { tuples, error: { code: "incomplete stream" } };
  }
  return { tuples };
}

/** curl, NDJSON or SSE. */
async function viaCurl(
  gw: RunningGateway,
  format: "ndjson" | "sse",
  rpc: Rpc,
  o: ReadOptions,
): Promise<Outcome> {
  const r = await run("curl", [
    "-sSN",
    "--max-time",
    "30",
    "-w",
    "\n%{http_code}",
    "-H",
    `accept: ${
      format === "sse" ? "text/event-stream" : "application/x-ndjson"
    }`,
    httpJsonUrl(gw, rpc, o.startingOffset ?? 0),
  ]);
  equal(r.code, 0, r.stderr);
  const at = r.stdout.lastIndexOf("\n");
  const [body, status] = [r.stdout.slice(0, at), r.stdout.slice(at + 1)];
  if (status !== "200") {
    // Failed before the stream started: a plain HTTP error.
    return { tuples: [], error: { code: JSON.parse(body).code } };
  }
  return fromRecords(
    format === "sse" ? sseRecords(parseSse(body)) : parseNdjson(body),
  );
}

/** fetch, reading NDJSON or SSE slowly: a client that stalls. */
async function viaStallingFetch(
  gw: RunningGateway,
  format: "ndjson" | "sse",
  rpc: Rpc,
  stallMs: number,
): Promise<Outcome> {
  const res = await fetch(httpJsonUrl(gw, rpc, 0), {
    headers: {
      accept: format === "sse" ? "text/event-stream" : "application/x-ndjson",
    },
  });
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  let first = true;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
    if (first) await delay(stallMs);
    first = false;
  }
  return fromRecords(
    format === "sse" ? sseRecords(parseSse(text)) : parseNdjson(text),
  );
}

function read(
  gw: RunningGateway,
  protocol: Protocol,
  rpc: Rpc,
  o: ReadOptions = {},
): Promise<Outcome> {
  switch (protocol) {
    case "connect":
    case "grpc-web":
      return viaConnectWeb(gw, protocol, rpc, o);
    case "grpc":
      return viaNodeGrpc(gw, rpc, o);
    case "ndjson":
    case "sse":
      return viaCurl(gw, protocol, rpc, o);
  }
}

/** Rough size of a whole stream's response, for placing seeded cuts. */
function streamBytes(tuples: number): number {
  return Math.ceil(tuples / MAX_RESULTS) * 12 + tuples * 8;
}

async function resumesCounted(
  gw: RunningGateway,
): Promise<Record<string, number>> {
  const text = await (await fetch(`${gw.httpUrl}/metrics`)).text();
  const out: Record<string, number> = {};
  for (
    const m of text.matchAll(
      /^cbt_gateway_resumes_total\{reason="(\w+)"\} (\d+)$/gm,
    )
  ) {
    out[m[1]] = Number(m[2]);
  }
  return out;
}

const sum = (counts: Record<string, number>) =>
  Object.values(counts).reduce((a, b) => a + b, 0);

interface Setup {
  gateway: RunningGateway;
  proxy: SidecarUpstream;
  type: "FIXED" | "VARIABLE";
  log: string[];
  close(): Promise<void>;
}

/** Static relay: store gateway ← sidecar-like proxy ← gateway under test. */
async function relaySetup(
  dataDir: string,
  type: "FIXED" | "VARIABLE",
  policy?: ResumePolicy,
): Promise<Setup> {
  const upstream = await startTestGateway({
    dataDir,
    blockMetadataType: type === "FIXED" ? "FIXED_LENGTH" : "VARIABLE_LENGTH",
  });
  const proxy = await startSidecarUpstream({ upstreamUrl: upstream.grpcUrl });
  const relay = new NodeGrpcRelayBackend({ url: proxy.url });
  const log: string[] = [];
  const gateway = await startGateway({
    host: "127.0.0.1",
    port: 0,
    grpcPort: 0,
    corsOrigins: [],
  }, {
    backend: policy
      ? new ResumingBackend(relay, policy)
      : withResume(relay, {}),
    log: (line) => log.push(line),
  });
  return {
    gateway,
    proxy,
    type,
    log,
    async close() {
      await gateway.close();
      await proxy.close();
      await upstream.close();
    },
  };
}

/** Kubernetes mode: the SnapshotMetadataService advertises a faulty TLS proxy. */
async function kubeSetup(
  img: Images,
  type: "FIXED" | "VARIABLE",
): Promise<Setup & { fixture: KubeFixture; pki: string }> {
  const pki = await Deno.makeTempDir({ prefix: "cbt-resume-pki-" });
  const proxies: SidecarUpstream[] = [];
  const front = async (up: { address: string; caPem: string }) => {
    const ca = await makeCertificateAuthority(pki, {
      commonName: `proxy-ca-${proxies.length}`,
    });
    const cert = await issueServerCert(ca, {
      name: `proxy-${proxies.length}`,
      dnsNames: ["localhost"],
      ipAddresses: ["127.0.0.1"],
    });
    const upstreamCaPath = `${pki}/upstream-${proxies.length}.pem`;
    await Deno.writeTextFile(upstreamCaPath, up.caPem);
    const proxy = await startSidecarUpstream({
      upstreamUrl: `https://${up.address}`,
      upstreamCaPath,
      tls: { certPath: cert.certPath, keyPath: cert.keyPath },
    });
    proxies.push(proxy);
    return { address: proxy.address, caPem: ca.certPem, proxy };
  };
  const fixture = await startKubeFixture({
    auth: "none",
    blockMetadataType: type === "FIXED" ? FIXED_LENGTH : VARIABLE_LENGTH,
    front,
  });
  await addSnapshot(fixture, {
    namespace: NS,
    name: "base",
    volume: "vol",
    image: img.base,
  });
  await addSnapshot(fixture, {
    namespace: NS,
    name: "target",
    volume: "vol",
    image: img.target,
  });
  return {
    gateway: fixture.gateway,
    proxy: proxies[0],
    type,
    log: [],
    fixture,
    pki,
    async close() {
      await fixture.close();
      for (const p of proxies) await p.close();
      await Deno.remove(pki, { recursive: true });
    },
  };
}

/** Reads one stream through planned faults and checks it against ground truth. */
async function checkResumed(
  s: Setup,
  img: Images,
  protocol: Protocol,
  rpc: Rpc,
  rng: Rng,
): Promise<number> {
  const want = expected(img, s.type, rpc);
  const faults = seededFaults(rng, ALL_FAULTS, 3, streamBytes(want.length));
  await s.proxy.plan({ faults });
  const got = await read(s.gateway, protocol, rpc);
  const label = `${protocol} ${rpc} ${s.type} ${JSON.stringify(faults)}`;
  equal(got.error, undefined, `${label}: ${JSON.stringify(got.error)}`);
  deepStrictEqual(got.tuples, want, label);
  const calls = await s.proxy.settled(faults.length + 1);
  deepStrictEqual(
    calls.map((c) => c.fault),
    [...faults.map((f) => f.kind), null],
    `${label}: every planned cut struck, then one clean call`,
  );
  for (const c of calls.slice(1)) {
    ok(c.startingOffset > 0 && c.startingOffset % BLOCK === 0, label);
  }
  return faults.length;
}

Deno.test("resume: 120 seeded cuts over Connect, gRPC-Web, gRPC, NDJSON and SSE, static relay and Kubernetes, FIXED and VARIABLE, equal ground truth", async (t) => {
  const img = images();
  const dataDir = await Deno.makeTempDir({ prefix: "cbt-resume-" });
  await writeImage(dataDir, NS, "vol", "base", img.base);
  await writeImage(dataDir, NS, "vol", "target", img.target);
  let cuts = 0;
  const started = performance.now();
  try {
    for (const backend of ["relay", "kubernetes"] as const) {
      for (const type of ["FIXED", "VARIABLE"] as const) {
        await t.step(`${backend} ${type}`, async () => {
          const s = backend === "relay"
            ? await relaySetup(dataDir, type)
            : await kubeSetup(img, type);
          const rng = new Rng(
            backend === "relay" ? 11 : 13 + (type === "FIXED" ? 0 : 1),
          );
          let here = 0;
          try {
            for (const protocol of PROTOCOLS) {
              for (const rpc of ["allocated", "delta"] as const) {
                here += await checkResumed(s, img, protocol, rpc, rng);
              }
            }
            const counted = await resumesCounted(s.gateway);
            ok(
              sum(counted) >= here,
              `resumes ${JSON.stringify(counted)} ≥ cuts ${here}`,
            );
            ok(counted.upstream_deadline > 0 && counted.unavailable > 0);
            if (backend === "relay") {
              // The access log's per-call counts add up to the metric.
              const logged = s.log.map((l) => JSON.parse(l))
                .reduce((n, r) => n + r.resumes, 0);
              equal(logged, sum(counted));
            }
          } finally {
            await s.close();
          }
          cuts += here;
        });
      }
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
  ok(cuts >= 100, `cuts ${cuts}`);
  console.log(
    `resume e2e: ${cuts} cuts in ${
      ((performance.now() - started) / 1000).toFixed(1)
    } s`,
  );
});

Deno.test("resume: clients that stall longer than the upstream's stream cap still get the whole stream", async (t) => {
  const img = images();
  const dataDir = await Deno.makeTempDir({ prefix: "cbt-resume-stall-" });
  await writeImage(dataDir, NS, "vol", "base", img.base);
  await writeImage(dataDir, NS, "vol", "target", img.target);
  const s = await relaySetup(dataDir, "FIXED");
  const want = expected(img, "FIXED", "allocated");
  try {
    // Warm: the first call pays for connections and cold caches, which a
    // tiny stream cap would count against the stream.
    await s.proxy.plan({});
    deepStrictEqual(
      (await read(s.gateway, "connect", "allocated")).tuples,
      want,
    );
    for (const protocol of PROTOCOLS) {
      await t.step(protocol, async () => {
        // A driver's pace that makes the stream outlive the cap.
        await s.proxy.plan({ capMs: 300, intervalMs: 12 });
        const stallMs = 500;
        const got = protocol === "ndjson" || protocol === "sse"
          ? await viaStallingFetch(s.gateway, protocol, "allocated", stallMs)
          : protocol === "grpc"
          ? await viaNodeGrpc(s.gateway, "allocated", { stallMs })
          : await viaConnectWeb(s.gateway, protocol, "allocated", { stallMs });
        equal(got.error, undefined, JSON.stringify(got.error));
        deepStrictEqual(got.tuples, want);
        const cut = s.proxy.calls.filter((c) => c.fault === "deadline");
        ok(cut.length >= 1, "the upstream's cap cut the stream");
      });
    }
  } finally {
    await s.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("resume: never outlives the caller's deadline; never retries what must not be retried", async (t) => {
  const img = images();
  const dataDir = await Deno.makeTempDir({ prefix: "cbt-resume-no-" });
  await writeImage(dataDir, NS, "vol", "base", img.base);
  await writeImage(dataDir, NS, "vol", "target", img.target);
  // Reopenings every ~400 ms for 20 attempts: far beyond the deadline.
  const s = await relaySetup(dataDir, "FIXED", {
    ...DEFAULT_RESUME_POLICY,
    maxAttempts: 20,
    baseDelayMs: 400,
    maxDelayMs: 400,
  });
  const down: Fault[] = [
    { kind: "rst", at: 40, minMessages: 1 },
    ...Array.from(
      { length: 20 },
      (): Fault => ({ kind: "status", at: 0, code: 14 }),
    ),
  ];
  try {
    for (const protocol of ["connect", "grpc"] as const) {
      await t.step(`the caller's deadline over ${protocol}`, async () => {
        await s.proxy.plan({ faults: down });
        s.log.length = 0;
        const got = protocol === "grpc"
          ? await viaNodeGrpc(s.gateway, "allocated", { timeoutMs: 700 })
          : await viaConnectWeb(s.gateway, "connect", "allocated", {
            timeoutMs: 700,
          });
        equal(got.error?.code, "deadline_exceeded");
        ok(got.tuples.length > 0);
        // The gateway's own end of the call, from its access-log line: its
        // deadline, or the client's cancel when the client's timer fired
        // first (both clients enforce their deadline themselves too).
        while (s.log.length === 0) await delay(10);
        const line = JSON.parse(s.log[0]);
        ok(
          ["deadline_exceeded", "canceled"].includes(line.code),
          JSON.stringify(line),
        );
        const endedAt = Date.parse(line.time);
        // Longer than the backoff: a resume that outlived the call would show.
        await delay(1200);
        // (Calls arrive at the proxy a few ms after the gateway sends them.)
        const late = s.proxy.calls.filter((c) => c.startedAt > endedAt + 50);
        deepStrictEqual(late, [], "no upstream call after the deadline");
        ok(
          s.proxy.calls.length >= 2,
          "it did try to resume before the deadline",
        );
        ok(line.resumes >= 1, "the access log counts the resumes");
      });
    }
    for (
      const code of [
        Code.InvalidArgument,
        Code.NotFound,
        Code.PermissionDenied,
        Code.Unauthenticated,
        Code.OutOfRange,
        Code.Internal,
      ]
    ) {
      await t.step(`${Code[code]} is not retried`, async () => {
        for (const protocol of ["grpc-web", "ndjson"] as const) {
          await s.proxy.plan({
            faults: [{ kind: "status", code, at: 60, minMessages: 1 }],
          });
          const got = await read(s.gateway, protocol, "allocated");
          equal(got.error?.code, codeToString(code), protocol);
          ok(got.tuples.length > 0);
          await s.proxy.settled(1);
          equal(s.proxy.calls.length, 1, `${protocol}: one upstream call`);
        }
      });
    }
    await t.step("the caller's cancel is not retried", async () => {
      await s.proxy.plan({ intervalMs: 20 });
      const abort = new AbortController();
      const reading = viaConnectWeb(s.gateway, "connect", "allocated", {
        stallMs: 100,
      }, abort.signal);
      await delay(60);
      abort.abort();
      const got = await reading;
      equal(got.error?.code, "canceled");
      await s.proxy.settled(1);
      await delay(500);
      equal(s.proxy.calls.length, 1);
    });
  } finally {
    await s.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("resume: a stream the gateway gives up on says where to continue on every protocol, and continuing loses nothing", async (t) => {
  const img = images();
  const dataDir = await Deno.makeTempDir({ prefix: "cbt-resume-give-up-" });
  await writeImage(dataDir, NS, "vol", "base", img.base);
  await writeImage(dataDir, NS, "vol", "target", img.target);
  const s = await relaySetup(dataDir, "FIXED", {
    ...DEFAULT_RESUME_POLICY,
    maxAttempts: 2,
    baseDelayMs: 10,
    maxDelayMs: 20,
  });
  const rng = new Rng(77);
  const readers: [string, (from: number) => Promise<Outcome>][] = [
    ...PROTOCOLS.map((p) =>
      [
        p,
        (from: number) => read(s.gateway, p, "delta", { startingOffset: from }),
      ] as [
        string,
        (from: number) => Promise<Outcome>,
      ]
    ),
    // The JSON codecs are served by the connect-es services, not the frame relay.
    [
      "grpc-web JSON",
      (from) =>
        viaConnectWeb(s.gateway, "grpc-web", "delta", {
          startingOffset: from,
          json: true,
        }),
    ],
    [
      "grpc JSON",
      (from) =>
        viaNodeGrpc(s.gateway, "delta", { startingOffset: from, json: true }),
    ],
  ];
  const want = expected(img, "FIXED", "delta");
  try {
    for (const [name, readFrom] of readers) {
      await t.step(name, async () => {
        await s.proxy.plan({
          faults: [
            { kind: "reset", at: 1 + rng.int(200), minMessages: 1 },
            { kind: "status", at: 0, code: 14 },
            { kind: "rst", at: 0 },
          ],
        });
        const first = await readFrom(0);
        equal(first.error?.code, "unavailable", JSON.stringify(first.error));
        const next = first.error?.nextOffset;
        ok(next !== undefined && next > 0, `cbt-next-offset ${next}`);
        const last = first.tuples.at(-1)!;
        equal(
          next,
          last[0] + last[1],
          "the offset is the end of the last tuple received",
        );
        await s.proxy.plan({});
        const rest = await readFrom(next!);
        equal(rest.error, undefined);
        deepStrictEqual([...first.tuples, ...rest.tuples], want);
      });
    }
  } finally {
    await s.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("resume: a SnapshotMetadataService that moves (new address and CA) moves running streams with it", async () => {
  const img = images();
  const s = await kubeSetup(img, "FIXED");
  try {
    const want = expected(img, "FIXED", "allocated");
    const driver = Object.values(s.fixture.drivers)[0];
    const spare = await s.fixture.startSpareUpstream(driver.upstream.audience);
    // A second faulty proxy (healthy here), with its own CA, at a new address.
    const pkiNext = await Deno.makeTempDir({ prefix: "cbt-resume-pki2-" });
    const ca = await makeCertificateAuthority(pkiNext, { commonName: "moved" });
    const cert = await issueServerCert(ca, {
      name: "moved",
      dnsNames: ["localhost"],
      ipAddresses: ["127.0.0.1"],
    });
    await Deno.writeTextFile(`${pkiNext}/up.pem`, spare.caPem);
    const moved = await startSidecarUpstream({
      upstreamUrl: `https://${spare.address}`,
      upstreamCaPath: `${pkiNext}/up.pem`,
      tls: { certPath: cert.certPath, keyPath: cert.keyPath },
    });
    // A driver's pace: the stream takes about a second.
    await s.proxy.plan({ intervalMs: 25 });
    // Once the stream has relayed its first message, the service moves.
    let running!: () => void;
    const started = new Promise<void>((r) => (running = r));
    const reading = viaConnectWeb(s.gateway, "connect", "allocated", {
      onFirstMessage: running,
    });
    await started;
    try {
      s.fixture.kube.addSnapshotMetadataService({
        driver: driver.driver,
        address: moved.address,
        audience: spare.audience,
        caCertPem: ca.certPem,
      });
      const got = await reading;
      equal(got.error, undefined, JSON.stringify(got.error));
      deepStrictEqual(got.tuples, want);
      const [call] = await moved.settled(1);
      ok(call.startingOffset > 0, "the moved service continued the stream");
      equal((await resumesCounted(s.gateway)).service_changed, 1);
    } finally {
      await moved.close();
      await Deno.remove(pkiNext, { recursive: true });
    }
  } finally {
    await s.close();
  }
});
