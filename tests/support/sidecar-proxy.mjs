// A gRPC proxy, run under Node.js, that makes a healthy snapshot-metadata
// upstream behave like the real csi-snapshot-metadata sidecar on a bad day.
// It relays each call to the upstream and, per call, as the test planned:
//   deadline     ends the stream with grpc-status 4 "context deadline
//                exceeded" at a message boundary (the sidecar's
//                --max-streaming-duration-min; also `capMs`, by time)
//   status       ends it with another grpc-status at a message boundary
//   rst          RST_STREAM (INTERNAL_ERROR) after exactly `at` bytes
//   reset        destroys the TCP connection after `at` bytes
//   goaway       GOAWAY, then the connection closes, after `at` bytes
//   restart      the whole server goes away after `at` bytes and listens
//                again on the same port `restartMs` later
// Raw cuts (rst, reset, goaway, restart) fall anywhere, inside an envelope
// too; `minMessages` whole messages go out first.
//
// Args: upstreamUrl [upstreamCaFile certFile keyFile] (TLS both ways when
// given). Prints {"port":n}, then one JSON line per finished call. Reads
// JSON commands on stdin, one per line, each acknowledged with {"ack":n}:
//   {"faults":[fault…], "capMs":n, "intervalMs":n, "restartMs":n}
// A plan resets the call count: the k-th call from then on gets fault k.
import http2 from "node:http2";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";

const [upstreamUrl, caFile, certFile, keyFile] = process.argv.slice(2);
const tls = certFile !== undefined;
const upstreamCa = caFile ? readFileSync(caFile, "utf8") : undefined;
const serverOptions = tls
  ? { cert: readFileSync(certFile), key: readFileSync(keyFile) }
  : {};

let plan = [];
let capMs = 0;
let intervalMs = 0;
let restartMs = 50;
let calls = 0;
let upstream;
let server;
let port = 0;
const sessions = new Set();
const sockets = new Set();

function upstreamSession() {
  if (upstream && !upstream.closed && !upstream.destroyed) return upstream;
  upstream = http2.connect(upstreamUrl, upstreamCa ? { ca: upstreamCa } : {});
  upstream.on("error", () => {});
  return upstream;
}

const report = (line) => process.stdout.write(JSON.stringify(line) + "\n");

/** Field `field` (varint) of a protobuf message; 0 when absent. */
function varintField(bytes, field) {
  let pos = 0;
  const varint = () => {
    let result = 0, mul = 1;
    for (;;) {
      const b = bytes[pos++];
      result += (b & 0x7f) * mul;
      if (b < 0x80) return result;
      mul *= 128;
    }
  };
  while (pos < bytes.length) {
    const tag = varint();
    const f = Math.floor(tag / 8), w = tag & 7;
    if (w === 0) {
      const v = varint();
      if (f === field) return v;
    } else if (w === 2) {
      const length = varint(); // read first: `pos += varint()` would lose its bytes
      pos += length;
    } else if (w === 1) pos += 8;
    else if (w === 5) pos += 4;
    else return 0;
  }
  return 0;
}

