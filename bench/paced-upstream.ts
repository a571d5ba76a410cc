/**
 * `deno run -A bench/paced-upstream.ts --cert <pem> --key <pem> [--rate N]`:
 * a stand-in for the real `csi-snapshot-metadata` sidecar at driver speed,
 * as its own process. Native gRPC over TLS (ALPN h2), GetMetadataAllocated
 * only; the snapshot name `p<N>` asks for N FIXED_LENGTH 4 KiB tuples.
 *
 * Like the real sidecar it sends one message at a time, paced: message i is
 * due at `start + i × tuplesPerMessage / rate` (default 280k tuples/s); the
 * server sleeps on a timer while whole milliseconds fit, blocks for the rest,
 * writes the message and waits until node:http2 has handed it to the socket,
 * so every message leaves alone in its own HTTP/2 DATA write, about 1 ms
 * apart at 256 tuples (the bulk bench's upstream sends as fast as it can and
 * hides the per-message cost). The process serves one stream at a time well;
 * that is all the bench asks of it. `max_results` 0 means 256 tuples per message, the
 * sidecar's default. A request without a security_token is refused, as the
 * sidecar would (it does not run TokenReview: that cost is the same on every
 * path and is not the middle process's).
 *
 * Prints `paced upstream: 127.0.0.1:<port>` once it listens.
 */
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import * as tls from "node:tls";
import { parseArgs } from "node:util";
import { fromBinary } from "@bufbuild/protobuf";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { GetMetadataAllocatedRequestSchema } from "../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import {
  encodeMetadataMessage,
  FIXED_LENGTH,
} from "../src/wire/metadata-message.ts";
import { shieldGoaway } from "../src/adapter/node-http2/goaway-shield.ts";

const BLOCK = 4096;
const ALLOCATED = "/snapshotmetadata.SnapshotMetadata/GetMetadataAllocated";
const SIDECAR_DEFAULT_MAX_RESULTS = 256;

const { values } = parseArgs({
  args: Deno.args,
  options: {
    cert: { type: "string" },
    key: { type: "string" },
    rate: { type: "string", default: "280000" },
  },
});
if (!values.cert || !values.key) {
  console.error("usage: paced-upstream.ts --cert <pem> --key <pem> [--rate N]");
  Deno.exit(2);
}
const rate = Number(values.rate);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/**
 * Blocks the thread for a sub-millisecond rest (Atomics.wait on a value
 * nobody changes: a futex timeout, no spinning). Timers alone have
 * millisecond granularity and fire late on a busy machine, which sent
 * messages in bursts.
 */
const blocker = new Int32Array(new SharedArrayBuffer(4));

function message(first: number, count: number, capacity: number): Uint8Array {
  const offsets = new Array<number>(count), sizes = new Array<number>(count);
  for (let i = 0; i < count; i++) {
    offsets[i] = (first + i) * BLOCK;
    sizes[i] = BLOCK;
  }
  return encodeEnvelope(
    0,
    encodeMetadataMessage({
      blockMetadataType: FIXED_LENGTH,
      volumeCapacityBytes: capacity,
      offsets,
      sizes,
    }),
  );
}

async function serve(
  stream: http2.ServerHttp2Stream,
  request: Uint8Array,
): Promise<void> {
  const fail = (status: number, text: string) => {
    stream.respond({
      ":status": 200,
      "content-type": "application/grpc+proto",
      "grpc-status": String(status),
      "grpc-message": encodeURIComponent(text),
    }, { endStream: true });
  };
  let req;
  try {
    req = fromBinary(GetMetadataAllocatedRequestSchema, request.subarray(5));
  } catch {
    return fail(3, "bad request message");
  }
  const m = /^p(\d+)$/.exec(req.snapshotName);
  if (!m) return fail(5, `snapshot ${req.snapshotName} not found`);
  if (req.securityToken === "") return fail(16, "no security_token");
  const total = Number(m[1]);
  const per = req.maxResults || SIDECAR_DEFAULT_MAX_RESULTS;
  const interval = per / rate * 1000; // ms per message
  stream.respond(
    { ":status": 200, "content-type": "application/grpc+proto" },
    { waitForTrailers: true },
  );
  stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
  const start = performance.now();
  for (let i = 0, done = 0; done < total && !stream.closed; i++) {
    const due = start + i * interval;
    const wait = due - performance.now();
    if (wait >= 2) await sleep(Math.floor(wait) - 1);
    const rest = due - performance.now();
    if (rest > 0) Atomics.wait(blocker, 0, 0, rest);
    if (stream.closed) break;
    const n = Math.min(per, total - done);
    // On to the next only once this one has left (or the stream is gone).
    const sent = Promise.withResolvers<void>();
    const left = () => sent.resolve();
    stream.once("close", left);
    const ok = stream.write(message(done, n, total * BLOCK), left);
    await sent.promise;
    stream.off("close", left);
    if (!ok) {
      await new Promise<void>((resolve) => {
        const go = () => {
          stream.off("drain", go).off("close", go);
          resolve();
        };
        stream.on("drain", go).on("close", go);
      });
    }
    done += n;
  }
  if (!stream.closed) stream.end();
}

// Deno's node:http2 server aborts (nghttp2 assertion, denoland/deno#36788)
// when a client's GOAWAY reaches a session that has finished streams, as
// every client closing its connection after a stream sends: the same
// GOAWAY shield as the gateway's gRPC front keeps it alive.
const server = http2.createServer();
const listener = tls.createServer({
  cert: await Deno.readTextFile(values.cert),
  key: await Deno.readTextFile(values.key),
  ALPNProtocols: ["h2"],
});
listener.on("secureConnection", (raw: Duplex) => {
  raw.on("error", () => {});
  server.emit(
    "connection",
    shieldGoaway(raw, { server: true, onGoaway: () => raw.end() }),
  );
});
server.on("stream", (stream, headers) => {
  stream.on("error", () => {});
  if (headers[":path"] !== ALLOCATED) {
    stream.respond({ ":status": 200, "grpc-status": "12" }, {
      endStream: true,
    });
    return;
  }
  const chunks: Uint8Array<ArrayBuffer>[] = [];
  stream.on("data", (c: Uint8Array<ArrayBuffer>) => chunks.push(c));
  stream.on("end", async () => {
    const body = new Uint8Array(await new Blob(chunks).arrayBuffer());
    await serve(stream, body).catch(() => stream.close());
  });
});
server.on("sessionError", () => {});
await new Promise<void>((r) => listener.listen(0, "127.0.0.1", r));
console.log(
  `paced upstream: 127.0.0.1:${(listener.address() as AddressInfo).port}`,
);
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
