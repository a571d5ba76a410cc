/**
 * Stability of the native-gRPC port (node:http2 under Deno):
 *
 * 1. Thousands of messages to a slow consumer, over the pass-through (gRPC)
 *    and connect-node's adapter (Connect, gRPC-Web): the listeners on every
 *    server stream stay bounded however often a write waits for 'drain', and
 *    no MaxListenersExceededWarning is emitted.
 * 2. Shutdown with many streams in flight while clients cancel, stall and
 *    keep opening streams: the gateway closes within bounds and the process
 *    exits cleanly (no nghttp2 assertion abort), every client stream ends,
 *    and none ends with status OK unless it got every message. Each round
 *    runs in a subprocess (this file, GRPC_STABILITY_CHILD=1) so an abort
 *    shows up as an exit status instead of killing the test runner.
 */
import * as http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import process from "node:process";
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import type {
  AllocatedQuery,
  Backend,
  CallOptions,
} from "../src/backend/backend.ts";
import {
  encodeMetadataMessage,
  FIXED_LENGTH,
  scanMetadataMessage,
} from "../src/wire/metadata-message.ts";
import {
  type Envelope,
  EnvelopeSplitter,
} from "./support/envelope-splitter.ts";
import { startGateway } from "../src/server/start.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const ALLOCATED = "/snapshotmetadata.SnapshotMetadata/GetMetadataAllocated";
const BLOCK = 4096;

/**
 * Snapshot `n<count>` streams `count` messages of `max_results` tuples, block
 * after block. Like the file store, it throws Canceled once its signal
 * aborts.
 */
class CountingBackend implements Backend {
  readonly name = "counting";
  async *getMetadataAllocated(q: AllocatedQuery, o: CallOptions) {
    const count = Number(/^n(\d+)$/.exec(q.snapshotName)?.[1] ?? 0);
    const per = q.maxResults;
    for (let m = 0; m < count; m++) {
      if (o.signal.aborted) {
        throw new ConnectError("call aborted", Code.Canceled);
      }
      const offsets = Array.from(
        { length: per },
        (_, i) => (m * per + i) * BLOCK,
      );
      yield encodeMetadataMessage({
        blockMetadataType: FIXED_LENGTH,
        volumeCapacityBytes: 2 ** 50,
        offsets,
        sizes: offsets.map(() => BLOCK),
      });
      // Let other streams and the network run, as a real upstream would.
      if (m % 16 === 15) await new Promise((r) => setTimeout(r, 0));
    }
  }
  getMetadataDelta(): never {
    throw new Error("not used");
  }
  getSnapshot(): never {
    throw new Error("not used");
  }
  listSnapshots(): never {
    throw new Error("not used");
  }
  close() {
    return Promise.resolve();
  }
}

type Protocol = "grpc" | "connect" | "grpc-web";

const CONTENT_TYPE: Record<Protocol, string> = {
  "grpc": "application/grpc+proto",
  "connect": "application/connect+proto",
  "grpc-web": "application/grpc-web+proto",
};

/** GetMetadataAllocatedRequest{namespace "ns", snapshot_name, max_results}, enveloped. */
function requestFrame(snapshot: string, maxResults: number): Uint8Array {
  const name = new TextEncoder().encode(snapshot);
  const varint = maxResults < 0x80
    ? [maxResults]
    : [(maxResults & 0x7f) | 0x80, maxResults >> 7];
  const body = [
    0x12,
    2,
    0x6e,
    0x73,
    0x1a,
    name.length,
    ...name,
    0x28,
    ...varint,
  ];
  return new Uint8Array([0, 0, 0, 0, body.length, ...body]);
}

interface Outcome {
  protocol: Protocol;
  expected: number;
  messages: number;
  /** Every message carried the next `perMessage` blocks. */
  inOrder: boolean;
  /**
   * "ok", a gRPC/Connect error code, "rst:<code>" (reset), or "none" (ended
   * with neither, e.g. torn down with its connection).
   */
  status: string;
}

interface StreamControl {
  /** Called with the count so far after each message; may pause the stream. */
  onMessage?(n: number, req: http2.ClientHttp2Stream): void;
  /** Called after each chunk read off the stream; may pause it. */
  onChunk?(req: http2.ClientHttp2Stream): void;
}

