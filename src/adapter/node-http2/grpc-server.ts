/**
 * Native gRPC over HTTP/2 (h2c, or TLS with ALPN h2) through node:http2 and
 * connect-node's adapter: a fetch Response has no trailers, so gRPC can't go
 * through the fetch front. Connect and gRPC-Web work on this port too.
 *
 * Shutdown goes in bounded steps: stop listening and end every running
 * call (Unavailable), refuse new streams, wait for the streams to finish,
 * reset the ones that don't, then GOAWAY each idle session and destroy any
 * that lingers. So close() can't hang on a client that stops reading, and
 * no GOAWAY goes out while streams are live.
 *
 * Connections are accepted here (net or tls) and handed to node:http2
 * through a GOAWAY shield: a client's GOAWAY would abort the process inside
 * nghttp2 (denoland/deno#36788, see goaway-shield.ts). Instead, a
 * connection whose client sent one is ended once its streams are done.
 */
import * as http2 from "node:http2";
import * as net from "node:net";
import type { AddressInfo } from "node:net";
import * as tls from "node:tls";
import type { Duplex } from "node:stream";
import { Code, ConnectError } from "@connectrpc/connect";
import { compressionGzip, connectNodeAdapter } from "@connectrpc/connect-node";
import {
  DEFAULT_READ_MAX_BYTES,
  registerServices,
} from "../../front/connect-services.ts";
import { createNodeFrameRelay } from "./frame-relay.ts";
import type { Gateway } from "../../gateway/gateway.ts";
import { shieldGoaway } from "./goaway-shield.ts";

export interface GrpcServerOptions {
  hostname: string;
  port: number;
  /** PEM; with both, the port speaks TLS (ALPN h2) instead of h2c. */
  tlsCert?: string;
  tlsKey?: string;
  /** Ends running calls; `close()` does too. */
  shutdownSignal?: AbortSignal;
}

/** Shutdown bounds (ms); together under the 5 s a supervisor usually gives. */
const SHUTDOWN_MS = {
  /** For the ended calls' streams to finish on their own (trailers sent). */
  streams: 2000,
  /** For the streams then reset with CANCEL to close. */
  reset: 500,
  /** For sessions to close after their GOAWAY, and again after destroy. */
  sessions: 1000,
  /** For a client that sent GOAWAY to close its idle connection itself. */
  peerGoaway: 1000,
};

export interface RunningGrpcServer {
  port: number;
  url: string;
  close(): Promise<void>;
}

