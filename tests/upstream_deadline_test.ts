/**
 * The caller's deadline goes upstream as `grpc-timeout` (issue 13, item 6):
 * what is left of it when the upstream call starts, cut to
 * `--upstream-max-timeout`. Checked where it arrives — at the upstream —
 * for the static relay (a synthetic upstream that records request headers)
 * and for Kubernetes mode (the sidecar stand-in records them), from
 * Connect, gRPC-Web and native gRPC callers.
 */
import { equal, ok } from "node:assert/strict";
import * as http2 from "node:http2";
import { createClient } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-web";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { SnapshotMetadata } from "../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import { grpcTimeoutHeader } from "../src/adapter/node-http2/grpc-call.ts";
import { NodeGrpcRelayBackend } from "../src/adapter/node-http2/relay-backend.ts";
import { startGateway } from "../src/server/start.ts";
import { parseConfig } from "../src/config.ts";
import { startSyntheticUpstream } from "./support/synthetic-upstream.ts";
import { addSnapshot, startKubeFixture } from "./support/kube-fixture.ts";
import { randomImage, Rng } from "./support/images.ts";

/** grpc-timeout → ms. */
function ms(header: string | string[] | undefined): number {
  const m = /^(\d{1,8})([HMSmun])$/.exec(String(header));
  if (!m) throw new Error(`not a grpc-timeout: ${header}`);
  const unit = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };
  return Number(m[1]) * unit[m[2] as keyof typeof unit];
}

Deno.test("grpcTimeoutHeader: remaining time, clamped, at most 8 digits", () => {
  equal(grpcTimeoutHeader(undefined), undefined);
  equal(grpcTimeoutHeader(1500, 0, 1000), "500m");
  equal(grpcTimeoutHeader(1000, 0, 5000), "1m"); // past: the least there is
  equal(grpcTimeoutHeader(1_000_000, 30_000, 0), "30000m");
  equal(grpcTimeoutHeader(2 ** 36, 0, 0), "68719477S");
  equal(grpcTimeoutHeader(1e14, 0, 0), "27777778H");
  equal(grpcTimeoutHeader(1e20, 0, 0), "99999999H");
  equal(parseConfig([], {}).upstreamMaxTimeoutS, 3600);
  equal(
    parseConfig(["--upstream-max-timeout", "0"], {}).upstreamMaxTimeoutS,
    0,
  );
});

Deno.test("static relay: the caller's deadline reaches the upstream as grpc-timeout, clamped", async () => {
  const upstream = await startSyntheticUpstream();
  const gw = await startGateway({
    host: "127.0.0.1",
    port: 0,
    grpcPort: 0,
    corsOrigins: [],
  }, {
    backend: new NodeGrpcRelayBackend({
      url: upstream.url,
      maxTimeoutMs: 60_000,
    }),
  });
  const session = http2.connect(gw.grpcUrl);
  try {
    const clients = {
      connect: createClient(
        SnapshotMetadata,
        createConnectTransport({ baseUrl: gw.httpUrl, useBinaryFormat: true }),
      ),
      "grpc-web": createClient(
        SnapshotMetadata,
        createGrpcWebTransport({ baseUrl: gw.httpUrl }),
      ),
      grpc: createClient(
        SnapshotMetadata,
        createGrpcTransport({ baseUrl: gw.grpcUrl }),
      ),
    };
    for (const [name, client] of Object.entries(clients)) {
      const call = async (timeoutMs?: number) => {
        for await (
          const _ of client.getMetadataAllocated({
            namespace: "ns",
            snapshotName: "t10",
          }, { timeoutMs })
        ) { /* drain */ }
        return upstream.requestHeaders.at(-1)!["grpc-timeout"];
      };
      const within = ms(await call(20_000));
      ok(within <= 20_000 && within > 10_000, `${name}: ${within} ms`);
      equal(ms(await call(600_000)), 60_000, `${name}: clamped`);
      equal(await call(undefined), undefined, `${name}: no deadline, none`);
    }
  } finally {
    session.close();
    await gw.close();
    await upstream.close();
  }
});

Deno.test("kubernetes mode: the caller's deadline reaches the sidecar as grpc-timeout, clamped", async () => {
  const f = await startKubeFixture({
    auth: "none",
    upstreamMaxTimeoutS: 30,
  });
  try {
    await addSnapshot(f, {
      namespace: "ns",
      name: "snap",
      volume: "vol",
      image: randomImage(new Rng(7), 64 * 1024),
    });
    const client = createClient(
      SnapshotMetadata,
      createConnectTransport({
        baseUrl: f.gateway.httpUrl,
        useBinaryFormat: true,
      }),
    );
    const up = Object.values(f.drivers)[0].upstream;
    const call = async (timeoutMs?: number) => {
      for await (
        const _ of client.getMetadataAllocated(
          { namespace: "ns", snapshotName: "snap" },
          { timeoutMs },
        )
      ) { /* drain */ }
      const last = up.calls.at(-1)!;
      equal(last.outcome, "ok");
      return last.grpcTimeout;
    };
    const within = ms(await call(10_000));
    ok(within <= 10_000 && within > 5_000, `${within} ms`);
    equal(ms(await call(3_600_000)), 30_000);
    equal(await call(undefined), undefined);
  } finally {
    await f.close();
  }
});
