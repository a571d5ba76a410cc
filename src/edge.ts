/**
 * The edge tier's entry: what `deno task build:edge` bundles into
 * `dist/cbt-gateway-edge.js`. Its default export is the Workers module
 * contract, `{ fetch(request, env, ctx) }`, which workerd runs as it is and
 * the Bun, Node and Deno hosts in `src/adapter/` call with their process
 * environment as `env`.
 *
 * The handler is built on the first request, from that request's `env`:
 * Workers hand bindings to `fetch`, not to the module, and forbid random
 * numbers and timers at module scope.
 */
import {
  createEdgeHandler,
  edgeConfigFromEnv,
  type EdgeEnv,
} from "./server/edge.ts";

let handler: ((request: Request) => Promise<Response>) | undefined;

export default {
  fetch(request: Request, env: EdgeEnv = {}): Promise<Response> {
    if (handler === undefined) {
      try {
        handler = createEdgeHandler(edgeConfigFromEnv(env));
      } catch (e) {
        return Promise.resolve(Response.json(
          {
            code: "internal",
            message: `edge misconfigured: ${(e as Error).message}`,
          },
          { status: 500 },
        ));
      }
    }
    return handler(request);
  },
};
