/**
 * The upstream native-gRPC transport against real gateways on their gRPC
 * port, over h2c and TLS: many streams on fresh and reused connections (the
 * Deno "Premature close" race connect-node's client loses), TLS trust,
 * server errors, cancellation and backpressure. Tuples are checked against
 * ground truth computed from the image bytes.
 */
import {
  deepStrictEqual,
  equal,
  ok,
  rejects,
  throws,
} from "node:assert/strict";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import {
  type DescMessage,
  fromBinary,
  type JsonValue,
  toJson,
} from "@bufbuild/protobuf";
import {
  GetMetadataAllocatedRequestSchema,
  type GetMetadataAllocatedResponse,
  GetMetadataAllocatedResponseSchema,
  GetMetadataDeltaRequestSchema,
  type GetMetadataDeltaResponse,
  GetMetadataDeltaResponseSchema,
  SnapshotMetadata,
} from "../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import { GatewayService } from "../gen/cbtgateway/v1/gateway_pb.ts";
import {
  createUpstreamGrpcTransport,
  type UpstreamGrpcTransport,
} from "./support/grpc-transport.ts";
import { startGateway } from "../src/server/start.ts";
import type {
  AllocatedQuery,
  Backend,
  CallOptions,
  SnapshotInfo,
} from "../src/backend/backend.ts";
import {
  encodeMetadataMessage,
  FIXED_LENGTH,
} from "../src/wire/metadata-message.ts";
import {
  allocatedBlocks,
  changedBlocks,
  expectedTuples,
  type Tuple,
} from "./support/ground-truth.ts";
import { mutate, randomImage, Rng } from "./support/images.ts";
import { issueServerCert, makeCertificateAuthority } from "./support/certs.ts";
import {
  startTestGateway,
  type TestGateway,
  writeImage,
} from "./support/gateway.ts";

const NS = "p";
const SIZE = 3 * 1024 * 1024 + 1000;

interface Fixture {
  base: Uint8Array;
  target: Uint8Array;
  caPem: string;
  wrongCaPem: string;
  h2c: TestGateway;
  tls: TestGateway;
  close(): Promise<void>;
}

async function setUp(): Promise<Fixture> {
  const dataDir = await Deno.makeTempDir({ prefix: "cbt-grpc-transport-" });
  const pkiDir = await Deno.makeTempDir({ prefix: "cbt-grpc-transport-pki-" });
  const rng = new Rng(5);
  const base = randomImage(rng, SIZE);
  const target = mutate(rng, base, SIZE + 8192);
  await writeImage(dataDir, NS, "v", "base", base);
  await writeImage(dataDir, NS, "v", "target", target);
  const ca = await makeCertificateAuthority(`${pkiDir}/ca`);
  const wrongCa = await makeCertificateAuthority(`${pkiDir}/wrong`, {
    commonName: "not-the-ca",
  });
  const cert = await issueServerCert(ca, {
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1"],
  });
  const h2c = await startTestGateway({ dataDir });
  const tls = await startTestGateway({
    dataDir,
    tls: { certPath: cert.certPath, keyPath: cert.keyPath },
  });
  return {
    base,
    target,
    caPem: ca.certPem,
    wrongCaPem: wrongCa.certPem,
    h2c,
    tls,
    async close() {
      await h2c.close();
      await tls.close();
      await Deno.remove(dataDir, { recursive: true });
      await Deno.remove(pkiDir, { recursive: true });
    },
  };
}

type Response = GetMetadataAllocatedResponse | GetMetadataDeltaResponse;

/** All tuples of a stream, checking every message on the way. */
async function collect(
  stream: AsyncIterable<Response>,
  capacity: number,
  maxResults: number,
): Promise<Tuple[]> {
  const tuples: Tuple[] = [];
  for await (const m of stream) {
    equal(Number(m.volumeCapacityBytes), capacity);
    equal(m.blockMetadataType, FIXED_LENGTH);
    ok(m.blockMetadata.length > 0, "no empty messages");
    if (maxResults > 0) {
      ok(
        m.blockMetadata.length <= maxResults,
        `${m.blockMetadata.length} > ${maxResults}`,
      );
    }
    for (const b of m.blockMetadata) {
      tuples.push([Number(b.byteOffset), Number(b.sizeBytes)]);
    }
  }
  return tuples;
}

