/**
 * The paced bench's sidecar stand-in (bench/paced-upstream.ts) does what the
 * bench says it does: every message leaves in its own HTTP/2 DATA frame
 * (seen by a real HTTP/2 peer, nghttp), the tuples are the ones asked for
 * (N 4 KiB blocks, in order, FIXED_LENGTH, capacity N × 4 KiB), and a
 * request without a security_token is refused Unauthenticated, as the
 * sidecar would. Its pace is the bench's business, not asserted here.
 */
import { deepStrictEqual, equal, match } from "node:assert/strict";
import * as http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { GetMetadataAllocatedRequestSchema } from "../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import {
  FIXED_LENGTH,
  scanMetadataMessage,
} from "../src/wire/metadata-message.ts";
import { rawGrpcCall } from "../src/adapter/node-http2/grpc-call.ts";
import { startPacedUpstream } from "../bench/processes.ts";
import { issueServerCert, makeCertificateAuthority } from "./support/certs.ts";

const ALLOCATED = "/snapshotmetadata.SnapshotMetadata/GetMetadataAllocated";
const BLOCK = 4096;

function request(snapshotName: string, maxResults: number, token: string) {
  return toBinary(
    GetMetadataAllocatedRequestSchema,
    create(GetMetadataAllocatedRequestSchema, {
      securityToken: token,
      namespace: "bench",
      snapshotName,
      maxResults,
    }),
  );
}

Deno.test("paced upstream: one DATA frame per message, the asked-for tuples, token required", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "cbt-paced-upstream-test-" });
  const ca = await makeCertificateAuthority(dir);
  const cert = await issueServerCert(ca, {
    name: "sidecar",
    ipAddresses: ["127.0.0.1"],
  });
  const upstream = await startPacedUpstream(cert, 280_000);
  try {
    const url = `https://${upstream.address}${ALLOCATED}`;

    await t.step(
      "nghttp sees one DATA frame per 256-tuple message",
      async () => {
        const body = `${dir}/request.bin`;
        await Deno.writeFile(
          body,
          encodeEnvelope(0, request("p2560", 0, "token")),
        );
        const out = await new Deno.Command("nghttp", {
          args: [
            "-v",
            "-d",
            body,
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            url,
          ],
          env: { SSL_CERT_FILE: ca.certPath },
          stdout: "piped",
          stderr: "piped",
        }).output();
        const text = new TextDecoder("latin1").decode(out.stdout);
        match(text, /grpc-status: 0/);
        const frames = [...text.matchAll(/recv DATA frame <length=(\d+)/g)]
          .map((m) => Number(m[1])).filter((n) => n > 0);
        equal(frames.length, 10, `DATA frames: ${frames.join(", ")}`);
      },
    );

    await t.step("tuples: N blocks in order, at max_results", async () => {
      const session = http2.connect(`https://${upstream.address}`, {
        ca: ca.certPem,
      });
      session.on("error", () => {});
      try {
        const offsets: number[] = [];
        const perMessage: number[] = [];
        for await (
          const m of rawGrpcCall(
            session,
            ALLOCATED,
            request("p5000", 2048, "t"),
            {
              signal: new AbortController().signal,
            },
          )
        ) {
          const s = scanMetadataMessage(m, (offset, size) => {
            equal(size, BLOCK);
            offsets.push(offset);
          });
          equal(s.blockMetadataType, FIXED_LENGTH);
          equal(s.volumeCapacityBytes, 5000 * BLOCK);
          perMessage.push(s.tuples);
        }
        deepStrictEqual(perMessage, [2048, 2048, 904]);
        deepStrictEqual(
          offsets,
          Array.from({ length: 5000 }, (_, i) => i * BLOCK),
        );
      } finally {
        session.close();
      }
    });

    await t.step("no security_token: Unauthenticated", async () => {
      const session = http2.connect(`https://${upstream.address}`, {
        ca: ca.certPem,
      });
      session.on("error", () => {});
      try {
        let failure: Error | undefined;
        try {
          for await (
            const _ of rawGrpcCall(session, ALLOCATED, request("p10", 0, ""), {
              signal: new AbortController().signal,
            })
          ) { /* none expected */ }
        } catch (e) {
          failure = e as Error;
        }
        match(String(failure), /no security_token/);
        equal((failure as { code?: number }).code, 16);
      } finally {
        session.close();
      }
    });
  } finally {
    await upstream.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
