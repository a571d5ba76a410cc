/**
 * A graceful shutdown of the HTTP port ends stalled streams instead of
 * waiting for them forever, and ends each with an explicit error the client
 * can see (never a clean end): an NDJSON `error` record, a Connect end frame
 * and gRPC-Web trailers saying `unavailable`.
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { demoBackend } from "./support/memory-backend.ts";
import { parseNdjson } from "./support/json-records.ts";
import {
  ALLOCATED_PATH,
  allocatedRequest,
  requestFrame,
} from "./support/grpc-request.ts";
import { startLoopbackGateway } from "./support/gateway.ts";

/** GetMetadataAllocatedRequest{namespace "demo", snapshot_name "snap-2", max_results 5}, enveloped. */
const REQUEST = requestFrame(
  allocatedRequest({
    namespace: "demo",
    snapshotName: "snap-2",
    maxResults: 5,
  }),
);

/** Reads a response body to its end, reporting each chunk. */
async function readAll(res: Response, onChunk: (bytesSoFar: number) => void) {
  const reader = res.body!.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    chunks.push(value);
    total += value.length;
    onChunk(total);
  }
  const out = new Uint8Array(total);
  let pos = 0;
  for (const c of chunks) {
    out.set(c, pos);
    pos += c.length;
  }
  return out;
}

/** Splits enveloped frames: [flags, payload][]. */
function frames(bytes: Uint8Array): [number, Uint8Array][] {
  const out: [number, Uint8Array][] = [];
  for (let pos = 0; pos < bytes.length;) {
    const len = new DataView(bytes.buffer, bytes.byteOffset + pos + 1, 4)
      .getUint32(0);
    out.push([bytes[pos], bytes.subarray(pos + 5, pos + 5 + len)]);
    pos += 5 + len;
  }
  return out;
}

Deno.test("closing the gateway ends stalled streams with an explicit unavailable", async () => {
  const backend = demoBackend();
  backend.armPause(1); // every stream sends one message, then stalls
  const gw = await startLoopbackGateway({ backend });
  let closing: Promise<void> | undefined;
  try {
    const started: Promise<void>[] = [];
    const open = (init: RequestInit & { path: string }) => {
      const first = Promise.withResolvers<void>();
      started.push(first.promise);
      return fetch(`${gw.httpUrl}${init.path}`, init).then((res) => {
        equal(res.status, 200);
        return readAll(res, () => first.resolve());
      });
    };
    const ndjson = open({
      path: "/v1/namespaces/demo/snapshots/snap-2/allocated?maxResults=5",
    });
    const connect = open({
      path: ALLOCATED_PATH,
      method: "POST",
      headers: {
        "content-type": "application/connect+proto",
        "connect-protocol-version": "1",
      },
      body: REQUEST,
    });
    const grpcWeb = open({
      path: ALLOCATED_PATH,
      method: "POST",
      headers: {
        "content-type": "application/grpc-web+proto",
        "x-grpc-web": "1",
      },
      body: REQUEST,
    });
    await Promise.all(started); // all three are streaming, then stalled

    let timer: ReturnType<typeof setTimeout> | undefined;
    const hung = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error("gw.close() hung on stalled streams")),
        10_000,
      );
    });
    await Promise.race([closing = gw.close(), hung]).finally(() =>
      clearTimeout(timer)
    );

    const records = parseNdjson(new TextDecoder().decode(await ndjson));
    deepStrictEqual(records.map((r) => r.type), ["header", "blocks", "error"]);
    equal(records[2].code, "unavailable");
    equal(
      records[2].nextOffset,
      records[1].nextOffset,
      "resume where the last block ended",
    );

    const c = frames(await connect);
    deepStrictEqual(
      c.map(([flags]) => flags),
      [0, 2],
      "one message, then the end frame",
    );
    equal(
      JSON.parse(new TextDecoder().decode(c[1][1])).error.code,
      "unavailable",
    );

    const w = frames(await grpcWeb);
    deepStrictEqual(
      w.map(([flags]) => flags),
      [0, 0x80],
      "one message, then trailers",
    );
    ok(
      /grpc-status: ?14/.test(new TextDecoder().decode(w[1][1])),
      "trailers say Unavailable",
    );
    equal(backend.streamsAborted, 3, "every backend call was cancelled");
  } finally {
    // A close that hung is not awaited again (the failure says so).
    if (!closing) await gw.close();
  }
});