/** One call shape; `run` returns the tuples it streamed. */
interface StreamCase {
  name: string;
  expected: Tuple[];
  run(t: UpstreamGrpcTransport): Promise<Tuple[]>;
}

function streamCases(f: Fixture, baseId: string): StreamCase[] {
  const allocated = allocatedBlocks(f.target);
  const changed = changedBlocks(f.base, f.target);
  const capacity = f.target.length;
  const out: StreamCase[] = [];
  // maxResults 0 → two messages (the shape that broke), 1000 → one, 7 → many.
  for (const maxResults of [0, 1000, 7]) {
    for (const startingOffset of [0, 4096 * 100 + 123]) {
      out.push({
        name: `allocated max=${maxResults} from=${startingOffset}`,
        expected: expectedTuples(allocated, "FIXED", capacity, startingOffset),
        run: (t) =>
          collect(
            createClient(SnapshotMetadata, t).getMetadataAllocated({
              namespace: NS,
              snapshotName: "target",
              startingOffset: BigInt(startingOffset),
              maxResults,
            }),
            capacity,
            maxResults,
          ),
      });
    }
    out.push({
      name: `delta max=${maxResults}`,
      expected: expectedTuples(changed, "FIXED", capacity, 0),
      run: (t) =>
        collect(
          createClient(SnapshotMetadata, t).getMetadataDelta({
            namespace: NS,
            baseSnapshotId: baseId,
            targetSnapshotName: "target",
            maxResults,
          }),
          capacity,
          maxResults,
        ),
    });
  }
  return out;
}

async function baseSnapshotId(t: UpstreamGrpcTransport): Promise<string> {
  const list = await createClient(GatewayService, t).listSnapshots({
    namespace: NS,
  });
  deepStrictEqual(list.snapshots.map((s) => s.name).sort(), ["base", "target"]);
  return list.snapshots.find((s) => s.name === "base")!.snapshotId;
}

async function expectError(
  call: Promise<unknown>,
  code: Code,
  message: RegExp,
): Promise<ConnectError> {
  let caught: unknown;
  try {
    await call;
  } catch (e) {
    caught = e;
  }
  ok(caught instanceof ConnectError, `expected a ConnectError, got ${caught}`);
  equal(caught.code, code, `code of: ${caught.message}`);
  ok(
    message.test(caught.rawMessage),
    `message ${JSON.stringify(caught.rawMessage)} !~ ${message}`,
  );
  return caught;
}

async function drain(stream: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of stream) { /* only the outcome matters */ }
}

