/**
 * Wire identity with the real upstream sidecar: the request frames it was
 * sent (recorded in tests/fixtures/real-sidecar) go to our native gRPC port as raw bytes
 * through real `curl` — no client of ours — and the response bodies must be
 * byte-for-byte what the real sidecar and hostpath driver answered, over the
 * same 16 MiB volume (the demo seeds exactly the recorded block pattern).
 */
import { deepStrictEqual, equal } from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  GetMetadataDeltaRequestSchema,
} from "../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import { seedNodeDemoIfEmpty } from "../src/adapter/node-fs/file-store.ts";
import { startTestGateway } from "./support/gateway.ts";
import { run } from "./support/run.ts";

const VECTORS = new URL("./fixtures/real-sidecar/streams/", import.meta.url)
  .pathname;

interface Recording {
  rpc: string;
  path: string;
  driverBlockMetadataType: "FIXED_LENGTH" | "VARIABLE_LENGTH";
  request: { frameB64: string; messageB64: string };
  responseBodyB64: string;
  trailers: Record<string, string>;
}

function b64(s: string): Uint8Array {
  return Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
}

function frame(message: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + message.length);
  new DataView(out.buffer).setUint32(1, message.length);
  out.set(message, 5);
  return out;
}

/** The recorded request; a delta's base handle becomes our id for snap-1. */
function requestFrame(rec: Recording): Uint8Array {
  if (rec.rpc !== "GetMetadataDelta") return b64(rec.request.frameB64);
  const req = fromBinary(
    GetMetadataDeltaRequestSchema,
    b64(rec.request.messageB64),
  );
  return frame(
    toBinary(
      GetMetadataDeltaRequestSchema,
      create(GetMetadataDeltaRequestSchema, {
        ...req,
        baseSnapshotId: "vol-1/snap-1",
      }),
    ),
  );
}

Deno.test("responses are byte-identical to the real sidecar's recordings", async (t) => {
  const dataDir = await Deno.makeTempDir({ prefix: "cbt-wire-" });
  const work = await Deno.makeTempDir({ prefix: "cbt-wire-io-" });
  // The recordings used namespace ns1; the demo volume is the same data.
  const seedDir = `${dataDir}.seed`;
  await seedNodeDemoIfEmpty(seedDir);
  await Deno.rename(`${seedDir}/demo`, `${dataDir}/ns1`);
  await Deno.remove(seedDir, { recursive: true });
  const gateways = {
    FIXED_LENGTH: await startTestGateway({ dataDir }),
    VARIABLE_LENGTH: await startTestGateway({
      dataDir,
      blockMetadataType: "VARIABLE_LENGTH",
    }),
  };
  try {
    const files = [...Deno.readDirSync(VECTORS)].map((e) => e.name).filter((
      n,
    ) => /-max\d+\.json$/.test(n)).sort();
    equal(files.length, 8);
    for (const file of files) {
      await t.step(file, async () => {
        const rec: Recording = JSON.parse(
          await Deno.readTextFile(VECTORS + file),
        );
        const gw = gateways[rec.driverBlockMetadataType];
        await Deno.writeFile(`${work}/request`, requestFrame(rec));
        const r = await run("curl", [
          "--silent",
          "--show-error",
          "--http2-prior-knowledge",
          "-H",
          "content-type: application/grpc",
          "-H",
          "te: trailers",
          "--data-binary",
          `@${work}/request`,
          "--dump-header",
          `${work}/headers`,
          "--output",
          `${work}/body`,
          `${gw.grpcUrl}${rec.path}`,
        ]);
        equal(r.code, 0, r.stderr);
        deepStrictEqual(
          await Deno.readFile(`${work}/body`),
          b64(rec.responseBodyB64),
        );
        const headers = (await Deno.readTextFile(`${work}/headers`))
          .toLowerCase();
        equal(
          /grpc-status: 0\r?\n/.test(headers),
          true,
          `grpc-status 0 in ${headers}`,
        );
      });
    }
  } finally {
    await gateways.FIXED_LENGTH.close();
    await gateways.VARIABLE_LENGTH.close();
    await Deno.remove(dataDir, { recursive: true });
    await Deno.remove(work, { recursive: true });
  }
});
