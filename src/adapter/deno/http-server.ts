/**
 * The Deno adapter for the fetch front: `Deno.serve` on one port, HTTP/1.1
 * and h2c (h2 with TLS). Everything Deno-specific about HTTP lives here.
 */
export interface HttpServerOptions {
  hostname: string;
  port: number;
  tlsCert?: string;
  tlsKey?: string;
}

export interface RunningHttpServer {
  port: number;
  url: string;
  close(): Promise<void>;
}

export async function startHttpServer(
  handler: (request: Request) => Promise<Response>,
  options: HttpServerOptions,
): Promise<RunningHttpServer> {
  const tls = options.tlsCert !== undefined && options.tlsKey !== undefined;
  const listening = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve({
    hostname: options.hostname,
    port: options.port,
    ...(tls ? { cert: options.tlsCert, key: options.tlsKey } : {}),
    onListen: (addr) => listening.resolve(addr as Deno.NetAddr),
    onError: (error) => {
      console.error("http handler failed:", error);
      return Response.json({ code: "internal", message: "internal error" }, {
        status: 500,
      });
    },
  }, handler);
  const addr = await listening.promise;
  const host = addr.hostname.includes(":")
    ? `[${addr.hostname}]`
    : addr.hostname;
  return {
    port: addr.port,
    url: `${tls ? "https" : "http"}://${host}:${addr.port}`,
    async close() {
      await server.shutdown();
    },
  };
}
