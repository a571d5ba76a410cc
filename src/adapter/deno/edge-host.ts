/**
 * Deno as an edge host: `Deno.serve` in front of the built edge bundle
 * (`dist/cbt-gateway-edge.js`, the Workers module contract), with the
 * process environment as its `env`.
 *
 *   deno run --allow-net --allow-env --allow-read src/adapter/deno/edge-host.ts [bundle]
 *
 * Listens on CBT_GATEWAY_HOST:CBT_GATEWAY_PORT (default 127.0.0.1:8080;
 * port 0 picks a free one) and prints the URL it serves on.
 */
interface EdgeWorker {
  fetch(request: Request, env: Record<string, string>): Promise<Response>;
}

const bundle = new URL(
  Deno.args[0] ?? "../../../dist/cbt-gateway-edge.js",
  Deno.args[0] ? `file://${Deno.cwd()}/` : import.meta.url,
);
const worker: EdgeWorker = (await import(bundle.href)).default;
const env = Deno.env.toObject();

Deno.serve({
  hostname: env.CBT_GATEWAY_HOST ?? "127.0.0.1",
  port: Number(env.CBT_GATEWAY_PORT ?? "8080"),
  onListen: ({ hostname, port }) =>
    console.log(`cbt-gateway edge on Deno: http://${hostname}:${port}`),
}, (request) => worker.fetch(request, env));
