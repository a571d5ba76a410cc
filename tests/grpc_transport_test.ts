/**
 * The upstream native-gRPC transport (tests/support/grpc-transport.ts)
 * against real gateways on their gRPC port, over h2c and TLS: many streams
 * on fresh and reused connections (the Deno "Premature close" race
 * connect-node's client loses), TLS trust and server errors. Tuples are
 * checked against ground truth computed from the image bytes. The real
 * sidecar's recorded answers: grpc_transport_recorded_test.ts; cancellation
 * and backpressure: grpc_transport_flow_test.ts.
 */
import {
  deepStrictEqual,
  equal,
  ok,
  rejects,
  throws,
} from "node:assert/strict";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import {
  type GetMetadataAllocatedResponse,
  type GetMetadataDeltaResponse,
  SnapshotMetadata,
} from "../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import { GatewayService } from "../gen/cbtgateway/v1/gateway_pb.ts";
import {
  createUpstreamGrpcTransport,
  type UpstreamGrpcTransport,
} from "./support/grpc-transport.ts";
import { FIXED_LENGTH } from "../src/wire/metadata-message.ts";
import {
  allocatedBlocks,
  changedBlocks,
  expectedTuples,
  type Tuple,
} from "./support/ground-truth.ts";
import { mutate, randomImage, Rng, writeImage } from "./support/images.ts";
import { makeCertificateAuthority } from "./support/certs.ts";
import { type TestGateway } from "./support/gateway.ts";
import { startTlsGateways } from "./support/tls-gateways.ts";
import { drain } from "./support/collect.ts";
import { expectConnectError as expectError } from "./support/expect-connect-error.ts";

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
  const gateways = await startTlsGateways({ prefix: "cbt-grpc-transport" });
  const rng = new Rng(5);
  const base = randomImage(rng, SIZE);
  const target = mutate(rng, base, SIZE + 8192);
  await writeImage(gateways.dataDir, NS, "v", "base", base);
  await writeImage(gateways.dataDir, NS, "v", "target", target);
  const wrongCa = await makeCertificateAuthority(`${gateways.pkiDir}/wrong`, {
    commonName: "not-the-ca",
  });
  return {
    base,
    target,
    caPem: gateways.ca.certPem,
    wrongCaPem: wrongCa.certPem,
    h2c: gateways.h2c,
    tls: gateways.tls,
    close: gateways.close,
  };
}

type Response = GetMetadataAllocatedResponse | GetMetadataDeltaResponse;

/** All tuples of a stream, checking every message on the way. */
async function checkedTuples(
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
          checkedTuples(
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
        checkedTuples(
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
