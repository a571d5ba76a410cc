/**
 * `deno run -A bench/floor.ts`: what receiving one message at the sidecar's
 * pace costs a Deno process before any relaying — the floor under the
 * gateway's per-message CPU. A writer (another process) sends one 2.5 KB
 * chunk, the size of a 256-tuple message, every 0.91 ms (280k tuples/s);
 * this process reads and discards them and reports its own CPU per chunk:
 *
 *   1. plain TCP (`Deno.connect`): the event loop's wake-up per read;
 *   2. TLS (`Deno.connectTls`): plus decryption;
 *   3. node:http2 over TLS, as the gateway's upstream leg reads (the
 *      paced sidecar stand-in, `rawGrpcRuns`): plus HTTP/2 and node-compat.
 *
 * And the floor under the fixed cost per stream: a node:http2 TLS server
 * (as the gRPC front) answering one small response per new connection from
 * h2load (nghttp2-client), CPU per connection of the serving process.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { connect, createSecureServer } from "node:http2";
import { GetMetadataAllocatedRequestSchema } from "../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import { rawGrpcRuns } from "../src/adapter/node-http2/grpc-call.ts";
import {
  issueServerCert,
  makeCertificateAuthority,
} from "../tests/support/certs.ts";
import { cpuSeconds, startPacedUpstream } from "./processes.ts";

const CHUNKS = 2000, CHUNK_BYTES = 2572, INTERVAL_MS = 256 / 280_000 * 1000;

/**
 * The writer child: paced chunks to whoever connects, then exits. Every
 * chunk waits for a timer (timers have millisecond granularity, so the pace
 * is at most the sidecar's), so each leaves alone and the reader wakes once
 * per chunk, as it does behind the real sidecar.
 */
async function writer(port: number, tls: { cert: string; key: string }) {
  const listener = tls.cert
    ? Deno.listenTls({ hostname: "127.0.0.1", port, ...tls })
    : Deno.listen({ hostname: "127.0.0.1", port });
  console.log((listener.addr as Deno.NetAddr).port);
  const conn = await listener.accept();
  const chunk = new Uint8Array(CHUNK_BYTES);
  const start = performance.now();
  for (let i = 0; i < CHUNKS; i++) {
    const wait = start + i * INTERVAL_MS - performance.now();
    await new Promise((r) => setTimeout(r, Math.max(0, Math.floor(wait))));
    await conn.write(chunk);
  }
  if ("closeWrite" in conn) await conn.closeWrite();
  await new Promise((r) => setTimeout(r, 100));
  Deno.exit(0);
}

async function readPaced(tls?: { caPem: string; cert: string; key: string }) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", import.meta.filename!, "--writer"],
    env: tls ? { FLOOR_CERT: tls.cert, FLOOR_KEY: tls.key } : {},
    stdout: "piped",
  }).spawn();
  const first = await child.stdout.getReader().read();
  const port = Number(new TextDecoder().decode(first.value).trim());
  const conn = tls
    ? await Deno.connectTls({
      hostname: "127.0.0.1",
      port,
      caCerts: [tls.caPem],
    })
    : await Deno.connect({ hostname: "127.0.0.1", port });
  const buf = new Uint8Array(65536);
  let bytes = 0, reads = 0;
  const c0 = cpuSeconds(Deno.pid);
  try {
    for (let n; (n = await conn.read(buf)) !== null; reads++) bytes += n;
  } catch { /* the writer may exit without a TLS close_notify */ }
  const chunks = bytes / CHUNK_BYTES;
  const perChunk = (cpuSeconds(Deno.pid) - c0) / chunks;
  await child.status;
  return { us: perChunk * 1e6, readsPerChunk: reads / chunks };
}

async function readHttp2(caPem: string, certPath: string, keyPath: string) {
  const upstream = await startPacedUpstream({ certPath, keyPath }, 280_000);
  const session = connect(`https://${upstream.address}`, { ca: caPem });
  session.on("error", () => {});
  const tuples = 256 * CHUNKS;
  const request = toBinary(
    GetMetadataAllocatedRequestSchema,
    create(GetMetadataAllocatedRequestSchema, {
      securityToken: "floor",
      namespace: "floor",
      snapshotName: `p${tuples}`,
    }),
  );
  try {
    const c0 = cpuSeconds(Deno.pid);
    for await (
      const _ of rawGrpcRuns(
        session,
        "/snapshotmetadata.SnapshotMetadata/GetMetadataAllocated",
        request,
        { signal: new AbortController().signal },
      )
    ) { /* discard */ }
    return (cpuSeconds(Deno.pid) - c0) / CHUNKS * 1e6;
  } finally {
    // The stand-in first: Deno's node:http2 server can abort on the GOAWAY
    // a closing client session sends.
    await upstream.stop();
    session.destroy();
  }
}

async function perConnection(cert: string, key: string): Promise<number> {
  const CONNECTIONS = 100;
  const body = new Uint8Array(200); // about a 10-tuple message
  const server = createSecureServer({ cert, key, ALPNProtocols: ["h2"] });
  server.on("stream", (stream) => {
    stream.respond({ ":status": 200, "content-type": "application/grpc" });
    stream.end(body);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  const url = `https://127.0.0.1:${port}/`;
  const h2load = (n: number) =>
    new Deno.Command("h2load", {
      args: ["-n", String(n), "-c", String(n), "-m", "1", url],
      stdout: "null",
      stderr: "null",
    }).output();
  await h2load(10); // warm-up
  const c0 = cpuSeconds(Deno.pid);
  // Ten connections at a time, each with one stream.
  for (let i = 0; i < CONNECTIONS / 10; i++) await h2load(10);
  const perConnection = (cpuSeconds(Deno.pid) - c0) / CONNECTIONS;
  await new Promise((r) => server.close(r));
  return perConnection * 1000;
}

if (Deno.args[0] === "--writer") {
  const cert = Deno.env.get("FLOOR_CERT"), key = Deno.env.get("FLOOR_KEY");
  await writer(0, { cert: cert ?? "", key: key ?? "" });
} else {
  const dir = await Deno.makeTempDir({ prefix: "cbt-floor-" });
  try {
    const ca = await makeCertificateAuthority(dir);
    const c = await issueServerCert(ca, { ipAddresses: ["127.0.0.1"] });
    const tls = { caPem: ca.certPem, cert: c.certPem, key: c.keyPem };
    const fmt = (us: number) => `${us.toFixed(0)} µs CPU per message`;
    const raw = (r: { us: number; readsPerChunk: number }) =>
      `${fmt(r.us)} (${r.readsPerChunk.toFixed(2)} reads per message)`;
    console.log(`plain TCP read:        ${raw(await readPaced())}`);
    console.log(`TLS read:              ${raw(await readPaced(tls))}`);
    console.log(
      `node:http2 (TLS) read: ${
        fmt(await readHttp2(ca.certPem, c.certPath, c.keyPath))
      }`,
    );
    console.log(
      `node:http2 (TLS) server, new connection + one small stream: ${
        (await perConnection(c.certPem, c.keyPem)).toFixed(1)
      } ms CPU per connection`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
