/**
 * A test upstream that behaves like the csi-snapshot-metadata sidecar when
 * things go wrong: a healthy upstream (the embedded store served as gRPC,
 * or the sidecar stand-in of test-upstream.ts) behind sidecar-proxy.mjs,
 * which runs under Node.js and, per call, as planned: ends the stream with
 * DeadlineExceeded (by position, or after `capMs` like
 * --max-streaming-duration-min), another status, RST_STREAM, a connection
 * reset, GOAWAY, or a restart of the whole server. Cut points are seeded.
 */
import { ROOT } from "./run.ts";
import type { Rng } from "./images.ts";

export type FaultKind =
  | "deadline"
  | "status"
  | "rst"
  | "reset"
  | "goaway"
  | "restart";

export interface Fault {
  kind: FaultKind;
  /** Bytes of the response sent before the cut (rounded up to a message end for deadline and status). */
  at: number;
  /** Whole messages sent before the fault may strike (default 0). */
  minMessages?: number;
  /** grpc-status for "status". */
  code?: number;
}

/** One call as the proxy saw it end. */
export interface ProxyCall {
  call: number;
  /** When it arrived (epoch ms). */
  startedAt: number;
  path: string;
  startingOffset: number;
  /** Whether it carried an Authorization header. */
  authorized: boolean;
  /** The fault it got ("deadline" also for the time cap); null: none. */
  fault: FaultKind | null;
  bytes: number;
  messages: number;
}

export interface PlanOptions {
  faults?: Fault[];
  /** End every stream with DeadlineExceeded after this long. */
  capMs?: number;
  /** Pause before each message (a driver's pace). */
  intervalMs?: number;
  /** How long a restart keeps the port closed (default 50 ms). */
  restartMs?: number;
}

export interface SidecarUpstream {
  /** `http(s)://127.0.0.1:<port>`. */
  url: string;
  /** `127.0.0.1:<port>`, for a SnapshotMetadataService. */
  address: string;
  /** Calls since the last plan, as they ended. */
  calls: ProxyCall[];
  restarts: number;
  /** Sets the faults for the next calls (the k-th call gets fault k). */
  plan(options: PlanOptions): Promise<void>;
  /** Resolves once `n` calls since the last plan have ended. */
  settled(n: number): Promise<ProxyCall[]>;
  close(): Promise<void>;
}

export interface SidecarUpstreamOptions {
  /** The healthy upstream: `http://` (h2c) or `https://`. */
  upstreamUrl: string;
  /** PEM file of the upstream's CA (https). */
  upstreamCaPath?: string;
  /** Serve TLS with this certificate. */
  tls?: { certPath: string; keyPath: string };
}

export async function startSidecarUpstream(
  options: SidecarUpstreamOptions,
): Promise<SidecarUpstream> {
  const args = [`${ROOT}/tests/support/sidecar-proxy.mjs`, options.upstreamUrl];
  if (options.tls) {
    args.push(
      options.upstreamCaPath ?? "",
      options.tls.certPath,
      options.tls.keyPath,
    );
  } else if (options.upstreamCaPath) args.push(options.upstreamCaPath);
  const child = new Deno.Command("node", {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const writer = child.stdin.getWriter();
  const calls: ProxyCall[] = [];
  let restarts = 0;
  let acked = 0;
  const waiters = new Set<() => void>();
  const changed = () => {
    for (const w of [...waiters]) w();
  };
  const until = async (done: () => boolean, what: string) => {
    const giveUpAt = Date.now() + 20_000;
    while (!done()) {
      if (Date.now() > giveUpAt) throw new Error(`sidecar proxy: no ${what}`);
      await new Promise<void>((resolve) => {
        waiters.add(resolve);
        setTimeout(() => {
          waiters.delete(resolve);
          resolve();
        }, 1000);
      });
      if (exited) throw new Error("sidecar-proxy.mjs exited");
    }
  };
  let port = 0;
  let exited = false;
  const reading = (async () => {
    let buffer = "";
    for await (
      const chunk of child.stdout.pipeThrough(new TextDecoderStream())
    ) {
      buffer += chunk;
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = JSON.parse(buffer.slice(0, nl));
        buffer = buffer.slice(nl + 1);
        if ("port" in line) port = line.port;
        else if ("ack" in line) acked = line.ack;
        else if ("restarted" in line) restarts++;
        else calls.push(line);
        changed();
      }
    }
    exited = true;
    changed();
  })();
  let sent = 0;
  try {
    await until(() => port !== 0, "port");
  } catch (e) {
    child.kill();
    await reading;
    throw e;
  }
  const scheme = options.tls ? "https" : "http";
  return {
    url: `${scheme}://127.0.0.1:${port}`,
    address: `127.0.0.1:${port}`,
    calls,
    get restarts() {
      return restarts;
    },
    async plan(plan) {
      await writer.write(new TextEncoder().encode(JSON.stringify(plan) + "\n"));
      const want = ++sent;
      await until(() => acked >= want, "ack");
      calls.length = 0;
    },
    async settled(n) {
      await until(() => calls.length >= n, `${n} calls (got ${calls.length})`);
      return calls;
    },
    async close() {
      await writer.close().catch(() => {});
      await child.status;
      await reading;
    },
  };
}

/**
 * `count` seeded faults of the given kinds for one stream of about
 * `streamBytes` response bytes. Each cut falls in the first 1/(count+1) of
 * what the call has to send, so every planned fault strikes; the first
 * call sends a whole message first (a stream that relayed nothing is not
 * resumed, by design).
 */
export function seededFaults(
  rng: Rng,
  kinds: FaultKind[],
  count: number,
  streamBytes: number,
): Fault[] {
  const span = Math.max(1, Math.floor(streamBytes / (count + 1)));
  return Array.from({ length: count }, (_, i) => {
    const kind = kinds[rng.int(kinds.length)];
    return {
      kind,
      at: 1 + rng.int(span),
      minMessages: i === 0 ? 1 : 0,
      code: kind === "status" ? 14 : undefined,
    };
  });
}
