/**
 * Regression tests for the defect classes a black-box fuzz run found (issue
 * 13, item 5), each tried on every protocol that can carry it, with bytes
 * written by hand (raw HTTP/1.1 over TCP, raw HTTP/2 streams):
 *
 * - ListSnapshots with malformed protobuf: InvalidArgument, as the streaming
 *   RPCs answer (it was Internal);
 * - an unknown field whose length prefix is absurd (2^32, read as 0 by
 *   @bufbuild/protobuf): refused, not streamed;
 * - a body shorter than its Content-Length, then a half-close: a clean
 *   InvalidArgument (it was `unknown` / 500);
 * - a stalled body with a deadline: DeadlineExceeded when the deadline passes
 *   (there was no answer at all);
 * - a legal long deadline (Connect-Timeout-Ms ≥ 2^31, up to 10 digits;
 *   grpc-timeout in hours): the stream runs (it failed at once);
 * - a body dribbled a byte at a time: answered and closed after the body
 *   timeout (it was held forever);
 * - a malformed chunked body: hyper under Deno.serve drops the connection
 *   without a response (not reachable from the handler); behind the shipped
 *   nginx config, the client gets a 400 from nginx.
 */
import { equal, match, ok } from "node:assert/strict";
import * as http2 from "node:http2";
import { seedNodeDemoIfEmpty } from "../src/adapter/node-fs/file-store.ts";
import { protobufWireError } from "../src/wire/protobuf-check.ts";
import { readRequestBody } from "../src/front/request-body.ts";
import { BODY_TIMEOUT_MS } from "../src/front/request-body.ts";
import { startTestGateway, type TestGateway } from "./support/gateway.ts";
import {
  envelope,
  httpRequest,
  rawExchange,
  replyCode,
} from "./support/raw-http.ts";
import { grpcExchange } from "./support/raw-grpc.ts";
import { gatewayNginxConfig, startNginx } from "./support/nginx.ts";
import { startGatewayProcess } from "./support/gateway-process.ts";
import { openFds, settle } from "./support/process-stats.ts";

const LIST = "/cbtgateway.v1.GatewayService/ListSnapshots";
const ALLOCATED = "/snapshotmetadata.SnapshotMetadata/GetMetadataAllocated";
const enc = new TextEncoder();

/** A field (string) of a protobuf message. */
function stringField(no: number, value: string): number[] {
  const b = enc.encode(value);
  return [(no << 3) | 2, b.length, ...b];
}

/** GetMetadataAllocated for demo/snap-1, max_results 1, plus `extra` bytes. */
function allocatedRequest(extra: number[] = []): Uint8Array {
  return new Uint8Array([
    ...stringField(2, "demo"),
    ...stringField(3, "snap-1"),
    0x28,
    1,
    ...extra,
  ]);
}

/** Unknown field 15, length-delimited, length prefix 2^32 (5-byte varint). */
const ABSURD_LENGTH_FIELD = [0x7a, 0x80, 0x80, 0x80, 0x80, 0x10];
/** A truncated length-delimited field: length prefix with no end. */
const TRUNCATED = [0x0a, 0xff];

async function withGateway(
  body: (gw: TestGateway, port: number) => Promise<void>,
): Promise<void> {
  const dataDir = await Deno.makeTempDir({ prefix: "cbt-harden-" });
  await seedNodeDemoIfEmpty(dataDir);
  const gw = await startTestGateway({ dataDir });
  try {
    await body(gw, Number(new URL(gw.httpUrl).port));
  } finally {
    await gw.close();
    await Deno.remove(dataDir, { recursive: true });
  }
}

async function withGrpc<T>(
  gw: TestGateway,
  body: (s: http2.ClientHttp2Session) => Promise<T>,
): Promise<T> {
  const session = http2.connect(gw.grpcUrl);
  session.on("error", () => {});
  try {
    return await body(session);
  } finally {
    session.close();
  }
}

