/**
 * End to end over every protocol with the clients users use: connect-web
 * (Connect binary, Connect JSON, gRPC-Web over fetch), connect-node (native
 * gRPC, h2c and TLS) and `buf curl` (Connect, gRPC-Web, gRPC). Every answer
 * is checked against ground truth computed from the image bytes.
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
import {
  BlockMetadataType,
  SnapshotMetadata,
} from "../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import { GatewayService } from "../gen/cbtgateway/v1/gateway_pb.ts";
import {
  allocatedBlocks,
  changedBlocks,
  expectedTuples,
  type Tuple,
} from "./support/ground-truth.ts";
import { mutate, randomImage, Rng, writeImage } from "./support/images.ts";
import { type TestGateway } from "./support/gateway.ts";
import { startTlsGateways } from "./support/tls-gateways.ts";
import { parseJsonSequence } from "./support/json-sequence.ts";
import { ROOT, run } from "./support/run.ts";
import { collectTuples } from "./support/collect.ts";
import { requestFrame } from "./support/grpc-request.ts";

const NS = "proto";
const SIZE = 3 * 1024 * 1024 + 1000; // not a multiple of 4 KiB on purpose

interface Fixture {
  dataDir: string;
  pkiDir: string;
  caPath: string;
  caPem: string;
  base: Uint8Array;
  target: Uint8Array;
  fixed: TestGateway;
  variable: TestGateway;
  close(): Promise<void>;
}

/** FIXED_LENGTH over h2c and VARIABLE_LENGTH over TLS, on the same images. */
async function setUp(): Promise<Fixture> {
  const gateways = await startTlsGateways({
    prefix: "cbt-proto",
    tlsBlockMetadataType: "VARIABLE_LENGTH",
  });
  const { dataDir } = gateways;
  const rng = new Rng(20261127);
  const base = randomImage(rng, SIZE);
  const target = mutate(rng, base, SIZE + 8192);
  await writeImage(dataDir, NS, "vol-a", "base", base);
  await writeImage(dataDir, NS, "vol-a", "target", target);
  await writeImage(dataDir, NS, "vol-a", "same", base);
  await writeImage(dataDir, NS, "vol-a", "empty", new Uint8Array(SIZE));
  await writeImage(dataDir, NS, "vol-b", "other", base);
  return {
    dataDir,
    pkiDir: gateways.pkiDir,
    caPath: gateways.ca.certPath,
    caPem: gateways.ca.certPem,
    base,
    target,
    fixed: gateways.h2c,
    variable: gateways.tls,
    close: gateways.close,
  };
}

/** A call as every client sees it: request fields and expected outcome. */
interface Case {
  rpc: "GetMetadataAllocated" | "GetMetadataDelta";
  request: Record<string, string | number>;
  expected: Tuple[];
}

function cases(f: Fixture, type: "FIXED" | "VARIABLE"): Case[] {
  const out: Case[] = [];
  const capacity = f.target.length;
  for (
    const startingOffset of [
      0,
      4096 * 37,
      4096 * 100 + 123,
      capacity - 1,
      capacity + 5,
    ]
  ) {
    for (const maxResults of [0, 7]) {
      out.push({
        rpc: "GetMetadataAllocated",
        request: {
          namespace: NS,
          snapshotName: "target",
          startingOffset,
          maxResults,
        },
        expected: expectedTuples(
          allocatedBlocks(f.target),
          type,
          capacity,
          startingOffset,
        ),
      });
      out.push({
        rpc: "GetMetadataDelta",
        request: {
          namespace: NS,
          baseSnapshotId: "vol-a/base",
          targetSnapshotName: "target",
          startingOffset,
          maxResults,
        },
        expected: expectedTuples(
          changedBlocks(f.base, f.target),
          type,
          capacity,
          startingOffset,
        ),
      });
    }
  }
  // Zero-message streams: nothing allocated, nothing changed.
  out.push({
    rpc: "GetMetadataAllocated",
    request: { namespace: NS, snapshotName: "empty" },
    expected: [],
  });
  out.push({
    rpc: "GetMetadataDelta",
    request: {
      namespace: NS,
      baseSnapshotId: "vol-a/base",
      targetSnapshotName: "same",
    },
    expected: [],
  });
  return out;
}

