// A gRPC (h2c) proxy run under Node.js (whose node:http2 doesn't have Deno's
// GOAWAY crash): relays every stream to the upstream at argv[2] and retires
// each client connection with a graceful GOAWAY after argv[3] streams, as a
// grpc-go sidecar does on MaxConnectionAge or GracefulStop. Prints
// "PORT <n>", then "GOAWAY <count>" each time it sends one.
import http2 from "node:http2";

const [upstreamUrl, perSession] = process.argv.slice(2);
const limit = Number(perSession);
const upstream = http2.connect(upstreamUrl);
upstream.on("error", (e) => console.error("upstream:", e.message));
let goaways = 0;

const server = http2.createServer();
server.on("session", (session) => {
  session.streams = 0;
  session.on("error", () => {});
});
server.on("stream", (stream, headers) => {
  const session = stream.session;
  session.streams++;
  if (session.streams === limit) {
    stream.once("close", () => {
      session.close();
      console.log(`GOAWAY ${++goaways}`);
    });
  }
  const out = {};
  for (const [k, v] of Object.entries(headers)) {
    if (!k.startsWith(":") || k === ":method" || k === ":path") out[k] = v;
  }
  const up = upstream.request(out);
  stream.pipe(up);
  up.on("response", (h, flags) => {
    const head = { ...h };
    if (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) {
      stream.respond(head, { endStream: true }); // Trailers-Only
      return;
    }
    let trailers = {};
    up.on("trailers", (t) => trailers = t);
    stream.respond(head, { waitForTrailers: true });
    stream.on("wantTrailers", () => stream.sendTrailers(trailers));
    up.pipe(stream);
  });
  up.on("error", () => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR));
  stream.on("error", () => up.close(http2.constants.NGHTTP2_CANCEL));
  stream.on("close", () => {
    if (!up.closed) up.close(http2.constants.NGHTTP2_CANCEL);
  });
});
server.listen(
  0,
  "127.0.0.1",
  () => console.log(`PORT ${server.address().port}`),
);
