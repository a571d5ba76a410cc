// Run under Node.js: `sessions` HTTP/2 connections to a native-gRPC URL,
// each making `calls` sequential GetMetadataAllocated calls (the enveloped
// request is given in base64; the test encodes it from the generated schema)
// and then closing with session.close(), which sends GOAWAY. Prints JSON:
// { ok, retried, failures, bodies: [distinct response bodies, base64] }.
// A call answered Unavailable is retried once (counted in `retried`), as
// gRPC clients do: a server's GOAWAY racing a new call refuses it.
import http2 from "node:http2";

const [url, calls, sessions, requestB64] = process.argv.slice(2);
const request = Buffer.from(requestB64, "base64");

function call(session) {
  return new Promise((resolve, reject) => {
    const stream = session.request({
      ":method": "POST",
      ":path": "/snapshotmetadata.SnapshotMetadata/GetMetadataAllocated",
      "content-type": "application/grpc",
      te: "trailers",
    });
    const chunks = [];
    let status, message;
    const onStatus = (h) => {
      status ??= h["grpc-status"];
      message ??= h["grpc-message"];
    };
    stream.on("response", onStatus);
    stream.on("trailers", onStatus);
    stream.on("data", (c) => chunks.push(c));
    stream.on(
      "end",
      () => resolve({ status, message, body: Buffer.concat(chunks) }),
    );
    stream.on("error", reject);
    stream.end(request);
  });
}

let ok = 0;
let retried = 0;
const failures = [];
const bodies = new Set();
for (let s = 0; s < Number(sessions); s++) {
  const session = http2.connect(url);
  session.on("error", (e) => failures.push(`session: ${e.message}`));
  for (let i = 0; i < Number(calls); i++) {
    try {
      let r = await call(session);
      if (r.status === "14") {
        retried++;
        r = await call(session);
      }
      if (r.status === "0") {
        ok++;
        bodies.add(r.body.toString("base64"));
      } else failures.push(`grpc-status ${r.status}: ${r.message}`);
    } catch (e) {
      failures.push(e.message);
      break;
    }
  }
  await new Promise((resolve) => session.close(resolve));
}
console.log(JSON.stringify({ ok, retried, failures, bodies: [...bodies] }));