/** Collected stream: tuples plus per-message facts to check invariants. */
interface Collected {
  tuples: Tuple[];
  messageSizes: number[];
  types: string[];
  capacities: string[];
}

function collectJson(messages: Record<string, unknown>[]): Collected {
  const c: Collected = {
    tuples: [],
    messageSizes: [],
    types: [],
    capacities: [],
  };
  for (const m of messages) {
    const blocks = (m.blockMetadata ?? []) as {
      byteOffset?: string;
      sizeBytes?: string;
    }[];
    c.messageSizes.push(blocks.length);
    c.types.push(String(m.blockMetadataType));
    c.capacities.push(String(m.volumeCapacityBytes));
    for (const b of blocks) {
      c.tuples.push([Number(b.byteOffset ?? 0), Number(b.sizeBytes ?? 0)]);
    }
  }
  return c;
}

function checkStream(
  got: Collected,
  kase: Case,
  type: "FIXED" | "VARIABLE",
  capacity: number,
  label: string,
) {
  deepStrictEqual(
    got.tuples,
    kase.expected,
    `${label}: tuples differ from ground truth`,
  );
  const max = Number(kase.request.maxResults ?? 0) || 256;
  for (const n of got.messageSizes) {
    ok(n > 0 && n <= max, `${label}: message with ${n} tuples (max ${max})`);
  }
  for (const t of got.types) {
    equal(t, type === "FIXED" ? "FIXED_LENGTH" : "VARIABLE_LENGTH", label);
  }
  for (const cap of got.capacities) equal(cap, String(capacity), label);
}

async function callWithClient(
  transport: Transport,
  kase: Case,
): Promise<Collected> {
  const client = createClient(SnapshotMetadata, transport);
  const stream = kase.rpc === "GetMetadataAllocated"
    ? client.getMetadataAllocated(kase.request)
    : client.getMetadataDelta(kase.request);
  const c: Collected = {
    tuples: [],
    messageSizes: [],
    types: [],
    capacities: [],
  };
  for await (const m of stream) {
    c.messageSizes.push(m.blockMetadata.length);
    c.types.push(BlockMetadataType[m.blockMetadataType]);
    c.capacities.push(String(m.volumeCapacityBytes));
    for (const b of m.blockMetadata) {
      c.tuples.push([Number(b.byteOffset), Number(b.sizeBytes)]);
    }
  }
  return c;
}

const BUF = `${ROOT}/node_modules/.bin/buf`;

async function bufCurl(
  protocol: "connect" | "grpcweb" | "grpc",
  url: string,
  rpc: string,
  request: unknown,
  caPath?: string,
) {
  const args = [
    "curl",
    "--schema",
    `${ROOT}/proto`,
    "--protocol",
    protocol,
    "--data",
    JSON.stringify(request),
  ];
  if (url.startsWith("https:")) args.push("--cacert", caPath!);
  else if (protocol === "grpc") args.push("--http2-prior-knowledge");
  const service =
    rpc.startsWith("GetMetadataDeltaByName") || rpc === "ListSnapshots"
      ? "cbtgateway.v1.GatewayService"
      : "snapshotmetadata.SnapshotMetadata";
  args.push(`${url}/${service}/${rpc}`);
  const r = await run(BUF, args);
  return {
    code: r.code,
    messages: parseJsonSequence(r.stdout),
    error: parseJsonSequence(r.stderr)[0],
  };
}

function tlsFetch(caPem: string): typeof fetch {
  const client = Deno.createHttpClient({ caCerts: [caPem] });
  return (input, init) => fetch(input, { ...init, client });
}

