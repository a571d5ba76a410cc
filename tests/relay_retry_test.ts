/**
 * A call the upstream refused unanswered (REFUSED_STREAM, e.g. racing its
 * GOAWAY) never ran there, so the relay sends it once more; anything else is
 * not retried.
 */
import { deepStrictEqual, equal, ok, rejects } from "node:assert/strict";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  rawGrpcRuns,
  retryIfRefused,
  wasRefused,
} from "../src/adapter/node-http2/grpc-call.ts";

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** A call that fails before its first message. */
async function* failing(
  error: unknown,
  onOpen: () => void,
): AsyncGenerator<string> {
  onOpen();
  yield* [];
  throw error;
}

Deno.test("retryIfRefused resends only calls refused before any answer", async () => {
  const refused = await (async () => {
    // A real refusal, as rawGrpcRuns reports it: a server that refuses the stream.
    const server = http2.createServer();
    server.on("stream", (s) => {
      s.on("error", () => {}); // the refusal is reported on this side too
      s.close(http2.constants.NGHTTP2_REFUSED_STREAM);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const session = http2.connect(
      `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    );
    try {
      await collect(
        rawGrpcRuns(session, "/x/Y", new Uint8Array(), {
          signal: new AbortController().signal,
        }),
      );
    } catch (e) {
      return e;
    } finally {
      session.close();
      await new Promise((r) => server.close(r));
    }
  })();
  ok(wasRefused(refused), `a REFUSED_STREAM reset is recognised: ${refused}`);
  equal((refused as ConnectError).code, Code.Unavailable);

  let opened = 0;
  const flaky = () =>
    (async function* () {
      if (opened++ === 0) throw refused;
      yield "a";
      yield "b";
    })();
  deepStrictEqual(await collect(retryIfRefused(flaky)), ["a", "b"]);
  equal(opened, 2, "sent twice");

  let tries = 0;
  const broken = () =>
    failing(
      new ConnectError("upstream said no", Code.PermissionDenied),
      () => tries++,
    );
  await rejects(collect(retryIfRefused(broken)), /upstream said no/);
  equal(tries, 1, "other errors are not retried");

  let calls = 0;
  const refusedTwice = () => failing(refused, () => calls++);
  await rejects(collect(retryIfRefused(refusedTwice)), (e) => wasRefused(e));
  equal(calls, 2, "resent once, not forever");
});