/** Polls (no fixed sleep) until `condition` holds, or fails after `ms`. */
async function waitFor(
  what: string,
  condition: () => boolean,
  ms = 10_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

Deno.test("upstream gRPC transport against the gateway's gRPC port", async (t) => {
  const f = await setUp();
  const modes = [
    { name: "h2c", options: () => ({ baseUrl: f.h2c.grpcUrl }) },
    { name: "TLS", options: () => ({ baseUrl: f.tls.grpcUrl, ca: f.caPem }) },
  ];
  try {
    for (const mode of modes) {
      await t.step(
        `${mode.name}: 120 streams on fresh and reused connections, exact tuples`,
        async () => {
          const shared = createUpstreamGrpcTransport(mode.options());
          try {
            const cases = streamCases(f, await baseSnapshotId(shared));
            let streams = 0;
            // A new connection per stream: the first stream of a connection is
            // the one connect-node's client lost about every other time.
            for (let round = 0; round < 7; round++) {
              for (const c of cases) {
                const fresh = createUpstreamGrpcTransport(mode.options());
                try {
                  deepStrictEqual(
                    await c.run(fresh),
                    c.expected,
                    `fresh: ${c.name}`,
                  );
                } finally {
                  fresh.close();
                }
                streams++;
              }
            }
            for (let round = 0; round < 6; round++) {
              for (const c of cases) {
                deepStrictEqual(
                  await c.run(shared),
                  c.expected,
                  `reused: ${c.name}`,
                );
                streams++;
              }
            }
            // Concurrent streams multiplexed on the one connection.
            const results = await Promise.all(cases.map((c) => c.run(shared)));
            results.forEach((r, i) =>
              deepStrictEqual(
                r,
                cases[i].expected,
                `concurrent: ${cases[i].name}`,
              )
            );
            streams += cases.length;
            ok(streams >= 120, `${streams} streams`);
            // Unary calls too.
            for (let i = 0; i < 10; i++) {
              equal(typeof await baseSnapshotId(shared), "string");
            }
          } finally {
            shared.close();
          }
        },
      );

      await t.step(
        `${mode.name}: server errors arrive with code and message`,
        async () => {
          const transport = createUpstreamGrpcTransport(mode.options());
          const client = createClient(SnapshotMetadata, transport);
          try {
            await expectError(
              drain(
                client.getMetadataAllocated({
                  namespace: NS,
                  snapshotName: "nope",
                }),
              ),
              Code.NotFound,
              /snapshot "nope" not found in namespace "p"/,
            );
            await expectError(
              drain(
                client.getMetadataAllocated({
                  namespace: NS,
                  snapshotName: "target",
                  maxResults: -1,
                }),
              ),
              Code.InvalidArgument,
              /max_results -1 is negative/,
            );
            await expectError(
              drain(
                client.getMetadataAllocated({
                  namespace: NS,
                  snapshotName: "target",
                  startingOffset: -1n,
                }),
              ),
              Code.OutOfRange,
              /starting_offset -1 is negative/,
            );
            await expectError(
              createClient(GatewayService, transport).listSnapshots({
                namespace: "Not_A_Namespace",
              }),
              Code.InvalidArgument,
              /not a valid Kubernetes namespace name/,
            );
            // The connection is still good after errors.
            equal(typeof await baseSnapshotId(transport), "string");
          } finally {
            transport.close();
          }
        },
      );
    }

    await t.step(
      "TLS: a CA that didn't sign the server's certificate is Unavailable",
      async () => {
        const transport = createUpstreamGrpcTransport({
          baseUrl: f.tls.grpcUrl,
          ca: f.wrongCaPem,
        });
        try {
          const err = await expectError(
            drain(
              createClient(SnapshotMetadata, transport).getMetadataAllocated({
                namespace: NS,
                snapshotName: "target",
              }),
            ),
            Code.Unavailable,
            /^cannot connect to https:\/\/127\.0\.0\.1:\d+: .*(certificate|issuer)/i,
          );
          ok(err.cause !== undefined);
          await expectError(
            createClient(GatewayService, transport).listSnapshots({
              namespace: NS,
            }),
            Code.Unavailable,
            /^cannot connect to/,
          );
        } finally {
          transport.close();
        }
        // No CA at all: the system roots don't know the test CA either.
        const noCa = createUpstreamGrpcTransport({ baseUrl: f.tls.grpcUrl });
        try {
          await expectError(
            createClient(GatewayService, noCa).listSnapshots({ namespace: NS }),
            Code.Unavailable,
            /^cannot connect to/,
          );
        } finally {
          noCa.close();
        }
      },
    );

    await t.step(
      "TLS: serverName is the name the certificate must carry",
      async () => {
        const right = createUpstreamGrpcTransport({
          baseUrl: f.tls.grpcUrl,
          ca: f.caPem,
          serverName: "localhost",
        });
        try {
          equal(typeof await baseSnapshotId(right), "string");
        } finally {
          right.close();
        }
        const wrong = createUpstreamGrpcTransport({
          baseUrl: f.tls.grpcUrl,
          ca: f.caPem,
          serverName: "sidecar.example.com",
        });
        try {
          await expectError(
            createClient(GatewayService, wrong).listSnapshots({
              namespace: NS,
            }),
            Code.Unavailable,
            /sidecar\.example\.com/,
          );
        } finally {
          wrong.close();
        }
        throws(
          () =>
            createUpstreamGrpcTransport({
              baseUrl: f.h2c.grpcUrl,
              ca: f.caPem,
            }),
          /need an https:\/\/ upstream/,
        );
        throws(
          () => createUpstreamGrpcTransport({ baseUrl: "ftp://x:1" }),
          /must be http:\/\/ \(h2c\) or https:\/\//,
        );
      },
    );

    await t.step("a silent upstream: the deadline still applies", async () => {
      // Accepts TCP connections and never says a word: no TLS handshake, no
      // HTTP/2 SETTINGS.
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const held: Deno.Conn[] = [];
      const accepting = (async () => {
        for await (const conn of listener) held.push(conn);
      })();
      const port = (listener.addr as Deno.NetAddr).port;
      try {
        for (
          const baseUrl of [
            `https://127.0.0.1:${port}`,
            `http://127.0.0.1:${port}`,
          ]
        ) {
          const transport = createUpstreamGrpcTransport({
            baseUrl,
            ca: baseUrl.startsWith("https") ? f.caPem : undefined,
          });
          try {
            await expectError(
              drain(
                createClient(SnapshotMetadata, transport).getMetadataAllocated(
                  { namespace: NS, snapshotName: "target" },
                  { timeoutMs: 200 },
                ),
              ),
              Code.DeadlineExceeded,
              /timed out/,
            );
          } finally {
            transport.close();
          }
        }
      } finally {
        listener.close();
        await accepting.catch(() => {});
        for (const conn of held) conn.close();
      }
    });

    await t.step("nothing listening: Unavailable", async () => {
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = (listener.addr as Deno.NetAddr).port;
      listener.close();
      const transport = createUpstreamGrpcTransport({
        baseUrl: `http://127.0.0.1:${port}`,
      });
      try {
        await rejects(
          createClient(GatewayService, transport).listSnapshots({
            namespace: NS,
          }),
          (e) => e instanceof ConnectError && e.code === Code.Unavailable,
        );
      } finally {
        transport.close();
      }
    });
  } finally {
    await f.close();
  }
});

const VECTORS = new URL("./fixtures/real-sidecar/", import.meta.url);

/** One response of the real sidecar as recorded (vectors/real-sidecar/README.md). */
interface Recording {
  name: string;
  rpc: "GetMetadataAllocated" | "GetMetadataDelta";
  request: Uint8Array;
  responseHeaders: http2.OutgoingHttpHeaders;
  body: Uint8Array;
  /** null: Trailers-Only (the status is in `responseHeaders`). */
  trailers: Record<string, string> | null;
  /** The outcome as buf curl saw it. */
  grpcStatus: number;
  grpcMessage: string;
  messages: JsonValue[];
}

function base64(text: string | undefined): Uint8Array {
  return Uint8Array.from(atob(text ?? ""), (c) => c.charCodeAt(0));
}

/** The fields of errors.json cases and streams/*.json this test reads. */
interface RecordedCase {
  case: string;
  rpc: Recording["rpc"];
  requestMessageB64: string;
  grpcStatus: string | number | null;
  grpcMessage: string;
  trailersOnly: boolean;
  responseHeaders: http2.OutgoingHttpHeaders;
  responseBodyB64?: string;
  trailers: Record<string, string>;
  messages?: JsonValue[];
}
interface RecordedStream extends
  Omit<
    RecordedCase,
    "case" | "requestMessageB64" | "grpcStatus" | "grpcMessage"
  > {
  request: { messageB64: string };
}

async function loadRecordings(): Promise<Recording[]> {
  const out: Recording[] = [];
  const errors: RecordedCase[] = JSON.parse(
    await Deno.readTextFile(new URL("errors.json", VECTORS)),
  ).cases;
  for (const c of errors) {
    if (c.grpcStatus === null) continue; // the stream that never ended
    out.push({
      name: `${c.case} (${c.rpc})`,
      rpc: c.rpc,
      request: base64(c.requestMessageB64),
      responseHeaders: c.responseHeaders,
      body: base64(c.responseBodyB64),
      trailers: c.trailersOnly ? null : c.trailers,
      grpcStatus: Number(c.grpcStatus),
      grpcMessage: c.grpcMessage,
      messages: c.messages ?? [],
    });
  }
  for await (const entry of Deno.readDir(new URL("streams/", VECTORS))) {
    if (entry.name.startsWith("expected-")) continue;
    const r: RecordedStream = JSON.parse(
      await Deno.readTextFile(new URL(`streams/${entry.name}`, VECTORS)),
    );
    out.push({
      name: entry.name,
      rpc: r.rpc,
      request: base64(r.request.messageB64),
      responseHeaders: r.responseHeaders,
      body: base64(r.responseBodyB64),
      trailers: r.trailersOnly ? null : r.trailers,
      grpcStatus: Number(r.trailers["grpc-status"]),
      grpcMessage: r.trailers["grpc-message"],
      messages: r.messages ?? [],
    });
  }
  return out;
}

function grpcFrame(message: Uint8Array): Uint8Array {
  const frame = new Uint8Array(5 + message.length);
  new DataView(frame.buffer).setUint32(1, message.length);
  frame.set(message, 5);
  return frame;
}

/**
 * Answers each request with a recorded sidecar response, byte for byte (the
 * `x-recording` header picks it), after checking the request bytes match
 * the recorded request.
 */
async function startReplay(
  recordings: Recording[],
): Promise<{ url: string; close(): Promise<void> }> {
  const server = http2.createServer();
  server.on("stream", (stream, headers) => {
    const rec = recordings[Number(headers["x-recording"])];
    const chunks: Uint8Array[] = [];
    stream.on("data", (c: Uint8Array) => chunks.push(c));
    stream.on("end", () => {
      const got = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
      chunks.reduce((at, c) => (got.set(c, at), at + c.byteLength), 0);
      const same = rec &&
        headers[":path"] === `/snapshotmetadata.SnapshotMetadata/${rec.rpc}` &&
        got.join() === grpcFrame(rec.request).join();
      if (!same) {
        stream.respond({
          ":status": 200,
          "content-type": "application/grpc",
          "grpc-status": "13",
          "grpc-message": "not the recorded request",
        }, { endStream: true });
      } else if (rec.trailers === null) {
        stream.respond(rec.responseHeaders, { endStream: true });
      } else {
        const trailers = rec.trailers;
        stream.respond(rec.responseHeaders, { waitForTrailers: true });
        stream.on("wantTrailers", () => stream.sendTrailers(trailers));
        stream.end(rec.body);
      }
    });
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on(
    "session",
    (s) => (sessions.add(s), s.on("close", () => sessions.delete(s))),
  );
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        for (const s of sessions) s.close();
      }),
  };
}