type ClientFactory = (f: Fixture, gw: TestGateway) => Transport;

const clients: Record<string, ClientFactory> = {
  "connect-web Connect binary": (f, gw) =>
    createConnectTransport({
      baseUrl: gw.httpUrl,
      useBinaryFormat: true,
      fetch: gw.httpUrl.startsWith("https") ? tlsFetch(f.caPem) : undefined,
    }),
  "connect-web Connect JSON": (f, gw) =>
    createConnectTransport({
      baseUrl: gw.httpUrl,
      useBinaryFormat: false,
      fetch: gw.httpUrl.startsWith("https") ? tlsFetch(f.caPem) : undefined,
    }),
  "connect-web gRPC-Web": (f, gw) =>
    createGrpcWebTransport({
      baseUrl: gw.httpUrl,
      fetch: gw.httpUrl.startsWith("https") ? tlsFetch(f.caPem) : undefined,
    }),
};

/** Result of one call made by the Node.js client. */
interface NodeCallResult {
  messages: Record<string, unknown>[];
  error?: { code: number; message: string };
}

/**
 * Native gRPC through @connectrpc/connect-node running under Node.js, as its
 * users run it; the schema comes from `buf build`, not from our gen/.
 */
async function nodeGrpcCalls(
  f: Fixture,
  url: string,
  ca: string | undefined,
  calls: { rpc: Case["rpc"]; request: unknown }[],
): Promise<NodeCallResult[]> {
  const descriptorSet = `${f.pkiDir}/schema.binpb`;
  const built = await run(BUF, ["build", `${ROOT}/proto`, "-o", descriptorSet]);
  equal(built.code, 0, built.stderr);
  const r = await run("node", [`${ROOT}/tests/support/node-grpc-client.mjs`], {
    cwd: ROOT,
    stdin: new TextEncoder().encode(
      JSON.stringify({ url, ca, descriptorSet, calls }),
    ),
  });
  equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

Deno.test("every protocol and client answers ground truth", async (t) => {
  const f = await setUp();
  try {
    for (
      const [gw, type, scheme] of [[f.fixed, "FIXED", "h2c/http"], [
        f.variable,
        "VARIABLE",
        "TLS",
      ]] as const
    ) {
      const capacity = f.target.length;
      for (const [name, make] of Object.entries(clients)) {
        await t.step(`${name} (${type}, ${scheme})`, async () => {
          const transport = make(f, gw);
          for (const kase of cases(f, type)) {
            const got = await callWithClient(transport, kase);
            checkStream(
              got,
              kase,
              type,
              capacity,
              `${name} ${kase.rpc} ${JSON.stringify(kase.request)}`,
            );
          }
        });
      }
      await t.step(
        `connect-node gRPC under Node.js (${type}, ${scheme})`,
        async () => {
          const all = cases(f, type);
          const results = await nodeGrpcCalls(
            f,
            gw.grpcUrl,
            gw.grpcUrl.startsWith("https") ? f.caPem : undefined,
            all.map((k) => ({ rpc: k.rpc, request: k.request })),
          );
          all.forEach((kase, i) => {
            equal(
              results[i].error,
              undefined,
              JSON.stringify(results[i].error),
            );
            checkStream(
              collectJson(results[i].messages),
              kase,
              type,
              capacity,
              `connect-node ${kase.rpc}`,
            );
          });
        },
      );
      for (const protocol of ["connect", "grpcweb", "grpc"] as const) {
        await t.step(
          `buf curl --protocol ${protocol} (${type}, ${scheme})`,
          async () => {
            const url = protocol === "grpc" ? gw.grpcUrl : gw.httpUrl;
            // buf curl is a process per call: a representative subset.
            for (
              const kase of cases(f, type).filter((_, i) =>
                i % 3 === 0 || i >= 20
              )
            ) {
              const r = await bufCurl(
                protocol,
                url,
                kase.rpc,
                kase.request,
                f.caPath,
              );
              equal(r.code, 0, `buf curl failed: ${JSON.stringify(r.error)}`);
              checkStream(
                collectJson(r.messages),
                kase,
                type,
                capacity,
                `buf curl ${protocol} ${kase.rpc}`,
              );
            }
          },
        );
      }
    }
  } finally {
    await f.close();
  }
});

/** Requests that must fail, with the code every protocol must report. */
const errorCases: {
  label: string;
  rpc: Case["rpc"];
  request: Record<string, unknown>;
  code: Code;
}[] = [
  {
    label: "unknown snapshot",
    rpc: "GetMetadataAllocated",
    request: { namespace: NS, snapshotName: "nope" },
    code: Code.NotFound,
  },
  {
    label: "unknown namespace",
    rpc: "GetMetadataAllocated",
    request: { namespace: "nope", snapshotName: "target" },
    code: Code.NotFound,
  },
  {
    label: "missing namespace",
    rpc: "GetMetadataAllocated",
    request: { snapshotName: "target" },
    code: Code.InvalidArgument,
  },
  {
    label: "missing snapshot name",
    rpc: "GetMetadataAllocated",
    request: { namespace: NS },
    code: Code.InvalidArgument,
  },
  {
    label: "negative offset",
    rpc: "GetMetadataAllocated",
    request: { namespace: NS, snapshotName: "target", startingOffset: -4096 },
    code: Code.OutOfRange,
  },
  {
    label: "negative max_results",
    rpc: "GetMetadataAllocated",
    request: { namespace: NS, snapshotName: "target", maxResults: -1 },
    code: Code.InvalidArgument,
  },
  {
    label: "name escaping the data dir",
    rpc: "GetMetadataAllocated",
    request: { namespace: NS, snapshotName: "../../etc/passwd" },
    code: Code.InvalidArgument,
  },
  {
    label: "namespace escaping the data dir",
    rpc: "GetMetadataAllocated",
    request: { namespace: "..", snapshotName: "target" },
    code: Code.InvalidArgument,
  },
  {
    label: "base from another volume",
    rpc: "GetMetadataDelta",
    request: {
      namespace: NS,
      baseSnapshotId: "vol-b/other",
      targetSnapshotName: "target",
    },
    code: Code.InvalidArgument,
  },
  {
    label: "unknown base",
    rpc: "GetMetadataDelta",
    request: {
      namespace: NS,
      baseSnapshotId: "vol-a/nope",
      targetSnapshotName: "target",
    },
    code: Code.NotFound,
  },
  {
    label: "base id escaping the data dir",
    rpc: "GetMetadataDelta",
    request: {
      namespace: NS,
      baseSnapshotId: "../../../etc/passwd",
      targetSnapshotName: "target",
    },
    code: Code.InvalidArgument,
  },
  {
    label: "missing base id",
    rpc: "GetMetadataDelta",
    request: { namespace: NS, targetSnapshotName: "target" },
    code: Code.InvalidArgument,
  },
];

Deno.test("errors carry the right code over every protocol", async (t) => {
  const f = await setUp();
  try {
    for (const [name, make] of Object.entries(clients)) {
      await t.step(name, async () => {
        const transport = make(f, f.fixed);
        for (const e of errorCases) {
          let caught: unknown;
          try {
            await callWithClient(transport, {
              rpc: e.rpc,
              request: e.request as Case["request"],
              expected: [],
            });
          } catch (err) {
            caught = err;
          }
          ok(
            caught instanceof ConnectError,
            `${e.label}: expected an error, got ${caught}`,
          );
          equal(
            Code[caught.code],
            Code[e.code],
            `${e.label}: ${caught.message}`,
          );
        }
      });
    }
    await t.step("connect-node gRPC under Node.js", async () => {
      const results = await nodeGrpcCalls(
        f,
        f.fixed.grpcUrl,
        undefined,
        errorCases,
      );
      errorCases.forEach((e, i) => {
        equal(results[i].messages.length, 0, e.label);
        equal(
          results[i].error && Code[results[i].error!.code],
          Code[e.code],
          `${e.label}: ${results[i].error?.message}`,
        );
      });
    });
    for (const protocol of ["connect", "grpcweb", "grpc"] as const) {
      await t.step(`buf curl --protocol ${protocol}`, async () => {
        const url = protocol === "grpc" ? f.fixed.grpcUrl : f.fixed.httpUrl;
        for (const e of errorCases.slice(0, 6)) {
          const r = await bufCurl(protocol, url, e.rpc, e.request);
          const expected = Code[e.code].replace(
            /[A-Z]/g,
            (c, i) => (i ? "_" : "") + c.toLowerCase(),
          );
          equal(
            r.error?.code,
            expected,
            `${e.label}: ${JSON.stringify(r.error)}`,
          );
          equal(r.messages.length, 0);
        }
      });
    }
  } finally {
    await f.close();
  }
});

Deno.test("GatewayService: delta by base name and snapshot listing", async () => {
  const f = await setUp();
  try {
    const client = createClient(
      GatewayService,
      createConnectTransport({ baseUrl: f.fixed.httpUrl }),
    );
    deepStrictEqual(
      await collectTuples(client.getMetadataDeltaByName({
        namespace: NS,
        baseSnapshotName: "base",
        targetSnapshotName: "target",
      })),
      expectedTuples(
        changedBlocks(f.base, f.target),
        "FIXED",
        f.target.length,
        0,
      ),
    );
    const list = await client.listSnapshots({ namespace: NS });
    deepStrictEqual(
      list.snapshots.map((
        s,
      ) => [s.volume, s.name, s.snapshotId, Number(s.volumeCapacityBytes)]),
      [
        ["vol-a", "base", "vol-a/base", f.base.length],
        ["vol-a", "empty", "vol-a/empty", SIZE],
        ["vol-a", "same", "vol-a/same", f.base.length],
        ["vol-a", "target", "vol-a/target", f.target.length],
        ["vol-b", "other", "vol-b/other", f.base.length],
      ],
    );
  } finally {
    await f.close();
  }
});

Deno.test("gzip is negotiated on Connect streams", async () => {
  const f = await setUp();
  try {
    const res = await fetch(
      `${f.fixed.httpUrl}/snapshotmetadata.SnapshotMetadata/GetMetadataAllocated`,
      {
        method: "POST",
        headers: {
          "content-type": "application/connect+json",
          "connect-protocol-version": "1",
          "connect-accept-encoding": "gzip",
        },
        body: requestFrame(
          new TextEncoder().encode(JSON.stringify({
            namespace: NS,
            snapshotName: "target",
            maxResults: 200,
          })),
        ),
      },
    );
    equal(res.status, 200);
    equal(res.headers.get("connect-content-encoding"), "gzip");
    const bytes = new Uint8Array(await res.arrayBuffer());
    equal(bytes[0] & 1, 1, "first frame is flagged compressed");
    const length = new DataView(bytes.buffer).getUint32(1);
    const inflated = await new Response(
      new Blob([bytes.slice(5, 5 + length)]).stream().pipeThrough(
        new DecompressionStream("gzip"),
      ),
    ).json();
    const expected = expectedTuples(
      allocatedBlocks(f.target),
      "FIXED",
      f.target.length,
      0,
    ).slice(0, 200);
    deepStrictEqual(
      inflated.blockMetadata.map((
        b: { byteOffset?: string; sizeBytes: string },
      ) => [Number(b.byteOffset ?? 0), Number(b.sizeBytes)]),
      expected,
    );
  } finally {
    await f.close();
  }
});
