/**
 * HTTP/1.1 by hand over TCP, for requests no well-behaved client sends:
 * bodies shorter than their Content-Length, half-closes, broken chunked
 * encoding, bytes dribbled one at a time. Parses whatever comes back
 * (status, headers, body, chunked or not) and says whether the server
 * closed the connection.
 */
export interface RawReply {
  /** 0 when the server sent nothing parseable. */
  status: number;
  headers: Headers;
  body: Uint8Array;
  /** The server closed the connection (EOF or reset) within the wait. */
  closed: boolean;
  /** Nothing at all came back before the close or the wait ended. */
  empty: boolean;
}

export interface RawOptions {
  /** Half-close (FIN) after writing. */
  halfClose?: boolean;
  /** Give up waiting for the reply after this (ms). */
  waitMs?: number;
  /** Written after `request`, one byte per `dribbleMs` (slow-loris). */
  dribble?: { bytes: Uint8Array; everyMs: number };
  /** Keep reading after a whole response, until the server closes. */
  untilClose?: boolean;
}

const enc = new TextEncoder();

export function httpRequest(
  method: string,
  path: string,
  headers: Record<string, string>,
  body: Uint8Array | string = new Uint8Array(0),
  contentLength?: number,
): Uint8Array {
  const b = typeof body === "string" ? enc.encode(body) : body;
  let head = `${method} ${path} HTTP/1.1\r\nhost: gateway\r\n`;
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
  if (!("transfer-encoding" in headers)) {
    head += `content-length: ${contentLength ?? b.length}\r\n`;
  }
  head += "\r\n";
  const h = enc.encode(head);
  const out = new Uint8Array(h.length + b.length);
  out.set(h);
  out.set(b, h.length);
  return out;
}

export async function rawExchange(
  port: number,
  request: Uint8Array,
  options: RawOptions = {},
): Promise<RawReply> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const received: Uint8Array[] = [];
  let closed = false;
  let gaveUp = false;
  let size = 0;
  const reading = (async () => {
    const buf = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        received.push(buf.slice(0, n));
        size += n;
        // keep-alive: a whole response is the end of the exchange
        if (!options.untilClose && complete(concat(received))) return;
      }
      closed = true;
    } catch {
      closed = !gaveUp;
    }
  })();
  const timer = setTimeout(() => {
    gaveUp = true;
    try {
      conn.close();
    } catch { /* closed */ }
  }, options.waitMs ?? 15_000);
  try {
    await conn.write(request);
    if (options.dribble) {
      for (const byte of options.dribble.bytes) {
        await new Promise((r) => setTimeout(r, options.dribble!.everyMs));
        if (closed || gaveUp) break;
        await conn.write(new Uint8Array([byte]));
      }
    }
    if (options.halfClose) await conn.closeWrite();
  } catch {
    // The server may close or reset before we are done writing.
  }
  await reading;
  clearTimeout(timer);
  try {
    conn.close();
  } catch { /* closed */ }
  const reply = parse(concat(received));
  return { ...reply, closed, empty: size === 0 };
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function headerEnd(bytes: Uint8Array): number {
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (
      bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 &&
      bytes[i + 3] === 10
    ) return i;
  }
  return -1;
}

/** Whether `bytes` hold one whole response. */
function complete(bytes: Uint8Array): boolean {
  const end = headerEnd(bytes);
  if (end < 0) return false;
  const { headers } = parseHead(bytes.subarray(0, end));
  const rest = bytes.subarray(end + 4);
  const length = headers.get("content-length");
  if (length !== null) return rest.length >= Number(length);
  if (headers.get("transfer-encoding")?.includes("chunked")) {
    return dechunk(rest).done;
  }
  return false;
}