Deno.test("upstream gRPC transport: the real sidecar's recorded answers, Trailers-Only included", async () => {
  const recordings = await loadRecordings();
  ok(
    recordings.filter((r) => r.trailers === null).length >= 25,
    "Trailers-Only recordings",
  );
  ok(
    recordings.filter((r) => r.messages.length > 0).length >= 8,
    "recordings with messages",
  );
  const replay = await startReplay(recordings);
  const transport = createUpstreamGrpcTransport({ baseUrl: replay.url });
  const client = createClient(SnapshotMetadata, transport);
  try {
    for (const [i, rec] of recordings.entries()) {
      const options = { headers: { "x-recording": String(i) } };
      const schema: DescMessage = rec.rpc === "GetMetadataAllocated"
        ? GetMetadataAllocatedResponseSchema
        : GetMetadataDeltaResponseSchema;
      const stream = rec.rpc === "GetMetadataAllocated"
        ? client.getMetadataAllocated(
          fromBinary(GetMetadataAllocatedRequestSchema, rec.request),
          options,
        )
        : client.getMetadataDelta(
          fromBinary(GetMetadataDeltaRequestSchema, rec.request),
          options,
        );
      const messages: JsonValue[] = [];
      let error: unknown;
      try {
        for await (const m of stream) messages.push(toJson(schema, m as never));
      } catch (e) {
        error = e;
      }
      if (rec.grpcStatus === 0) {
        equal(error, undefined, `${rec.name}: ${error}`);
      } else {
        ok(error instanceof ConnectError, `${rec.name}: ${error}`);
        equal(error.code, rec.grpcStatus, rec.name);
        equal(error.rawMessage, rec.grpcMessage, rec.name);
      }
      deepStrictEqual(messages, rec.messages, rec.name);
    }
  } finally {
    transport.close();
    await replay.close();
  }
});

