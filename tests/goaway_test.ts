/**
 * HTTP/2 GOAWAY on busy connections, both ways, must not crash the gateway.
 * Under Deno 2.9.6 a node:http2 session that has completed a few dozen
 * streams aborts the process when it receives a GOAWAY (denoland/deno#36788;
 * see src/adapter/node-http2/goaway-shield.ts). The peers here run under Node.js, whose
 * node:http2 doesn't have that bug: a client making 100+ calls per
 * connection and closing each one (GOAWAY), and an upstream proxy that
 * retires every connection with a GOAWAY after 40 streams, as a grpc-go
 * sidecar does on MaxConnectionAge or GracefulStop.
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { DEMO } from "../src/store/demo-seed.ts";
import { decodeMetadataMessage } from "../src/wire/metadata-message.ts";
import { ROOT } from "./support/run.ts";

interface Gateway {
  grpcUrl: string;
  /** Settles when the process exits; `undefined` while it runs. */
  exited(): Deno.CommandStatus | undefined;
  stop(): Promise<void>;
}

/** `src/main.ts` as `deno task start` runs it, on ephemeral ports. */
async function startGateway(args: string[]): Promise<Gateway> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--unstable-no-legacy-abort",
      "--allow-all",
      `${ROOT}/src/main.ts`,
      "--port",
      "0",
      "--grpc-port",
      "0",
      ...args,
    ],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  let status: Deno.CommandStatus | undefined;
  const done = child.status.then((s) => status = s);
  const stderr = new Response(child.stderr).text();
  const grpcUrl = await firstMatch(
    child.stdout,
    /native gRPC \(HTTP\/2\):\s+(\S+)/,
  ).catch(async (e) => {
    throw new Error(`${e.message}\n${await stderr}`);
  });
  return {
    grpcUrl,
    exited: () => status,
    stop: async () => {
      if (!status) child.kill("SIGTERM");
      await done;
      await stderr;
    },
  };
}

/** Reads `stream` until `re` matches; keeps draining it afterwards. */
async function firstMatch(
  stream: ReadableStream<Uint8Array>,
  re: RegExp,
): Promise<string> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`exited before printing ${re}:\n${text}`);
    text += value;
    const m = re.exec(text);
    if (m) {
      (async () => {
        while (!(await reader.read()).done) { /* discard */ }
      })().catch(() => {});
      return m[1];
    }
  }
}

/** The Node.js upstream proxy that sends GOAWAY after `limit` streams. */
async function startGoawayProxy(upstreamUrl: string, limit: number) {
  const child = new Deno.Command("node", {
    args: [
      `${ROOT}/tests/support/goaway-proxy.mjs`,
      upstreamUrl,
      String(limit),
    ],
    stdout: "piped",
    stderr: "null",
    stdin: "null",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  let port: string | undefined;
  while (!port) {
    const { value, done } = await lines.read();
    if (done) throw new Error(`goaway proxy exited:\n${text}`);
    text += value;
    port = /PORT (\d+)/.exec(text)?.[1];
  }
  const drained = (async () => {
    for (;;) {
      const { value, done } = await lines.read();
      if (done) return;
      text += value;
    }
  })();
  return {
    url: `http://127.0.0.1:${port}`,
    goaways: () => text.match(/^GOAWAY/gm)?.length ?? 0,
    stop: async () => {
      child.kill("SIGTERM");
      await child.status;
      await drained;
    },
  };
}

interface ClientResult {
  ok: number;
  /** Calls answered Unavailable and retried. */
  retried: number;
  failures: string[];
  bodies: string[];
}

/** `sessions` connections of `calls` calls each, every one closed with GOAWAY. */
async function nodeClient(
  url: string,
  calls: number,
  sessions: number,
): Promise<ClientResult> {
  const out = await new Deno.Command("node", {
    args: [
      `${ROOT}/tests/support/goaway-client.mjs`,
      url,
      String(calls),
      String(sessions),
    ],
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  if (!text) {
    return {
      ok: 0,
      retried: 0,
      failures: [new TextDecoder().decode(out.stderr)],
      bodies: [],
    };
  }
  return JSON.parse(text);
}

/** Block indices in a gRPC response body (envelopes of metadata messages). */
function blocksOf(body: Uint8Array): number[] {
  const blocks: number[] = [];
  for (let at = 0; at < body.length;) {
    const len = new DataView(body.buffer, body.byteOffset + at + 1, 4)
      .getUint32(0);
    const msg = decodeMetadataMessage(body.subarray(at + 5, at + 5 + len));
    for (const offset of msg.offsets) {
      blocks.push(offset / DEMO.blockSizeBytes);
    }
    at += 5 + len;
  }
  return blocks;
}

const SNAP2 = DEMO.snapshots.find((s) => s.name === "snap-2")!;

/** Every call answered the demo's snap-2, and the gateway still runs. */
function checkServed(gw: Gateway, r: ClientResult, calls: number): void {
  equal(gw.exited(), undefined, "the gateway process exited");
  deepStrictEqual(r.failures, []);
  equal(r.ok, calls);
  equal(r.bodies.length, 1, "every call got the same answer");
  const body = Uint8Array.from(atob(r.bodies[0]), (c) => c.charCodeAt(0));
  deepStrictEqual(blocksOf(body), [...SNAP2.allocatedBlocks]);
}

/** Lets an exit that follows the last GOAWAY show before checking. */
async function settle(gw: Gateway): Promise<void> {
  const check = await nodeClient(gw.grpcUrl, 1, 1);
  checkServed(gw, check, 1);
}

Deno.test("goaway: busy HTTP/2 connections closed with GOAWAY don't crash the gateway", async (t) => {
  const dataDir = await Deno.makeTempDir({ prefix: "cbt-goaway-" });
  const stops: (() => Promise<void>)[] = [];
  try {
    const store = await startGateway(["--data-dir", dataDir]);
    stops.push(store.stop);
    const relay = await startGateway([
      "--backend",
      "grpc",
      "--upstream-url",
      store.grpcUrl,
    ]);
    stops.push(relay.stop);

    for (
      const [label, gw] of [["embedded", store], ["relay", relay]] as const
    ) {
      await t.step(`${label}: clients close after 100 calls each`, async () => {
        const r = await nodeClient(gw.grpcUrl, 100, 5);
        checkServed(gw, r, 500);
        equal(r.retried, 0);
        await settle(gw);
      });
    }

    await t.step(
      "relay: the upstream retires connections with GOAWAY",
      async () => {
        const proxy = await startGoawayProxy(store.grpcUrl, 40);
        stops.push(proxy.stop);
        const viaProxy = await startGateway([
          "--backend",
          "grpc",
          "--upstream-url",
          proxy.url,
        ]);
        stops.push(viaProxy.stop);
        const r = await nodeClient(viaProxy.grpcUrl, 150, 2);
        checkServed(viaProxy, r, 300);
        // Calls that raced a GOAWAY were refused unanswered and resent by
        // the relay itself: no client saw them fail.
        equal(r.retried, 0, "the relay resends refused calls itself");
        await settle(viaProxy);
        ok(proxy.goaways() >= 7, `only ${proxy.goaways()} GOAWAYs were sent`);
        checkServed(store, await nodeClient(store.grpcUrl, 1, 1), 1);
      },
    );
  } finally {
    for (const stop of stops.reverse()) await stop();
    await Deno.remove(dataDir, { recursive: true });
  }
});
