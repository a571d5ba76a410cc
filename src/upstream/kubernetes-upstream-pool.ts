/**
 * Connections to the drivers' sidecars: native gRPC over TLS trusting only
 * the SnapshotMetadataService's caCert, server name = host of its address,
 * ALPN h2. One HTTP/2 connection per address, shared by every stream to it,
 * kept alive with pings and closed when idle. When a certificate rotates
 * (same address, new CA) the old connection is closed gracefully: its
 * streams finish, new streams use a connection that trusts the new CA.
 */
import * as http2 from "node:http2";
import { isIP } from "node:net";
import { Code, ConnectError } from "@connectrpc/connect";
import { rawGrpcCall, retryIfRefused } from "./grpc-relay-call.ts";
import { connectShielded } from "../http2/goaway-shield.ts";
import type { DriverService } from "./discovery.ts";

export interface UpstreamPoolOptions {
  /** Ping an open connection this often (default 30 s). */
  pingIntervalMs?: number;
  /** Close a connection with no streams after this long (default 5 min). */
  idleTimeoutMs?: number;
  /** Longest grpc-timeout sent to a sidecar (ms); 0 or absent: no limit. */
  maxTimeoutMs?: number;
}

interface Entry {
  caPem: string;
  session: http2.ClientHttp2Session;
  pinger: ReturnType<typeof setInterval>;
}

/** `host:port` → the host part, without IPv6 brackets. */
export function hostOf(address: string): string {
  const m = /^\[([^\]]+)\]:\d+$/.exec(address) ?? /^([^:]+):\d+$/.exec(address);
  if (!m) {
    throw new ConnectError(
      `SnapshotMetadataService address ${
        JSON.stringify(address)
      } is not host:port`,
      Code.Unavailable,
    );
  }
  return m[1];
}

export class UpstreamPool {
  readonly #entries = new Map<string, Entry>();
  readonly #pingIntervalMs: number;
  readonly #idleTimeoutMs: number;
  readonly #maxTimeoutMs: number;
  #closed = false;
  /** Connections opened so far (tests check reuse with it). */
  connectionsOpened = 0;

  constructor(options: UpstreamPoolOptions = {}) {
    this.#pingIntervalMs = options.pingIntervalMs ?? 30_000;
    this.#idleTimeoutMs = options.idleTimeoutMs ?? 5 * 60_000;
    this.#maxTimeoutMs = options.maxTimeoutMs ?? 0;
  }

  /** Starts one server-streaming call; yields raw response messages. */
  call(
    service: DriverService,
    path: string,
    request: Uint8Array,
    call: { signal: AbortSignal; deadline?: number },
  ): AsyncGenerator<Uint8Array> {
    return retryIfRefused(() =>
      rawGrpcCall(this.#session(service), path, request, {
        signal: call.signal,
        deadline: call.deadline,
        maxTimeoutMs: this.#maxTimeoutMs,
      })
    );
  }

  async close(): Promise<void> {
    this.#closed = true;
    const entries = [...this.#entries.values()];
    this.#entries.clear();
    await Promise.all(entries.map((e) => this.#retire(e)));
  }

  #session(service: DriverService): http2.ClientHttp2Session {
    if (this.#closed) {
      throw new ConnectError("upstream pool is closed", Code.Unavailable);
    }
    const { address, caPem } = service;
    const current = this.#entries.get(address);
    if (
      current && current.caPem === caPem && !current.session.closed &&
      !current.session.destroyed
    ) {
      return current.session;
    }
    if (current) {
      this.#entries.delete(address);
      void this.#retire(current);
    }
    const host = hostOf(address);
    // Shielded: a GOAWAY from the sidecar would crash Deno (goaway-shield.ts).
    const session = connectShielded(`https://${address}`, {
      ca: caPem,
      // SNI carries names only; for an IP the certificate's IP SAN is checked.
      servername: isIP(host) ? undefined : host,
      ALPNProtocols: ["h2"],
    });
    this.connectionsOpened++;
    const entry: Entry = {
      caPem,
      session,
      pinger: setInterval(() => {
        if (session.closed || session.destroyed) return;
        session.ping((err) => {
          if (err) session.destroy(err);
        });
      }, this.#pingIntervalMs),
    };
    const drop = () => {
      clearInterval(entry.pinger);
      if (this.#entries.get(address) === entry) this.#entries.delete(address);
    };
    // Failures reach the streams on the session; the entry just goes away.
    session.on("error", drop);
    session.on("close", drop);
    session.on("goaway", drop);
    session.setTimeout(this.#idleTimeoutMs, () => session.close());
    this.#entries.set(address, entry);
    return session;
  }

  #retire(entry: Entry): Promise<void> {
    clearInterval(entry.pinger);
    const s = entry.session;
    if (s.closed || s.destroyed) return Promise.resolve();
    return new Promise((resolve) => s.close(() => resolve()));
  }
}