/**
 * A backend whose one snapshot is `messages` × `perMessage` allocated blocks,
 * encoded lazily, so a stream far larger than any image on disk costs no
 * memory on the server. It counts what it produced and sees aborts.
 */
class SyntheticBackend implements Backend {
  readonly name = "synthetic";
  produced = 0;
  /** Encoded size of every message produced, in order. */
  readonly sizes: number[] = [];
  openStreams = 0;
  aborted = 0;
  constructor(readonly messages: number, readonly perMessage: number) {}

  get capacity(): number {
    return this.messages * this.perMessage * 4096;
  }

  async *getMetadataAllocated(
    _q: AllocatedQuery,
    o: CallOptions,
  ): AsyncGenerator<Uint8Array> {
    this.openStreams++;
    const onAbort = () => this.aborted++;
    o.signal.addEventListener("abort", onAbort);
    try {
      for (let m = 0; m < this.messages && !o.signal.aborted; m++) {
        const offsets = new Array<number>(this.perMessage);
        for (let i = 0; i < this.perMessage; i++) {
          offsets[i] = (m * this.perMessage + i) * 4096;
        }
        const message = encodeMetadataMessage({
          blockMetadataType: FIXED_LENGTH,
          volumeCapacityBytes: this.capacity,
          offsets,
          sizes: offsets.map(() => 4096),
        });
        this.sizes.push(message.byteLength);
        this.produced++;
        yield message;
      }
    } finally {
      o.signal.removeEventListener("abort", onAbort);
      this.openStreams--;
    }
  }