/** One server stream over raw HTTP/2, read envelope by envelope. */
function callStream(
  session: http2.ClientHttp2Session,
  protocol: Protocol,
  expected: number,
  control: StreamControl = {},
  perMessage = 64,
): { req: http2.ClientHttp2Stream; done: Promise<Outcome> } {
  const req = session.request({
    ":method": "POST",
    ":path": ALLOCATED,
    "content-type": CONTENT_TYPE[protocol],
    ...(protocol === "grpc" ? { te: "trailers" } : {}),
    ...(protocol === "connect" ? { "connect-protocol-version": "1" } : {}),
  });
  const out: Outcome = {
    protocol,
    expected,
    messages: 0,
    inOrder: true,
    status: "none",
  };
  const splitter = new EnvelopeSplitter();
  const envelopes: Envelope[] = [];
  const dec = new TextDecoder();
  req.on("response", (h) => {
    // Trailers-Only (gRPC): the status rides in the headers.
    if (h["grpc-status"] !== undefined) out.status = grpcStatus(h);
  });
  req.on("trailers", (h) => {
    if (h["grpc-status"] !== undefined) out.status = grpcStatus(h);
  });
  req.on("data", (chunk: Uint8Array) => {
    try {
      splitter.push(chunk, envelopes);
    } catch {
      out.inOrder = false;
    }
    for (const e of envelopes) {
      if (e.flags === 0) {
        let tuple = 0;
        scanMetadataMessage(e.data, (offset) => {
          const want = (out.messages * perMessage + tuple++) * BLOCK;
          if (offset !== want) out.inOrder = false;
        });
        if (tuple !== perMessage) out.inOrder = false;
        out.messages++;
        control.onMessage?.(out.messages, req);
      } else if (protocol === "connect") {
        const end = JSON.parse(dec.decode(e.data));
        out.status = end.error ? String(end.error.code) : "ok";
      } else {
        // gRPC-Web trailers: "grpc-status: N\r\n…"
        const m = /grpc-status:\s*(\d+)/i.exec(dec.decode(e.data));
        out.status = m ? (m[1] === "0" ? "ok" : m[1]) : "none";
      }
    }
    envelopes.length = 0;
    control.onChunk?.(req);
  });
  req.on("error", () => {});
  // The status only counts once every byte before it was read: 'trailers'
  // can fire while a paused stream still holds unread messages, and the
  // test tears sessions down without reading those.
  let readToEnd = false;
  req.on("end", () => readToEnd = true);
  const done = new Promise<Outcome>((resolve) =>
    req.on("close", () => {
      if (req.rstCode !== undefined && req.rstCode !== 0) {
        if (out.status === "none") out.status = `rst:${req.rstCode}`;
      }
      if (!readToEnd && out.status === "ok") out.status = "unread";
      resolve(out);
    })
  );
  req.end(requestFrame(`n${expected}`, perMessage));
  return { req, done };
}

function grpcStatus(h: http2.IncomingHttpHeaders): string {
  const s = String(h["grpc-status"]);
  return s === "0" ? "ok" : s;
}

/** Wraps Http2ServerResponse#write to watch each server stream's listeners. */
function watchServerWrites() {
  const proto = http2.Http2ServerResponse.prototype;
  const write = proto.write;
  const events = ["close", "drain", "error", "finish", "end"] as const;
  const max: Record<string, number> = {};
  for (const e of events) max[`stream:${e}`] = max[`response:${e}`] = 0;
  let writes = 0, full = 0;
  proto.write = function (this: http2.Http2ServerResponse, ...args: unknown[]) {
    const accepted = (write as (...a: unknown[]) => boolean).apply(this, args);
    writes++;
    if (!accepted) full++;
    for (const e of events) {
      const onStream = this.stream.listenerCount(e);
      const onResponse = this.listenerCount(e);
      if (onStream > max[`stream:${e}`]) max[`stream:${e}`] = onStream;
      if (onResponse > max[`response:${e}`]) max[`response:${e}`] = onResponse;
    }
    return accepted;
  } as typeof proto.write;
  return {
    max,
    counts: () => ({ writes, full }),
    restore: () => void (proto.write = write),
  };
}

