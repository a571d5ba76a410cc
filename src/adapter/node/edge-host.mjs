/**
 * Node as an edge host: `node:http` with @hono/node-server's request
 * listener (Node request → fetch Request → the built edge bundle → fetch
 * Response → Node response), with the process environment as `env`.
 * The listener streams response bodies with backpressure, cancels them when
 * the client goes away, and aborts `request.signal` then.
 *
 *   node src/adapter/node/edge-host.mjs [bundle]
 *
 * Listens on CBT_GATEWAY_HOST:CBT_GATEWAY_PORT (default 127.0.0.1:8080;
 * port 0 picks a free one) and prints the URL it serves on. Plain
 * JavaScript: Node 20 runs no TypeScript.
 */
import { createServer } from "node:http";
import { pathToFileURL } from "node:url";
import process from "node:process";
import { getRequestListener } from "@hono/node-server";

const bundle = process.argv[2] !== undefined
  ? pathToFileURL(process.argv[2])
  : new URL("../../../dist/cbt-gateway-edge.js", import.meta.url);
const worker = (await import(bundle.href)).default;
const env = process.env;

const server = createServer(
  getRequestListener((request) => worker.fetch(request, env), {
    // Keep the runtime's own Request and Response for the bundle.
    overrideGlobalObjects: false,
  }),
);
server.listen(
  Number(env.CBT_GATEWAY_PORT ?? "8080"),
  env.CBT_GATEWAY_HOST ?? "127.0.0.1",
  () => {
    const { address, port } = server.address();
    console.log(`cbt-gateway edge on Node: http://${address}:${port}`);
  },
);