  getMetadataDelta(): AsyncGenerator<Uint8Array> {
    throw new ConnectError("not supported", Code.Unimplemented);
  }
  getSnapshot(): Promise<SnapshotInfo> {
    return Promise.reject(
      new ConnectError("not supported", Code.Unimplemented),
    );
  }
  listSnapshots(): Promise<SnapshotInfo[]> {
    return Promise.resolve([]);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

async function startSynthetic(messages: number, perMessage: number) {
  const backend = new SyntheticBackend(messages, perMessage);
  const gw = await startGateway({
    host: "127.0.0.1",
    port: 0,
    grpcPort: 0,
    corsOrigins: [],
  }, { backend });
  return { backend, gw };
}

Deno.test("upstream gRPC transport: cancellation resets the stream, the server sees it", async () => {
  const { backend, gw } = await startSynthetic(100_000, 64);
  const transport = createUpstreamGrpcTransport({ baseUrl: gw.grpcUrl });
  try {
    const controller = new AbortController();
    let received = 0;
    await expectError(
      (async () => {
        const stream = createClient(SnapshotMetadata, transport)
          .getMetadataAllocated(
            { namespace: NS, snapshotName: "s", maxResults: 64 },
            { signal: controller.signal },
          );
        for await (const m of stream) {
          equal(Number(m.blockMetadata[0].byteOffset), received * 64 * 4096);
          if (++received === 3) controller.abort();
        }
      })(),
      Code.Canceled,
      /abort/i,
    );
    equal(received, 3);
    // The RST_STREAM reached the server: its call signal aborted and the
    // backend's stream ended long before its 100 000 messages.
    await waitFor(
      "the server to end the stream",
      () => backend.openStreams === 0,
    );
    equal(backend.aborted, 1);
    ok(backend.produced < backend.messages, `${backend.produced} produced`);
    // A deadline cancels the same way.
    await expectError(
      drain(
        createClient(SnapshotMetadata, transport).getMetadataAllocated(
          { namespace: NS, snapshotName: "s", maxResults: 64 },
          { timeoutMs: 300 },
        ),
      ),
      Code.DeadlineExceeded,
      /timed out/,
    );
    await waitFor(
      "the server to end the timed-out stream",
      () => backend.openStreams === 0,
    );
    equal(backend.aborted, 2);
    // connect-es never cancels a stream its reader merely stops reading
    // (its iterators have no return()); closing the transport ends them all.
    const abandoned = createClient(SnapshotMetadata, transport)
      .getMetadataAllocated({
        namespace: NS,
        snapshotName: "s",
        maxResults: 64,
      })[Symbol.asyncIterator]();
    equal(
      Number((await abandoned.next()).value?.blockMetadata[0].byteOffset),
      0,
    );
    transport.close();
    await rejects(
      drain({ [Symbol.asyncIterator]: () => abandoned }),
      ConnectError,
    );
    await waitFor(
      "the server to end the abandoned stream",
      () => backend.openStreams === 0,
    );
    equal(backend.aborted, 3);
  } finally {
    transport.close();
    await gw.close();
  }
});

Deno.test("upstream gRPC transport: a 50 MB stream and a slow reader keep memory bounded", async () => {
  const perMessage = 2048; // ~22 KB per message
  const messages = 2300; // ~51 MB in all
  const { backend, gw } = await startSynthetic(messages, perMessage);
  const transport = createUpstreamGrpcTransport({ baseUrl: gw.grpcUrl });
  try {
    let received = 0;
    let next = 0; // the block the next tuple must describe
    let leadBytes = -1;
    for await (
      const m of createClient(SnapshotMetadata, transport).getMetadataAllocated(
        {
          namespace: NS,
          snapshotName: "s",
          maxResults: perMessage,
        },
      )
    ) {
      equal(m.blockMetadata.length, perMessage);
      for (const b of m.blockMetadata) {
        if (
          Number(b.byteOffset) !== next * 4096 || Number(b.sizeBytes) !== 4096
        ) {
          throw new Error(`tuple ${next}: (${b.byteOffset}, ${b.sizeBytes})`);
        }
        next++;
      }
      received++;
      if (received === 5) {
        // Stall until the server can't get any further ahead.
        let before = -1;
        while (before !== backend.produced && backend.produced < messages) {
          before = backend.produced;
          await waitForNextProduction(backend, before);
        }
        leadBytes = sum(backend.sizes.slice(received));
      } else if (received % 8 === 0) {
        await new Promise((r) => setTimeout(r, 0)); // a slow reader
      }
    }
    equal(received, messages);
    equal(next, messages * perMessage);
    const total = sum(backend.sizes);
    ok(total > 50_000_000, `${total} bytes streamed`);
    // With flow control the server stalls a few MB ahead (HTTP/2 windows and
    // both sides' buffers); without it, it runs to the end of the 51 MB.
    ok(
      leadBytes >= 0 && leadBytes < 8_000_000,
      `server ran ${leadBytes} bytes ahead of a stalled reader`,
    );
  } finally {
    transport.close();
    await gw.close();
  }
});

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

/** Resolves when the backend produced past `count`, or after it stayed put a while (it is blocked). */
async function waitForNextProduction(
  backend: SyntheticBackend,
  count: number,
): Promise<void> {
  for (let i = 0; i < 20 && backend.produced === count; i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
}
