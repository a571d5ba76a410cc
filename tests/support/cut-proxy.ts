/**
 * A TCP proxy between two tiers that can cut a connection mid-stream: armed
 * with `cutAfter(n)`, it forwards n more response bytes (upstream → client)
 * and then closes both sides of the connection carrying them, as a dropped
 * link or a restarted ingress would. Everything else passes untouched.
 */
export interface CutProxy {
  /** `http://127.0.0.1:<port>`: point the lower tier's client here. */
  url: string;
  /** Cuts after `bytes` more response bytes; resolves once it has cut. */
  cutAfter(bytes: number): Promise<void>;
  /** Connections accepted so far. */
  readonly connections: number;
  close(): Promise<void>;
}

export function startCutProxy(targetPort: number): CutProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  const pumps = new Set<Promise<void>>();
  let connections = 0;
  let armed: { left: number; done: () => void } | undefined;

  const closeQuietly = (c: Deno.Conn) => {
    open.delete(c);
    try {
      c.close();
    } catch { /* already closed */ }
  };

  async function pipe(
    from: Deno.Conn,
    to: Deno.Conn,
    responses: boolean,
    both: () => void,
  ) {
    const buf = new Uint8Array(16 * 1024);
    try {
      for (;;) {
        const n = await from.read(buf);
        if (n === null) break;
        let chunk = buf.subarray(0, n);
        const cut = responses ? armed : undefined;
        if (cut && chunk.length >= cut.left) {
          chunk = chunk.subarray(0, cut.left);
          armed = undefined;
          if (chunk.length > 0) await writeAll(to, chunk);
          both();
          cut.done();
          return;
        }
        if (cut) cut.left -= chunk.length;
        await writeAll(to, chunk);
      }
    } catch {
      // Either side went away; the other follows.
    }
    both();
  }

  const accepting = (async () => {
    for await (const client of listener) {
      connections++;
      open.add(client);
      let upstream: Deno.Conn;
      try {
        upstream = await Deno.connect({
          hostname: "127.0.0.1",
          port: targetPort,
        });
      } catch {
        closeQuietly(client);
        continue;
      }
      open.add(upstream);
      const both = () => {
        closeQuietly(client);
        closeQuietly(upstream);
      };
      for (
        const pump of [
          pipe(client, upstream, false, both),
          pipe(upstream, client, true, both),
        ]
      ) {
        pumps.add(pump);
        pump.finally(() => pumps.delete(pump));
      }
    }
  })().catch(() => {});

  return {
    url: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    get connections() {
      return connections;
    },
    cutAfter(bytes) {
      return new Promise((resolve) => {
        armed = { left: bytes, done: resolve };
      });
    },
    async close() {
      listener.close();
      for (const c of [...open]) closeQuietly(c);
      await accepting;
      await Promise.all(pumps);
    },
  };
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let written = 0;
  while (written < data.length) {
    written += await conn.write(data.subarray(written));
  }
}
