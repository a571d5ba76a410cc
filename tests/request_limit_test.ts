/**
 * The frame relay's fetch front refuses a request larger than its limit
 * (64 KiB by default) as soon as the body passes it: ResourceExhausted in
 * the protocol's end frame, and the rest of the body never read. (It once
 * read the whole body first, so a client could make it buffer any amount.)
 */
import { equal, ok } from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { endStreamFromJson } from "@connectrpc/connect/protocol-connect";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import { trailerParse } from "@connectrpc/connect/protocol-grpc-web";
import { NoAuth } from "../src/auth/authenticator.ts";
import { Gateway } from "../src/gateway/gateway.ts";
import { createFetchHandler } from "../src/server/fetch-handler.ts";
import { EnvelopeSplitter } from "./support/envelope-splitter.ts";
import { ALLOCATED_PATH } from "./support/grpc-request.ts";
import { demoBackend } from "./support/memory-backend.ts";
import { waitFor } from "./support/wait.ts";

const LIMIT = 64 * 1024;
const CHUNK = 8 * 1024;
const BODY = 4 * 1024 * 1024;

/** A 4 MiB body in 8 KiB chunks that counts how much of it was pulled. */
function countingBody() {
  const seen = { pulled: 0, cancelled: false };
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (seen.pulled >= BODY) return controller.close();
      const chunk = new Uint8Array(CHUNK);
      if (seen.pulled === 0) {
        // An envelope header announcing one message of the whole body.
        new DataView(chunk.buffer).setUint32(1, BODY - 5);
      }
      seen.pulled += CHUNK;
      controller.enqueue(chunk);
    },
    cancel() {
      seen.cancelled = true;
    },
  }, { highWaterMark: 0 });
  return { stream, seen };
}

for (
  const [protocol, contentType] of [
    ["Connect", "application/connect+proto"],
    ["gRPC-Web", "application/grpc-web+proto"],
  ] as const
) {
  Deno.test(`${protocol}: a streamed request over the limit is ResourceExhausted, read no further`, async () => {
    const handler = createFetchHandler(
      new Gateway(demoBackend(), new NoAuth()),
    );
    const { stream, seen } = countingBody();
    const response = await handler(
      new Request(`http://gateway.test${ALLOCATED_PATH}`, {
        method: "POST",
        headers: { "content-type": contentType },
        body: stream,
      }),
    );
    equal(response.status, 200, "errors travel in the end frame");
    const frames: { flags: number; data: Uint8Array }[] = [];
    new EnvelopeSplitter().push(
      new Uint8Array(await response.arrayBuffer()),
      frames,
    );
    equal(frames.length, 1, "only the end frame");
    const error = protocol === "Connect"
      ? endStreamFromJson(frames[0].data).error
      : findTrailerError(trailerParse(frames[0].data));
    equal(error?.code, Code.ResourceExhausted, `${error?.message}`);
    ok(
      seen.pulled <= LIMIT + 5 + CHUNK,
      `read ${seen.pulled} bytes of a ${BODY}-byte body`,
    );
    // Cancelled on the next turn, once the answer is set (request-body.ts
    // says why); still before another byte is pulled.
    await waitFor("the rest of the body to be cancelled", () => seen.cancelled);
    ok(
      seen.pulled <= LIMIT + 5 + CHUNK,
      `read ${seen.pulled} bytes before the cancel`,
    );
  });
}

Deno.test("a request just under the limit is read whole (and refused as a message, not for size)", async () => {
  const handler = createFetchHandler(new Gateway(demoBackend(), new NoAuth()));
  const body = new Uint8Array(LIMIT + 5);
  new DataView(body.buffer).setUint32(1, LIMIT);
  const response = await handler(
    new Request(`http://gateway.test${ALLOCATED_PATH}`, {
      method: "POST",
      headers: { "content-type": "application/connect+proto" },
      body,
    }),
  );
  const frames: { flags: number; data: Uint8Array }[] = [];
  new EnvelopeSplitter().push(
    new Uint8Array(await response.arrayBuffer()),
    frames,
  );
  const error = endStreamFromJson(frames.at(-1)!.data).error;
  ok(error !== undefined, "64 KiB of zeros is no valid request");
  ok(error.code !== Code.ResourceExhausted, `${error.code}: ${error.message}`);
});