function serve(stream, headers) {
  const index = calls++;
  const fault = plan[index];
  const path = headers[":path"];
  const record = {
    call: index,
    startedAt: Date.now(),
    path,
    startingOffset: 0,
    authorized: typeof headers.authorization === "string",
    fault: null,
    bytes: 0,
    messages: 0,
  };
  stream.on("error", () => {});
  const out = {};
  for (const [k, v] of Object.entries(headers)) {
    if (!k.startsWith(":") || k === ":method" || k === ":path") out[k] = v;
  }
  const up = upstreamSession().request(out);
  up.on("error", () => {});
  const request = [];
  stream.on("data", (c) => {
    request.push(c);
    up.write(c);
  });
  stream.on("end", () => {
    up.end();
    const body = Buffer.concat(request).subarray(5);
    const offsetField = path.endsWith("/GetMetadataAllocated") ? 4 : 5;
    record.startingOffset = varintField(body, offsetField);
  });
  let finished = false;
  const finish = (kind) => {
    if (finished) return;
    finished = true;
    record.fault = kind;
    if (!up.closed) up.close(http2.constants.NGHTTP2_CANCEL);
    report(record);
  };
  stream.on("close", () => finish(record.fault));

  up.on("response", (h, flags) => {
    if (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) {
      stream.respond({ ...h }, { endStream: true }); // Trailers-Only
      finish(null);
      return;
    }
    let trailers = { "grpc-status": "13", "grpc-message": "no trailers" };
    let upstreamEnded = false;
    up.on("trailers", (t) => (trailers = t));
    stream.respond({ ...h }, { waitForTrailers: true });
    let injected;
    stream.on("wantTrailers", () => stream.sendTrailers(injected ?? trailers));

    // Upstream bytes wait in `pending`; the pump sends them one whole
    // message at a time (or cuts one).
    let pending = Buffer.alloc(0);
    let wake;
    const notify = () => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    up.on("data", (c) => {
      pending = Buffer.concat([pending, c]);
      if (pending.length > 256 * 1024) up.pause();
      notify();
    });
    up.on("end", () => {
      upstreamEnded = true;
      notify();
    });
    up.on("close", notify);
    const started = Date.now();
    const endWith = (status, message, kind) => {
      injected = { "grpc-status": String(status), "grpc-message": message };
      record.fault = kind;
      stream.end();
    };
    const write = (bytes) =>
      new Promise((resolve) => {
        if (stream.write(bytes)) resolve();
        else {
          const done = () => {
            stream.off("drain", done).off("close", done);
            resolve();
          };
          stream.on("drain", done).on("close", done);
        }
      });
    (async () => {
      for (;;) {
        if (stream.closed) return;
        const whole = pending.length >= 5 &&
          pending.length >= 5 + pending.readUInt32BE(1);
        if (!whole) {
          if (upstreamEnded || up.closed) {
            if (pending.length === 0) stream.end(); // relay upstream's status
            else stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
            return;
          }
          if (up.isPaused()) up.resume();
          await new Promise((r) => (wake = r));
          continue;
        }
        const envelope = pending.subarray(0, 5 + pending.readUInt32BE(1));
        const due = fault && record.messages >= (fault.minMessages ?? 0);
        if (capMs > 0 && Date.now() - started >= capMs) {
          return endWith(4, "context deadline exceeded", "deadline");
        }
        if (due && fault.kind === "deadline" && record.bytes >= fault.at) {
          return endWith(4, "context deadline exceeded", "deadline");
        }
        if (due && fault.kind === "status" && record.bytes >= fault.at) {
          return endWith(fault.code, "injected failure", "status");
        }
        const raw = ["rst", "reset", "goaway", "restart"].includes(fault?.kind);
        if (due && raw && record.bytes + envelope.length > fault.at) {
          const part = envelope.subarray(
            0,
            Math.max(0, fault.at - record.bytes),
          );
          record.bytes += part.length;
          if (part.length > 0) await write(part);
          // Let the partial bytes reach the socket before the cut.
          await new Promise((r) => setTimeout(r, 5));
          cut(stream, fault.kind);
          finish(fault.kind);
          return;
        }
        pending = pending.subarray(envelope.length);
        if (intervalMs > 0) await new Promise((r) => setTimeout(r, intervalMs));
        await write(envelope);
        record.bytes += envelope.length;
        record.messages++;
      }
    })();
  });
}

function cut(stream, kind) {
  const session = stream.session;
  if (kind === "rst") stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
  else if (kind === "reset") {
    // The session's socket is a guarded proxy: destroy the raw socket,
    // found by its port, so the peer sees a bare TCP close (no GOAWAY).
    const remotePort = session?.socket?.remotePort;
    for (const socket of sockets) {
      if (socket.remotePort === remotePort) socket.destroy();
    }
  } else if (kind === "goaway") {
    session?.goaway(http2.constants.NGHTTP2_NO_ERROR);
    setTimeout(() => session?.destroy(), 5);
  } else if (kind === "restart") restart();
}

function listen(onListening) {
  server = tls
    ? http2.createSecureServer(serverOptions)
    : http2.createServer(serverOptions);
  server.on("session", (s) => {
    sessions.add(s);
    s.on("error", () => {});
    s.on("close", () => sessions.delete(s));
  });
  server.on("stream", serve);
  server.on(tls ? "secureConnection" : "connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  server.listen(port, "127.0.0.1", () => {
    port = server.address().port;
    onListening?.();
  });
}

function restart() {
  const old = server;
  old.close();
  for (const s of sessions) s.destroy();
  setTimeout(() => listen(() => report({ restarted: port })), restartMs);
}

listen(() => report({ port }));

let acks = 0;
createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line);
  plan = command.faults ?? [];
  capMs = command.capMs ?? 0;
  intervalMs = command.intervalMs ?? 0;
  restartMs = command.restartMs ?? 50;
  calls = 0;
  report({ ack: ++acks });
});
process.stdin.on("end", () => process.exit(0));