function parseHead(head: Uint8Array): { status: number; headers: Headers } {
  const lines = new TextDecoder().decode(head).split("\r\n");
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0])?.[1] ?? 0);
  const headers = new Headers();
  for (const line of lines.slice(1)) {
    const i = line.indexOf(":");
    if (i > 0) {
      try {
        headers.append(line.slice(0, i).trim(), line.slice(i + 1).trim());
      } catch { /* not a valid header */ }
    }
  }
  return { status, headers };
}

function dechunk(bytes: Uint8Array): { body: Uint8Array; done: boolean } {
  const parts: Uint8Array[] = [];
  let pos = 0;
  for (;;) {
    let lineEnd = -1;
    for (let i = pos; i + 1 < bytes.length; i++) {
      if (bytes[i] === 13 && bytes[i + 1] === 10) {
        lineEnd = i;
        break;
      }
    }
    if (lineEnd < 0) return { body: concat(parts), done: false };
    const size = parseInt(
      new TextDecoder().decode(bytes.subarray(pos, lineEnd)),
      16,
    );
    if (!(size >= 0)) return { body: concat(parts), done: false };
    if (size === 0) return { body: concat(parts), done: true };
    const start = lineEnd + 2;
    if (start + size > bytes.length) {
      parts.push(bytes.subarray(start));
      return { body: concat(parts), done: false };
    }
    parts.push(bytes.subarray(start, start + size));
    pos = start + size + 2;
  }
}

function parse(
  bytes: Uint8Array,
): { status: number; headers: Headers; body: Uint8Array } {
  const end = headerEnd(bytes);
  if (end < 0) return { status: 0, headers: new Headers(), body: bytes };
  const { status, headers } = parseHead(bytes.subarray(0, end));
  const rest = bytes.subarray(end + 4);
  const body = headers.get("transfer-encoding")?.includes("chunked")
    ? dechunk(rest).body
    : rest;
  return { status, headers, body };
}

/** An enveloped message (flags, 4-byte big-endian length, payload). */
export function envelope(payload: Uint8Array, flags = 0): Uint8Array {
  const out = new Uint8Array(5 + payload.length);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, payload.length);
  out.set(payload, 5);
  return out;
}

/**
 * The error code a binary or JSON reply carries, wherever its protocol puts
 * it: a Connect end-stream frame or unary JSON body, a gRPC-Web trailer
 * frame, or an HTTP/JSON error body. "ok" for a stream that ended well;
 * undefined when the reply carries no recognisable status at all.
 */
export function replyCode(reply: RawReply): string | undefined {
  const ct = reply.headers.get("content-type") ?? "";
  const text = new TextDecoder().decode(reply.body);
  if (ct.startsWith("application/connect+")) {
    const last = lastEnvelope(reply.body);
    if (!last || (last.flags & 2) === 0) return undefined;
    const end = JSON.parse(new TextDecoder().decode(last.payload));
    return end.error?.code ?? "ok";
  }
  if (ct.startsWith("application/grpc-web")) {
    const last = lastEnvelope(reply.body);
    if (!last || (last.flags & 0x80) === 0) return undefined;
    const trailer = new TextDecoder().decode(last.payload);
    const status = /grpc-status:\s*(\d+)/i.exec(trailer)?.[1];
    return status === undefined ? undefined : GRPC_CODES[Number(status)];
  }
  if (
    ct.startsWith("application/json") || ct.startsWith("application/problem")
  ) {
    if (reply.status === 200 || reply.status === 201) return "ok";
    try {
      return JSON.parse(text).code;
    } catch {
      return undefined;
    }
  }
  if (reply.status >= 200 && reply.status < 300) return "ok";
  return undefined;
}

function lastEnvelope(
  body: Uint8Array,
): { flags: number; payload: Uint8Array } | undefined {
  let pos = 0;
  let last;
  while (pos + 5 <= body.length) {
    const len = new DataView(body.buffer, body.byteOffset + pos + 1, 4)
      .getUint32(0);
    if (pos + 5 + len > body.length) return undefined;
    last = { flags: body[pos], payload: body.subarray(pos + 5, pos + 5 + len) };
    pos += 5 + len;
  }
  return pos === body.length ? last : undefined;
}