Deno.test("protobufWireError accepts well-formed messages and names malformed ones", () => {
  equal(protobufWireError(allocatedRequest()), undefined);
  equal(protobufWireError(new Uint8Array()), undefined);
  // unknown fields of every wire type, and a group, are fine
  equal(
    protobufWireError(
      new Uint8Array([
        0x78,
        1,
        0x79,
        ...new Array(8).fill(0),
        0x7d,
        0,
        0,
        0,
        0,
        0x7b,
        0x08,
        1,
        0x7c,
      ]),
    ),
    undefined,
  );
  match(protobufWireError(new Uint8Array(ABSURD_LENGTH_FIELD))!, /claims/);
  match(protobufWireError(new Uint8Array(TRUNCATED))!, /length prefix/);
  match(protobufWireError(new Uint8Array([0x08]))!, /truncated varint/);
  match(
    protobufWireError(new Uint8Array([0x08, ...new Array(11).fill(0xff)]))!,
    /longer than 10 bytes/,
  );
  match(protobufWireError(new Uint8Array([0x0e]))!, /wire type 6/);
  match(protobufWireError(new Uint8Array([0x00]))!, /field number 0/);
  match(protobufWireError(new Uint8Array([0x0b]))!, /unterminated group/);
  match(protobufWireError(new Uint8Array([0x0c]))!, /unmatched end group/);
  match(protobufWireError(new Uint8Array([0x0d, 0, 0]))!, /truncated fixed/);
});

Deno.test("readRequestBody: size, early end, deadline and stall each get their code", async () => {
  const stalled = () => new ReadableStream<Uint8Array>({ start() {} });
  const codeOf = (p: Promise<unknown>) =>
    p.then(() => "ok", (e) => e.code as number);
  // 8 ResourceExhausted, 3 InvalidArgument, 4 DeadlineExceeded
  equal(
    await codeOf(readRequestBody(
      new ReadableStream({
        start(c) {
          c.enqueue(new Uint8Array(10));
          c.close();
        },
      }),
      { maxBytes: 5 },
    )),
    8,
  );
  equal(
    await codeOf(readRequestBody(
      new ReadableStream({
        start(c) {
          c.enqueue(new Uint8Array(3));
          c.error(new TypeError("connection reset"));
        },
      }),
      { maxBytes: 100 },
    )),
    3,
  );
  const deadline = new AbortController();
  const pending = codeOf(
    readRequestBody(stalled(), { maxBytes: 100, signal: deadline.signal }),
  );
  deadline.abort();
  equal(await pending, 1); // Canceled: the signal's reason was no ConnectError
  equal(
    await codeOf(readRequestBody(stalled(), { maxBytes: 100, timeoutMs: 50 })),
    4,
  );
});

Deno.test("ListSnapshots with malformed protobuf is InvalidArgument on every protocol", async () => {
  await withGateway(async (gw, port) => {
    for (const bad of [TRUNCATED, ABSURD_LENGTH_FIELD]) {
      const msg = new Uint8Array(bad);
      const connect = await rawExchange(
        port,
        httpRequest("POST", LIST, { "content-type": "application/proto" }, msg),
      );
      equal(connect.status, 400);
      equal(replyCode(connect), "invalid_argument");
      const b64 = btoa(String.fromCharCode(...msg)).replaceAll("=", "");
      const get = await rawExchange(
        port,
        httpRequest(
          "GET",
          `${LIST}?encoding=proto&base64=1&message=${encodeURIComponent(b64)}`,
          {},
        ),
      );
      equal(get.status, 400);
      equal(replyCode(get), "invalid_argument");
      const web = await rawExchange(
        port,
        httpRequest(
          "POST",
          LIST,
          { "content-type": "application/grpc-web+proto" },
          envelope(msg),
        ),
      );
      equal(replyCode(web), "invalid_argument");
      const grpc = await withGrpc(
        gw,
        (s) => grpcExchange(s, LIST, envelope(msg)),
      );
      equal(grpc.code, "invalid_argument");
    }
    // A well-formed one still works, on the guarded path.
    const good = await rawExchange(
      port,
      httpRequest(
        "POST",
        LIST,
        { "content-type": "application/proto" },
        new Uint8Array(stringField(1, "demo")),
      ),
    );
    equal(good.status, 200);
    ok(new TextDecoder().decode(good.body).includes("vol-1/snap-1"));
  });
});