Deno.test("a slow consumer on the gRPC port: server stream listeners stay bounded, no MaxListenersExceededWarning", async () => {
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
  process.on("warning", onWarning);
  const watch = watchServerWrites();
  const gw = await startGateway(
    { host: "127.0.0.1", port: 0, grpcPort: 0, corsOrigins: [] },
    { backend: new CountingBackend() },
  );
  const session = http2.connect(gw.grpcUrl);
  session.on("error", () => {});
  try {
    const messages = 4000;
    // A consumer that takes a break after every chunk it reads: the
    // server's writes back up and wait for 'drain' again and again.
    const slow: StreamControl = {
      onChunk(req) {
        req.pause();
        setTimeout(() => req.resume(), 1);
      },
    };
    const outcomes = await Promise.all(
      (["grpc", "connect", "grpc-web"] as const).map((p) =>
        callStream(session, p, messages, slow, 256).done
      ),
    );
    for (const o of outcomes) {
      deepStrictEqual(
        { ...o },
        { ...o, messages, inOrder: true, status: "ok" },
        `${o.protocol} stream`,
      );
    }
    const { writes, full } = watch.counts();
    console.log(
      `${writes} server writes, ${full} waited for 'drain'; max listeners ${
        JSON.stringify(watch.max)
      }`,
    );
    ok(
      full >= 100,
      `only ${full} writes had to wait: the consumer wasn't slow enough to test this`,
    );
    // A handful per stream from node:http2's compat layer and its users,
    // whatever the length of the stream; one leaked per wait would be 100s.
    for (const [event, n] of Object.entries(watch.max)) {
      ok(n <= 6, `${n} '${event}' listeners on one server stream`);
    }
    deepStrictEqual(
      warnings.filter((w) => w.startsWith("MaxListenersExceededWarning")),
      [],
    );
  } finally {
    watch.restore();
    process.off("warning", onWarning);
    session.close();
    await gw.close();
  }
});

/** What one shutdown round reports on its stdout (last line, JSON). */
interface RoundReport {
  opened: number;
  inFlightAtClose: number;
  closeMs: number;
  /** Client streams still open well after close() resolved. */
  openAfterClose: number;
  statuses: Record<string, number>;
  /** Streams that said OK without every message in order (must be none). */
  falseOk: Outcome[];
  /** Streams with messages out of order or malformed (must be none). */
  garbled: number;
}

const ROUNDS = 5;

Deno.test("shutdown with streams in flight: bounded, clean exit, every stream ends, no false OK", async () => {
  const totals: Record<string, number> = {};
  let inFlight = 0, maxClose = 0, opened = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", "tests/grpc_server_stability_test.ts"],
      cwd: ROOT,
      env: {
        NO_COLOR: "1",
        GRPC_STABILITY_CHILD: "1",
        ROUND: String(round),
      },
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    }).spawn();
    const killer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    const { code, signal, stdout, stderr } = await child.output();
    clearTimeout(killer);
    const err = new TextDecoder().decode(stderr);
    const lines = new TextDecoder().decode(stdout).trim().split("\n");
    const crash = /Assertion|panicked|Segmentation fault|nghttp2/.exec(err);
    ok(
      code === 0 && signal === null && !crash,
      `round ${round}: exit ${code} signal ${signal}\n${lines.join("\n")}\n${
        err.slice(-3000)
      }`,
    );
    const report: RoundReport = JSON.parse(lines.at(-1)!);
    deepStrictEqual(report.falseOk, [], `round ${round}: OK on a cut stream`);
    equal(report.garbled, 0, `round ${round}: garbled streams`);
    equal(report.openAfterClose, 0, `round ${round}: client streams left open`);
    ok(
      report.inFlightAtClose >= 24,
      `round ${round}: only ${report.inFlightAtClose} streams in flight`,
    );
    // Streams 2 s, resets 0.5 s, sessions 1 s: the bounds, plus slack.
    ok(
      report.closeMs < 5000,
      `round ${round}: close took ${report.closeMs} ms`,
    );
    for (const [s, n] of Object.entries(report.statuses)) {
      totals[s] = (totals[s] ?? 0) + n;
    }
    inFlight += report.inFlightAtClose;
    opened += report.opened;
    maxClose = Math.max(maxClose, report.closeMs);
  }
  console.log(
    `${ROUNDS} rounds: ${opened} streams opened, ${inFlight} in flight at ` +
      `close; slowest close ${maxClose} ms; outcomes ${JSON.stringify(totals)}`,
  );
  // Running pass-through calls end with Unavailable, not a bare reset.
  ok((totals["14"] ?? 0) > 0, "no stream ended with Unavailable on shutdown");
});

