/**
 * A TCP proxy that breaks streams on purpose, for fault runs. It sits
 * between a client and the gateway, or between the gateway and its
 * upstream, relays bytes both ways, and — once armed with a plan — does one
 * thing to the downstream direction (server → client) when the byte count
 * since arming passes `at`:
 *
 *   reset      close both sockets at once (unread data makes the kernel RST)
 *   truncate   pass exactly `at` bytes (mid-frame, wherever that falls), then FIN both
 *   half-close pass `at` bytes, then FIN toward the client only and pass nothing more
 *   delay      hold the bytes for `ms`, then go on
 *   stall      stop passing bytes for `ms` (writes back up), then go on
 *   throttle   from there on (until re-armed), pass 512 bytes at a time with a
 *              pause of `ms` between
 *
 * The plan is the test's (chosen from a seed); the proxy only carries it
 * out, so a run replays from its seed.
 */
export type FaultKind =
  | "reset"
  | "truncate"
  | "half-close"
  | "delay"
  | "stall"
  | "throttle";

export const FAULT_KINDS: FaultKind[] = [
  "reset",
  "truncate",
  "half-close",
  "delay",
  "stall",
  "throttle",
];

/** Faults after which the stream can't be complete unless it already was. */
export const DESTRUCTIVE: ReadonlySet<FaultKind> = new Set([
  "reset",
  "truncate",
  "half-close",
]);

export interface FaultPlan {
  kind: FaultKind;
  /** Downstream bytes (since arming) before the fault. */
  at: number;
  /** delay / stall: how long; throttle: pause between slices. */
  ms: number;
}

export interface FaultProxy {
  port: number;
  /** Applies `plan` from now on (byte count starts at 0); undefined: pass all. */
  arm(plan: FaultPlan | undefined): void;
  /** Whether the armed fault has happened yet. */
  fired(): boolean;
  close(): Promise<void>;
}

interface Pair {
  client: Deno.TcpConn;
  server: Deno.TcpConn;
  closed: boolean;
}

export function startFaultProxy(target: { port: number }): FaultProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const pairs = new Set<Pair>();
  let plan: FaultPlan | undefined;
  let count = 0;
  let fired = false;

  const closePair = (p: Pair) => {
    if (p.closed) return;
    p.closed = true;
    pairs.delete(p);
    for (const c of [p.client, p.server]) {
      try {
        c.close();
      } catch { /* closed */ }
    }
  };

  /** client → server: passed as is. */
  async function upstreamPump(p: Pair) {
    const buf = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await p.client.read(buf);
        if (n === null) {
          await p.server.closeWrite().catch(() => {});
          return;
        }
        await writeAll(p.server, buf.subarray(0, n));
      }
    } catch {
      closePair(p);
    }
  }

  /** server → client: where faults happen. */
  async function downstreamPump(p: Pair) {
    const buf = new Uint8Array(64 * 1024);
    // The plan that throttles this connection. A throttle belongs to its
    // run: once the proxy is re-armed it ends. (It once outlived its run on
    // the gateway's long-lived upstream connection, and a later run's stall
    // plan set its pause: 512 bytes per 300–1000 ms, seen as a hang.)
    let throttledBy: FaultPlan | undefined;
    try {
      for (;;) {
        const n = await p.server.read(buf);
        if (n === null) {
          await p.client.closeWrite().catch(() => {});
          return;
        }
        let chunk = buf.subarray(0, n);
        const armed = plan;
        if (armed && !fired && count + chunk.length > armed.at) {
          const before = Math.max(0, armed.at - count);
          await writeAll(p.client, chunk.subarray(0, before));
          count += before;
          chunk = chunk.subarray(before);
          fired = true;
          switch (armed.kind) {
            case "reset":
              closePair(p);
              return;
            case "truncate":
              await p.client.closeWrite().catch(() => {});
              closePair(p);
              return;
            case "half-close":
              await p.client.closeWrite().catch(() => {});
              // Read on (so the server isn't reset), pass nothing.
              while ((await p.server.read(buf)) !== null) { /* dropped */ }
              return;
            case "delay":
            case "stall":
              await sleep(armed.ms);
              break;
            case "throttle":
              throttledBy = armed;
              break;
          }
        }
        count += chunk.length;
        if (throttledBy !== undefined && throttledBy === plan) {
          for (let i = 0; i < chunk.length; i += 512) {
            await writeAll(p.client, chunk.subarray(i, i + 512));
            await sleep(throttledBy.ms);
          }
        } else {
          await writeAll(p.client, chunk);
        }
      }
    } catch {
      closePair(p);
    }
  }

  (async () => {
    for await (const client of listener) {
      let server: Deno.TcpConn;
      try {
        server = await Deno.connect({
          hostname: "127.0.0.1",
          port: target.port,
        });
      } catch {
        client.close();
        continue;
      }
      const p: Pair = { client, server, closed: false };
      pairs.add(p);
      Promise.all([upstreamPump(p), downstreamPump(p)]).then(() =>
        closePair(p)
      );
    }
  })().catch(() => {});

  return {
    port: (listener.addr as Deno.NetAddr).port,
    arm(next) {
      plan = next;
      count = 0;
      fired = false;
    },
    fired: () => fired,
    close() {
      listener.close();
      for (const p of [...pairs]) closePair(p);
      return Promise.resolve();
    },
  };
}

async function writeAll(conn: Deno.TcpConn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) {
    at += await conn.write(bytes.subarray(at));
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
