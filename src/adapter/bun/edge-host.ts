/**
 * Bun as an edge host: `Bun.serve` in front of the built edge bundle
 * (`dist/cbt-gateway-edge.js`, the Workers module contract), with the
 * process environment as its `env`.
 *
 *   bun src/adapter/bun/edge-host.ts [bundle]
 *
 * Listens on CBT_GATEWAY_HOST:CBT_GATEWAY_PORT (default 127.0.0.1:8080;
 * port 0 picks a free one) and prints the URL it serves on.
 */

/** The part of Bun's API used here (this file is type-checked by Deno). */
declare const Bun: {
  env: Record<string, string | undefined>;
  argv: string[];
  serve(options: {
    hostname: string;
    port: number;
    idleTimeout: number;
    fetch(request: Request): Promise<Response>;
  }): { hostname: string; port: number };
};

interface EdgeWorker {
  fetch(
    request: Request,
    env: Record<string, string | undefined>,
  ): Promise<Response>;
}

const bundle = Bun.argv[2] !== undefined
  ? new URL(Bun.argv[2], `file://${process.cwd()}/`)
  : new URL("../../../dist/cbt-gateway-edge.js", import.meta.url);
const worker: EdgeWorker = (await import(bundle.href)).default;
const env = Bun.env;

const server = Bun.serve({
  hostname: env.CBT_GATEWAY_HOST ?? "127.0.0.1",
  port: Number(env.CBT_GATEWAY_PORT ?? "8080"),
  // Bun closes connections idle for 10 s by default; a stream may be quiet
  // longer than that while the upstream scans unchanged blocks.
  idleTimeout: 0,
  fetch: (request) => worker.fetch(request, env),
});
console.log(
  `cbt-gateway edge on Bun: http://${server.hostname}:${server.port}`,
);