/**
 * One shutdown round (the subprocess): a gateway and its clients in one
 * process, 4 connections × 12 streams kept busy (cancelling, slow, stalled,
 * plain; gRPC, Connect, gRPC-Web), then close() while they run and while
 * clients keep opening streams.
 */
async function shutdownRound(round: number): Promise<void> {
  const hang = setTimeout(() => {
    console.log("HANG");
    Deno.exit(3);
  }, 20_000);
  const gw = await startGateway(
    { host: "127.0.0.1", port: 0, grpcPort: 0, corsOrigins: [] },
    { backend: new CountingBackend() },
  );
  const protocols: Protocol[] = ["grpc", "connect", "grpc-web"];
  const open = new Set<http2.ClientHttp2Stream>();
  const outcomes: Outcome[] = [];
  const pending: Promise<unknown>[] = [];
  let opened = 0, refill = true;
  const sessions = Array.from({ length: 4 }, () => {
    const s = http2.connect(gw.grpcUrl);
    s.on("error", () => {});
    return s;
  });
  const start = (s: http2.ClientHttp2Session, i: number) => {
    if (!refill || s.closed || s.destroyed) return;
    const kind = i % 4; // 0 cancels, 1 slow, 2 stalls (rarely), 3 plain
    const control: StreamControl = {
      onMessage(n, req) {
        if (kind === 0 && n === 3) req.close(http2.constants.NGHTTP2_CANCEL);
        if (kind === 1 && n % 4 === 0) {
          req.pause();
          setTimeout(() => req.resume(), 2);
        }
        if (kind === 2 && i % 16 === 2 && n === 1) req.pause(); // for good
      },
    };
    let call;
    try {
      call = callStream(
        s,
        protocols[i % 3],
        20 + (i * 37 + round * 11) % 400,
        control,
      );
    } catch {
      return; // the session has had its GOAWAY
    }
    opened++;
    open.add(call.req);
    pending.push(call.done.then((o) => {
      open.delete(call.req);
      outcomes.push(o);
      setTimeout(() => start(s, i + 48), 0);
    }));
  };
  sessions.forEach((s, k) => {
    for (let i = 0; i < 12; i++) start(s, k * 12 + i);
  });
  await new Promise((r) => setTimeout(r, 400 + 150 * round));
  const inFlightAtClose = open.size;
  const t0 = performance.now();
  await gw.close();
  const closeMs = Math.round(performance.now() - t0);
  refill = false;
  // Every client stream must have ended by now, give or take the last frames.
  for (let i = 0; i < 100 && open.size > 0; i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  const openAfterClose = open.size;
  for (const s of sessions) s.destroy();
  await Promise.all(pending);
  clearTimeout(hang);
  const statuses: Record<string, number> = {};
  for (const o of outcomes) statuses[o.status] = (statuses[o.status] ?? 0) + 1;
  const report: RoundReport = {
    opened,
    inFlightAtClose,
    closeMs,
    openAfterClose,
    statuses,
    falseOk: outcomes.filter((o) =>
      o.status === "ok" && (o.messages !== o.expected || !o.inOrder)
    ),
    garbled: outcomes.filter((o) => !o.inOrder).length,
  };
  console.log(JSON.stringify(report));
}

if (Deno.env.get("GRPC_STABILITY_CHILD") === "1") {
  await shutdownRound(Number(Deno.env.get("ROUND") ?? 0));
  Deno.exit(0);
}