export async function startGrpcServer(
  gateway: Gateway,
  options: GrpcServerOptions,
): Promise<RunningGrpcServer> {
  // The reason is what running calls end with: Unavailable, so clients
  // know to retry (elsewhere, or once the gateway is back).
  const stopping = new AbortController();
  const stop = () =>
    stopping.abort(
      new ConnectError("the server is shutting down", Code.Unavailable),
    );
  options.shutdownSignal?.addEventListener("abort", stop, { once: true });
  if (options.shutdownSignal?.aborted) stop();
  const adapter = connectNodeAdapter({
    routes: registerServices(gateway),
    acceptCompression: [compressionGzip],
    readMaxBytes: DEFAULT_READ_MAX_BYTES,
    shutdownSignal: stopping.signal,
  });
  // Binary server streams skip connect-es's decode/re-encode of every message.
  const frameRelay = createNodeFrameRelay(gateway, {
    compression: [compressionGzip],
    readMaxBytes: DEFAULT_READ_MAX_BYTES,
  }, stopping.signal);
  const streams = new Set<http2.ServerHttp2Stream>();
  const sessions = new Set<http2.Http2Session>();
  const changed = new Changes();
  const handler = (
    req: http2.Http2ServerRequest,
    res: http2.Http2ServerResponse,
  ) => {
    const stream = req.stream;
    if (stopping.signal.aborted) {
      // REFUSED_STREAM: the client may safely retry elsewhere.
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    if (!stream.closed) {
      streams.add(stream);
      stream.once("close", () => {
        streams.delete(stream);
        changed.notify();
      });
    }
    if (!frameRelay(req, res)) adapter(req, res);
  };
  // Always the cleartext server: TLS, if any, ends in `listener`.
  const server = http2.createServer(handler);
  const secure = options.tlsCert !== undefined &&
    options.tlsKey !== undefined;
  const listener = secure
    ? tls.createServer({
      cert: options.tlsCert,
      key: options.tlsKey,
      ALPNProtocols: ["h2"],
    })
    : net.createServer();
  const sockets = new Set<Duplex>();
  // The shield of the connection being handed over: node:http2 makes its
  // session synchronously in `emit("connection")`.
  let handingOver: Connection | undefined;
  listener.on(secure ? "secureConnection" : "connection", (raw: Duplex) => {
    sockets.add(raw);
    raw.once("close", () => sockets.delete(raw));
    const connection: Connection = { raw, session: undefined };
    const socket = shieldGoaway(raw, {
      server: true,
      onGoaway: () => endWhenIdle(connection),
    });
    handingOver = connection;
    try {
      server.emit("connection", socket);
    } finally {
      handingOver = undefined;
    }
  });
  server.on("session", (s) => {
    sessions.add(s);
    if (handingOver) handingOver.session = s;
    s.on("close", () => {
      sessions.delete(s);
      changed.notify();
    });
  });
  /** The client sent GOAWAY: end its connection once no stream is open. */
  async function endWhenIdle(connection: Connection): Promise<void> {
    // Streams opened just before the GOAWAY may not have shown up yet.
    await new Promise((resolve) => setTimeout(resolve, 0));
    const s = connection.session;
    const idle = () =>
      !s || s.destroyed || ![...streams].some((st) => st.session === s);
    while (!idle()) await changed.until(idle, SHUTDOWN_MS.peerGoaway);
    if (s?.destroyed) return;
    // It may close the connection itself first; a FIN if not.
    await changed.until(() => connection.raw.destroyed, SHUTDOWN_MS.peerGoaway);
    connection.raw.end();
    setTimeout(() => connection.raw.destroy(), SHUTDOWN_MS.peerGoaway).unref();
  }
  await new Promise<void>((resolve, reject) => {
    listener.once("error", reject);
    listener.listen(options.port, options.hostname, () => {
      listener.off("error", reject);
      resolve();
    });
  });
  const port = (listener.address() as AddressInfo).port;
  const host = options.hostname.includes(":")
    ? `[${options.hostname}]`
    : options.hostname;
  let closing: Promise<void> | undefined;
  async function shutdown(): Promise<void> {
    let serverClosed = false;
    listener.close(() => {
      serverClosed = true;
      changed.notify();
    });
    stop();
    await changed.until(() => streams.size === 0, SHUTDOWN_MS.streams);
    for (const s of streams) s.close(http2.constants.NGHTTP2_CANCEL);
    await changed.until(() => streams.size === 0, SHUTDOWN_MS.reset);
    for (const s of sessions) s.close();
    await changed.until(() => sessions.size === 0, SHUTDOWN_MS.sessions);
    for (const s of sessions) s.destroy();
    for (const raw of sockets) raw.destroy();
    await changed.until(() => serverClosed, SHUTDOWN_MS.sessions);
    options.shutdownSignal?.removeEventListener("abort", stop);
  }
  return {
    port,
    url: `${secure ? "https" : "http"}://${host}:${port}`,
    close: () => closing ??= shutdown(),
  };
}

interface Connection {
  raw: Duplex;
  session: http2.Http2Session | undefined;
}

/** Wakes waiters whenever a stream or session closes. */
class Changes {
  #waiters = new Set<() => void>();

  notify(): void {
    for (const w of this.#waiters) w();
  }

  /** Resolves once `done()` holds, or after `ms` regardless. */
  until(done: () => boolean, ms: number): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (!done()) return;
        finish();
      };
      const finish = () => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(finish, ms);
      this.#waiters.add(check);
    });
  }
}