Deno.test("an unknown field with an absurd length prefix is refused, not read as empty", async () => {
  await withGateway(async (gw, port) => {
    const req = allocatedRequest(ABSURD_LENGTH_FIELD);
    for (
      const ct of ["application/connect+proto", "application/grpc-web+proto"]
    ) {
      const r = await rawExchange(
        port,
        httpRequest("POST", ALLOCATED, { "content-type": ct }, envelope(req)),
      );
      equal(replyCode(r), "invalid_argument", ct);
    }
    const grpc = await withGrpc(
      gw,
      (s) => grpcExchange(s, ALLOCATED, envelope(req)),
    );
    equal(grpc.code, "invalid_argument");
    equal(grpc.bodyBytes, 0);
    // The same request without the field streams.
    const fine = await rawExchange(
      port,
      httpRequest("POST", ALLOCATED, {
        "content-type": "application/connect+proto",
      }, envelope(allocatedRequest())),
    );
    equal(replyCode(fine), "ok");
  });
});

Deno.test("a body shorter than its Content-Length, then a half-close, gets InvalidArgument", async () => {
  await withGateway(async (_gw, port) => {
    const cases: [string, Record<string, string>, string][] = [
      [ALLOCATED, { "content-type": "application/connect+proto" }, "connect"],
      [ALLOCATED, { "content-type": "application/grpc-web+proto" }, "grpc-web"],
      [LIST, { "content-type": "application/proto" }, "connect unary"],
      [
        "/v1/namespaces/demo/snapshots/snap-1/allocated",
        { "content-type": "application/json" },
        "HTTP/JSON",
      ],
    ];
    for (const [path, headers, name] of cases) {
      const r = await rawExchange(
        port,
        httpRequest("POST", path, headers, "abc", 100),
        { halfClose: true },
      );
      equal(replyCode(r), "invalid_argument", name);
      ok(r.status < 500, `${name}: HTTP ${r.status}`);
    }
  });
});

Deno.test("deadlines are honoured while a request body stalls", async () => {
  await withGateway(async (gw, port) => {
    const cases: [string, Record<string, string>][] = [
      [ALLOCATED, {
        "content-type": "application/connect+proto",
        "connect-timeout-ms": "300",
      }],
      [ALLOCATED, {
        "content-type": "application/grpc-web+proto",
        "grpc-timeout": "300m",
      }],
      [LIST, {
        "content-type": "application/proto",
        "connect-timeout-ms": "300",
      }],
      [LIST, {
        "content-type": "application/grpc-web+proto",
        "grpc-timeout": "300m",
      }],
    ];
    for (const [path, headers] of cases) {
      // 3 bytes of a promised 100, then nothing; the wait is below the
      // server's own body timeout, so only the deadline can answer.
      const r = await rawExchange(
        port,
        httpRequest("POST", path, headers, "abc", 100),
        { waitMs: BODY_TIMEOUT_MS - 2000 },
      );
      equal(
        replyCode(r),
        "deadline_exceeded",
        `${path} ${headers["content-type"]}`,
      );
    }
    for (const path of [ALLOCATED, LIST]) {
      const grpc = await withGrpc(
        gw,
        (s) =>
          grpcExchange(s, path, new Uint8Array([0, 0, 0, 0, 50, 1]), {
            headers: { "grpc-timeout": "300m" },
            stallBody: true,
            waitMs: BODY_TIMEOUT_MS - 2000,
          }),
      );
      equal(grpc.code, "deadline_exceeded", path);
    }
  });
});