export const GRPC_CODES = [
  "ok",
  "canceled",
  "unknown",
  "invalid_argument",
  "deadline_exceeded",
  "not_found",
  "already_exists",
  "permission_denied",
  "resource_exhausted",
  "failed_precondition",
  "aborted",
  "out_of_range",
  "unimplemented",
  "internal",
  "unavailable",
  "data_loss",
  "unauthenticated",
];

/**
 * A streaming HTTP/1.1 exchange over its own TCP connection: the response
 * body (de-chunked) goes to `onBody` as it arrives; `onBody` returns false
 * to abandon the response, which closes the socket at once — the plainest
 * way a client can go away. Resolves with the status once the response
 * ended, was abandoned, or `timeoutMs` passed (then also abandoned).
 */
export async function streamExchange(
  port: number,
  request: Uint8Array,
  onBody: (chunk: Uint8Array, status: number) => boolean,
  timeoutMs: number,
): Promise<{ status: number; abandoned: boolean; complete: boolean }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let abandoned = false;
  const timer = setTimeout(() => {
    abandoned = true;
    try {
      conn.close();
    } catch { /* closed */ }
  }, timeoutMs);
  let status = 0, complete = false;
  try {
    await conn.write(request);
    let head: Uint8Array = new Uint8Array(0);
    const buf = new Uint8Array(64 * 1024);
    let body: Dechunker | undefined;
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      let chunk: Uint8Array = buf.subarray(0, n);
      if (!body) {
        head = concat([head, chunk]);
        const end = headerEnd(head);
        if (end < 0) continue;
        const parsed = parseHead(head.subarray(0, end));
        status = parsed.status;
        body = new Dechunker(
          parsed.headers.get("transfer-encoding")?.includes("chunked") ??
            false,
          Number(parsed.headers.get("content-length") ?? -1),
        );
        chunk = head.subarray(end + 4);
      }
      const data = body.push(chunk);
      if (data.length > 0 && !onBody(data, status)) {
        abandoned = true;
        break;
      }
      if (body.done) {
        complete = true;
        break;
      }
    }
  } catch {
    // reset, or closed by the timer
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed */ }
  }
  return { status, abandoned, complete };
}

/** Incremental chunked (or Content-Length) body decoding. */
class Dechunker {
  #pending = new Uint8Array(0);
  #left = 0; // bytes left in the current chunk (+2 for its CRLF), chunked only
  #inChunk = false;
  done = false;
  constructor(readonly chunked: boolean, private length: number) {}

  push(bytes: Uint8Array): Uint8Array {
    if (!this.chunked) {
      if (this.length >= 0) {
        this.length -= bytes.length;
        if (this.length <= 0) this.done = true;
      }
      return bytes;
    }
    let data = concat([this.#pending, bytes]);
    const out: Uint8Array[] = [];
    for (;;) {
      if (this.#inChunk) {
        const take = Math.min(this.#left, data.length);
        const payload = Math.max(0, Math.min(take, this.#left - 2));
        out.push(data.subarray(0, payload));
        this.#left -= take;
        data = data.subarray(take);
        if (this.#left > 0) break;
        this.#inChunk = false;
        continue;
      }
      let eol = -1;
      for (let i = 0; i + 1 < data.length; i++) {
        if (data[i] === 13 && data[i + 1] === 10) {
          eol = i;
          break;
        }
      }
      if (eol < 0) break;
      const size = parseInt(
        new TextDecoder().decode(data.subarray(0, eol)),
        16,
      );
      data = data.subarray(eol + 2);
      if (size === 0) {
        this.done = true;
        break;
      }
      this.#inChunk = true;
      this.#left = size + 2;
    }
    this.#pending = data.slice();
    return concat(out);
  }
}
