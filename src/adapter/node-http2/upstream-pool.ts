/**
 * The upstream channel on node:http2, shared by the Kubernetes backend (the
 * drivers' sidecars) and the static relay: one HTTP/2 connection per
 * upstream URL, shared by every stream to it, kept alive with pings and
 * closed when idle. TLS trusts only the target's CA when it names one
 * (ALPN h2). When a certificate rotates (same URL, new CA) the old
 * connection is closed gracefully: its streams finish, new streams use a
 * connection that trusts the new CA.
 */
import type * as http2 from "node:http2";
import { isIP } from "node:net";
import { Code, ConnectError } from "@connectrpc/connect";
import type {
  UpstreamCallOptions,
  UpstreamChannel,
  UpstreamTarget,
} from "../../backend/upstream.ts";
import { rawGrpcRuns, retryIfRefused } from "./grpc-call.ts";
import { connectShielded } from "./goaway-shield.ts";

export interface UpstreamPoolOptions {
  /** Ping an open connection this often (default 30 s). */
  pingIntervalMs?: number;
  /** Close a connection with no streams after this long (default 5 min). */
  idleTimeoutMs?: number;
}

interface Entry {
  caPem: string | undefined;
  session: http2.ClientHttp2Session;
  pinger: ReturnType<typeof setInterval>;
}

export class UpstreamPool implements UpstreamChannel {
  readonly #entries = new Map<string, Entry>();
  readonly #pingIntervalMs: number;
  readonly #idleTimeoutMs: number;
  #closed = false;
  /** Connections opened so far (tests check reuse with it). */
  connectionsOpened = 0;

  constructor(options: UpstreamPoolOptions = {}) {
    this.#pingIntervalMs = options.pingIntervalMs ?? 30_000;
    this.#idleTimeoutMs = options.idleTimeoutMs ?? 5 * 60_000;
  }

  runs(
    target: UpstreamTarget,
    path: string,
    request: Uint8Array,
    options: UpstreamCallOptions,
  ): AsyncGenerator<Uint8Array> {
    // Picks the connection anew on the retry: a session that just got a
    // GOAWAY is not used twice.
    return retryIfRefused(() =>
      rawGrpcRuns(this.#session(target), path, request, options)
    );
  }

  async close(): Promise<void> {
    this.#closed = true;
    const entries = [...this.#entries.values()];
    this.#entries.clear();
    await Promise.all(entries.map((e) => this.#retire(e)));
  }

  #session(target: UpstreamTarget): http2.ClientHttp2Session {
    if (this.#closed) {
      throw new ConnectError("upstream pool is closed", Code.Unavailable);
    }
    const { caPem, serverName } = target;
    const key = new URL(target.url).origin;
    const current = this.#entries.get(key);
    if (
      current && current.caPem === caPem && !current.session.closed &&
      !current.session.destroyed
    ) {
      return current.session;
    }
    if (current) {
      this.#entries.delete(key);
      void this.#retire(current);
    }
    // Shielded: a GOAWAY from the upstream would crash Deno (goaway-shield.ts).
    const session = connectShielded(target.url, {
      ca: caPem,
      // SNI carries names only; for an IP the certificate's IP SAN is checked.
      ...(serverName === undefined ? {} : {
        servername: isIP(serverName) ? undefined : serverName,
      }),
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
      if (this.#entries.get(key) === entry) this.#entries.delete(key);
    };
    // Failures reach the streams on the session; the entry just goes away.
    session.on("error", drop);
    session.on("close", drop);
    session.on("goaway", drop);
    session.setTimeout(this.#idleTimeoutMs, () => session.close());
    this.#entries.set(key, entry);
    return session;
  }

  #retire(entry: Entry): Promise<void> {
    clearInterval(entry.pinger);
    const s = entry.session;
    if (s.closed || s.destroyed) return Promise.resolve();
    return new Promise((resolve) => s.close(() => resolve()));
  }
}
