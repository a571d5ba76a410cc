/**
 * The grpc relay backend against a real upstream: a cbt-gateway serving the
 * embedded store (h2c and TLS), with a second gateway in front relaying to it.
 * Answers are checked against ground truth from the image bytes; errors must
 * keep their upstream code; a client that goes away cancels the upstream.
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { SnapshotMetadata } from "../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import { GatewayService } from "../gen/cbtgateway/v1/gateway_pb.ts";
import { NodeGrpcRelayBackend } from "../src/adapter/node-http2/relay-backend.ts";
import { startGateway } from "../src/server/start.ts";
import {
  allocatedBlocks,
  changedBlocks,
  expectedTuples,
} from "./support/ground-truth.ts";
import { collectTuples } from "./support/collect-tuples.ts";
import { mutate, randomImage, Rng } from "./support/images.ts";
import { issueServerCert, makeCertificateAuthority } from "./support/certs.ts";
import { startTestGateway, writeImage } from "./support/gateway.ts";

const NS = "relay";
const SIZE = 2 * 1024 * 1024 + 512;

async function relayTo(url: string, caPem?: string) {
  return await startGateway(
    { host: "127.0.0.1", port: 0, grpcPort: 0, corsOrigins: [] },
    { backend: new NodeGrpcRelayBackend({ url, caPem }) },
  );
}

Deno.test("grpc relay: streams, errors and cancellation match the upstream", async (t) => {
  const dataDir = await Deno.makeTempDir({ prefix: "cbt-relay-" });
  const pkiDir = await Deno.makeTempDir({ prefix: "cbt-relay-pki-" });
  const rng = new Rng(4242);
  const base = randomImage(rng, SIZE);
  const target = mutate(rng, base, SIZE + 4096);
  await writeImage(dataDir, NS, "vol", "base", base);
  await writeImage(dataDir, NS, "vol", "target", target);
  const ca = await makeCertificateAuthority(pkiDir);
  const cert = await issueServerCert(ca, {
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1"],
  });
  const upstream = await startTestGateway({ dataDir });
  const tlsUpstream = await startTestGateway({
    dataDir,
    tls: { certPath: cert.certPath, keyPath: cert.keyPath },
  });
  const relay = await relayTo(upstream.grpcUrl);
  const tlsRelay = await relayTo(tlsUpstream.grpcUrl, ca.certPem);
  try {
    for (const [label, gw] of [["h2c", relay], ["tls", tlsRelay]] as const) {
      await t.step(
        `${label}: allocated and delta equal ground truth`,
        async () => {
          const client = createClient(
            SnapshotMetadata,
            createConnectTransport({ baseUrl: gw.httpUrl }),
          );
          for (const startingOffset of [0, 4096 * 50 + 7]) {
            deepStrictEqual(
              await collectTuples(client.getMetadataAllocated({
                namespace: NS,
                snapshotName: "target",
                startingOffset: BigInt(startingOffset),
                maxResults: 13,
              })),
              expectedTuples(
                allocatedBlocks(target),
                "FIXED",
                target.length,
                startingOffset,
              ),
            );
            deepStrictEqual(
              await collectTuples(client.getMetadataDelta({
                namespace: NS,
                baseSnapshotId: "vol/base",
                targetSnapshotName: "target",
                startingOffset: BigInt(startingOffset),
              })),
              expectedTuples(
                changedBlocks(base, target),
                "FIXED",
                target.length,
                startingOffset,
              ),
            );
          }
          // By-name delta resolves the base through the upstream's GatewayService.
          const gateway = createClient(
            GatewayService,
            createConnectTransport({ baseUrl: gw.httpUrl }),
          );
          deepStrictEqual(
            await collectTuples(gateway.getMetadataDeltaByName({
              namespace: NS,
              baseSnapshotName: "base",
              targetSnapshotName: "target",
            })),
            expectedTuples(
              changedBlocks(base, target),
              "FIXED",
              target.length,
              0,
            ),
          );
        },
      );
    }

    await t.step("upstream errors keep their code", async () => {
      const client = createClient(
        SnapshotMetadata,
        createConnectTransport({ baseUrl: relay.httpUrl }),
      );
      let err: ConnectError | undefined;
      try {
        await collectTuples(client.getMetadataAllocated({
          namespace: NS,
          snapshotName: "missing",
        }));
      } catch (e) {
        err = ConnectError.from(e);
      }
      equal(err?.code, Code.NotFound, String(err));
      ok(err?.rawMessage.includes("missing"), err?.rawMessage);
    });

    await t.step("an unreachable upstream is Unavailable", async () => {
      const dead = await relayTo("http://127.0.0.1:1");
      try {
        const client = createClient(
          SnapshotMetadata,
          createConnectTransport({ baseUrl: dead.httpUrl }),
        );
        let err: ConnectError | undefined;
        try {
          await collectTuples(client.getMetadataAllocated({
            namespace: NS,
            snapshotName: "target",
          }));
        } catch (e) {
          err = ConnectError.from(e);
        }
        equal(err?.code, Code.Unavailable, String(err));
      } finally {
        await dead.close();
      }
    });

    await t.step("a client that goes away cancels the upstream", async () => {
      const client = createClient(
        SnapshotMetadata,
        createConnectTransport({ baseUrl: relay.httpUrl }),
      );
      const abort = new AbortController();
      const stream = client.getMetadataAllocated({
        namespace: NS,
        snapshotName: "target",
        maxResults: 1,
      }, { signal: abort.signal });
      for await (const _ of stream) {
        abort.abort();
        break;
      }
      // The upstream store holds the image open while its stream runs.
      const deadline = Date.now() + 5000;
      while (upstream.store.openFiles > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      equal(upstream.store.openFiles, 0);
    });
  } finally {
    await relay.close();
    await tlsRelay.close();
    await upstream.close();
    await tlsUpstream.close();
    await Deno.remove(dataDir, { recursive: true });
    await Deno.remove(pkiDir, { recursive: true });
  }
});
