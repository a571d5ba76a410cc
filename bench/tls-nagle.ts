/**
 * `deno run -A bench/tls-nagle.ts`: why Connect, gRPC-Web and HTTP/JSON
 * over TLS see their first message ~40 ms late. A bare `Deno.serve` (no
 * gateway code) answers with a streamed body — headers, then one small
 * chunk every 5 ms — once over plain TCP and once over TLS; a client on a
 * new HTTP/1.1 connection each time records when each chunk arrives.
 *
 * Deno.serve sets TCP_NODELAY on connections it accepts over plain TCP
 * (visible with `strace -f -e setsockopt`) but not on TLS ones, so there
 * Nagle's algorithm holds each small write while the previous one is
 * unacknowledged, and the client acknowledges only after its delayed-ACK
 * timer (40 ms on Linux). The server side pays; no client setting avoids it.
 */
import {
  issueServerCert,
  makeCertificateAuthority,
} from "../tests/support/certs.ts";

const CHUNKS = 4, GAP_MS = 5, RUNS = 7;

function streamed(): Response {
  let sent = 0;
  return new Response(
    new ReadableStream({
      async pull(c) {
        await new Promise((r) => setTimeout(r, GAP_MS));
        c.enqueue(new TextEncoder().encode(`chunk ${sent}\n`));
        if (++sent === CHUNKS) c.close();
      },
    }),
  );
}

async function arrivals(url: string, caPem?: string): Promise<number[]> {
  const client = Deno.createHttpClient({
    caCerts: caPem ? [caPem] : [],
    http1: true,
    http2: false,
  });
  try {
    const t0 = performance.now();
    const res = await fetch(url, { client });
    const out: number[] = [];
    for await (const _ of res.body!) out.push(performance.now() - t0);
    return out;
  } finally {
    client.close();
  }
}

const dir = await Deno.makeTempDir({ prefix: "cbt-tls-nagle-" });
try {
  const ca = await makeCertificateAuthority(dir);
  const cert = await issueServerCert(ca, { ipAddresses: ["127.0.0.1"] });
  for (const tls of [false, true]) {
    const ready = Promise.withResolvers<number>();
    const server = Deno.serve({
      hostname: "127.0.0.1",
      port: 0,
      ...(tls ? { cert: cert.certPem, key: cert.keyPem } : {}),
      onListen: (a) => ready.resolve(a.port),
    }, streamed);
    const url = `${tls ? "https" : "http"}://127.0.0.1:${await ready.promise}/`;
    const runs: number[][] = [];
    for (let i = 0; i < RUNS; i++) runs.push(await arrivals(url, ca.certPem));
    await server.shutdown();
    const median = (k: number) => {
      const xs = runs.map((r) => r[k] ?? NaN).sort((a, b) => a - b);
      return xs[Math.floor(xs.length / 2)];
    };
    const last = Math.max(...runs.map((r) => r.length)) - 1;
    console.log(
      `${
        tls ? "TLS      " : "plain TCP"
      }: chunks written every ${GAP_MS} ms; ` +
        `median arrival of the first body read ${median(0).toFixed(1)} ms, ` +
        `of the last ${median(last).toFixed(1)} ms (${last + 1} reads)`,
    );
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