Deno.test("a legal long deadline (≥ 2^31 ms) is not an immediate deadline_exceeded", async () => {
  await withGateway(async (gw, port) => {
    for (const ms of ["2147483648", "4294967296", "9999999999"]) {
      const stream = await rawExchange(
        port,
        httpRequest("POST", ALLOCATED, {
          "content-type": "application/connect+proto",
          "connect-timeout-ms": ms,
        }, envelope(allocatedRequest())),
      );
      equal(replyCode(stream), "ok", ms);
      const list = await rawExchange(
        port,
        httpRequest("POST", LIST, {
          "content-type": "application/proto",
          "connect-timeout-ms": ms,
        }, new Uint8Array(stringField(1, "demo"))),
      );
      equal(list.status, 200, ms);
    }
    const web = await rawExchange(
      port,
      httpRequest("POST", ALLOCATED, {
        "content-type": "application/grpc-web+proto",
        "grpc-timeout": "99999999H",
      }, envelope(allocatedRequest())),
    );
    equal(replyCode(web), "ok");
    const grpc = await withGrpc(
      gw,
      (s) =>
        grpcExchange(s, ALLOCATED, envelope(allocatedRequest()), {
          headers: { "grpc-timeout": "99999999H" },
        }),
    );
    equal(grpc.code, "ok");
    ok(grpc.bodyBytes > 0);
  });
});

Deno.test("a body dribbled a byte at a time is answered and closed after the body timeout", async () => {
  await withGateway(async (_gw, port) => {
    const headers = httpRequest(
      "POST",
      ALLOCATED,
      {
        "content-type": "application/connect+proto",
      },
      new Uint8Array(0),
      200,
    );
    const r = await rawExchange(port, headers, {
      dribble: { bytes: new Uint8Array(200), everyMs: 500 },
      waitMs: BODY_TIMEOUT_MS + 10_000,
      untilClose: true,
    });
    equal(replyCode(r), "deadline_exceeded");
    match(
      new TextDecoder().decode(r.body),
      /request body not received within/,
    );
    ok(r.closed, "the server closed the connection");
  });
});

Deno.test("malformed chunked bodies: no response from Deno.serve itself, a 400 behind the shipped nginx config", async () => {
  await withGateway(async (gw, port) => {
    const broken = enc.encode(
      `POST ${ALLOCATED} HTTP/1.1\r\nhost: x\r\ncontent-type: application/connect+proto\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n`,
    );
    // What hyper (beneath Deno.serve) does, pinned so a change is noticed:
    // the connection is dropped before the handler ever sees the request.
    const direct = await rawExchange(port, broken, { waitMs: 5000 });
    ok(direct.closed && direct.empty, "Deno.serve drops it unanswered");
    const nginx = await startNginx(
      2,
      ([listenHttp, listenGrpc]) =>
        gatewayNginxConfig({
          listenHttp,
          listenGrpc,
          gatewayHttp: port,
          gatewayGrpc: Number(new URL(gw.grpcUrl).port),
          readTimeout: "10s",
        }),
    );
    try {
      const proxied = await rawExchange(nginx.ports[0], broken, {
        waitMs: 5000,
      });
      equal(proxied.status, 400);
    } finally {
      await nginx.close();
    }
  });
});

Deno.test("a request refused before its body is read does not hold its connection open (found by the fuzzer)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cbt-harden-" });
  const gw = await startGatewayProcess(["--data-dir", `${dir}/data`]);
  try {
    const port = Number(new URL(gw.httpUrl).port);
    // Warm up, then the baseline.
    await rawExchange(port, httpRequest("GET", "/healthz", {}));
    const base = await settle(() => openFds(gw.pid), 0, 500);
    for (let i = 0; i < 30; i++) {
      // POST with query parameters is refused before the body is looked at
      // (here, half of one, then a half-close).
      const r = await rawExchange(
        port,
        httpRequest(
          "POST",
          "/v1/namespaces/demo/snapshots/snap-2/delta?baseSnapshotName=snap-1",
          { "content-type": "application/json", connection: "close" },
          '{"maxResults":',
          17,
        ),
        { halfClose: true },
      );
      equal(r.status, 400);
    }
    const after = await settle(() => openFds(gw.pid), base + 2);
    ok(after <= base + 2, `open fds ${base} → ${after}`);
  } finally {
    await gw.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
