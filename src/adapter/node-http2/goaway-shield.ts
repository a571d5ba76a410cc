/**
 * Keeps the peer's HTTP/2 GOAWAY frames away from node:http2.
 *
 * Deno 2.9.6 aborts the whole process (SIGABRT, sometimes SIGSEGV) inside
 * nghttp2 when a node:http2 session that has completed a few dozen streams
 * receives a GOAWAY: `find_stream_on_goaway_func: Assertion
 * 'stream->closed_next == NULL' failed` (denoland/deno#36788). It happens
 * while nghttp2 parses the frame, before any JS runs, so no handler can
 * catch it; a plain TCP close of the same session is harmless. So the
 * socket handed to node:http2 is wrapped in a filter that drops inbound
 * GOAWAY frames and reports them instead: the owner then stops using the
 * session and ends the TCP connection once its streams are done, which is
 * what the GOAWAY asked for anyway.
 *
 * Frames (RFC 9113 §4.1) are a 9-byte header (24-bit length, type, flags,
 * 31-bit stream id) and a payload; a server first sees the client's 24-byte
 * connection preface. Only headers are read: payload bytes pass through
 * untouched, and a chunk with no GOAWAY in it is passed on as is.
 */
import * as http2 from "node:http2";
import * as net from "node:net";
import * as tls from "node:tls";
import { Duplex } from "node:stream";
import { Buffer } from "node:buffer";

const PREFACE_BYTES = 24;
const HEADER_BYTES = 9;
const GOAWAY = 0x7;
const PROTOCOL_ERROR = 0x1;
/** Of a GOAWAY's payload: stream id, code and the start of the debug data. */
const GOAWAY_KEPT_BYTES = 8 + 1024;

/** A GOAWAY frame's payload (RFC 9113 §6.8). */
export interface Goaway {
  lastStreamId: number;
  errorCode: number;
  debugData: Uint8Array;
}

export interface GoawayShieldOptions {
  /** The server side of the connection: inbound bytes start with the preface. */
  server: boolean;
  /**
   * Called for the first GOAWAY, right after the frames before it were
   * pushed to node:http2 (which may not have acted on them yet).
   */
  onGoaway: (goaway: Goaway) => void;
}

/**
 * A socket for node:http2 (`server.emit("connection", …)` or
 * `http2.connect`'s `createConnection`) that relays `raw` minus the peer's
 * GOAWAY frames. Ending or destroying either side ends the other.
 */
export function shieldGoaway(
  raw: Duplex,
  options: GoawayShieldOptions,
): Duplex {
  const filter = new GoawayFilter(options.server);
  let notified = false;
  const shielded = new Duplex({
    read() {
      raw.resume();
    },
    write(chunk, _encoding, callback) {
      raw.write(chunk, callback);
    },
    final(callback) {
      raw.end(callback);
    },
    destroy(error, callback) {
      raw.destroy();
      callback(error);
    },
  });
  raw.on("data", (chunk: Uint8Array) => {
    const { pieces, goaways } = filter.take(chunk);
    for (const p of pieces) {
      if (!shielded.push(p)) raw.pause();
    }
    if (goaways.length > 0 && !notified) {
      notified = true;
      options.onGoaway(goaways[0]);
    }
  });
  raw.once("end", () => shielded.push(null));
  raw.once("error", (e) => shielded.destroy(e));
  raw.once("close", () => shielded.destroy());
  // node:http2 waits for these on a socket still connecting.
  for (const event of ["connect", "secureConnect"]) {
    raw.once(event, () => shielded.emit(event));
  }
  mirrorSocketState(shielded, raw);
  return shielded;
}

/**
 * `http2.connect` over a shielded socket. The server's GOAWAY still shows as
 * the session's 'goaway' event; the session then takes no new streams and
 * closes once its streams are done (a GOAWAY we send is harmless). Streams
 * the server never took (ids above its last one, or not yet sent) are reset
 * with REFUSED_STREAM, as node:http2 would: safe to retry elsewhere.
 */
export function connectShielded(
  authority: string,
  options: http2.SecureClientSessionOptions = {},
): http2.ClientHttp2Session {
  const url = new URL(authority);
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const secure = url.protocol === "https:";
  const port = Number(url.port) || (secure ? 443 : 80);
  const open = new Set<http2.ClientHttp2Stream>();
  const onGoaway = ({ errorCode, lastStreamId, debugData }: Goaway) => {
    if (session.closed || session.destroyed) return;
    session.emit("goaway", errorCode, lastStreamId, Buffer.from(debugData));
    for (const stream of open) {
      if (stream.id === undefined || stream.id > lastStreamId) {
        stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      }
    }
    session.close();
  };
  const session: http2.ClientHttp2Session = http2.connect(authority, {
    ...options,
    createConnection: () =>
      shieldGoaway(
        secure
          ? tls.connect({
            ...options,
            host,
            port,
            ALPNProtocols: ["h2"],
          } as tls.ConnectionOptions)
          : net.connect({ host, port }),
        { server: false, onGoaway },
      ),
  });
  // node:http2 keeps no list of a session's streams we could read.
  const request = session.request.bind(session);
  session.request = (...args: Parameters<typeof request>) => {
    const stream = request(...args);
    open.add(stream);
    stream.once("close", () => open.delete(stream));
    return stream;
  };
  return session;
}

/** Connection state node:http2 reads off its socket, taken from `raw`. */
function mirrorSocketState(shielded: Duplex, raw: Duplex): void {
  const socketLike = raw as Duplex & Record<string, unknown>;
  for (
    const key of [
      "connecting",
      "remoteAddress",
      "remotePort",
      "remoteFamily",
      "localAddress",
      "localPort",
      "encrypted",
      "alpnProtocol",
      "servername",
    ]
  ) {
    Object.defineProperty(shielded, key, {
      get: () => socketLike[key],
      configurable: true,
    });
  }
  for (
    const method of ["setNoDelay", "setKeepAlive", "setTimeout", "ref", "unref"]
  ) {
    const fn = socketLike[method];
    if (typeof fn !== "function") continue;
    Object.defineProperty(shielded, method, {
      value: (...args: unknown[]) => {
        fn.apply(raw, args);
        return shielded;
      },
      configurable: true,
    });
  }
}

/** Splits inbound bytes into what node:http2 may see and whether a GOAWAY came. */
export class GoawayFilter {
  #prefaceLeft: number;
  #payloadLeft = 0;
  #dropping = false;
  readonly #header = new Uint8Array(HEADER_BYTES);
  #headerFill = 0;
  #goaway = new Uint8Array(0);
  #goawayFill = 0;

  constructor(server: boolean) {
    this.#prefaceLeft = server ? PREFACE_BYTES : 0;
  }

  take(chunk: Uint8Array): { pieces: Uint8Array[]; goaways: Goaway[] } {
    const pieces: Uint8Array[] = [];
    const goaways: Goaway[] = [];
    let keep = 0; // start of the run of bytes to pass on
    let i = 0;
    const flush = (end: number) => {
      if (end > keep) pieces.push(chunk.subarray(keep, end));
    };
    while (i < chunk.length) {
      if (this.#prefaceLeft > 0) {
        const n = Math.min(this.#prefaceLeft, chunk.length - i);
        this.#prefaceLeft -= n;
        i += n;
      } else if (this.#payloadLeft > 0) {
        const n = Math.min(this.#payloadLeft, chunk.length - i);
        this.#payloadLeft -= n;
        if (this.#dropping) {
          flush(i);
          keep = i + n;
          // Kept up to the cap: only the start matters to anyone.
          const room = this.#goaway.length - this.#goawayFill;
          const take = Math.min(n, room);
          this.#goaway.set(chunk.subarray(i, i + take), this.#goawayFill);
          this.#goawayFill += take;
          if (this.#payloadLeft === 0) goaways.push(this.#endGoaway());
        }
        i += n;
      } else if (this.#headerFill === 0 && chunk.length - i >= HEADER_BYTES) {
        // The common case: the whole header is in this chunk.
        if (this.#startFrame(chunk, i)) {
          flush(i);
          keep = i + HEADER_BYTES;
        }
        i += HEADER_BYTES;
      } else {
        // A header split across chunks: held back until it is whole.
        flush(i);
        const n = Math.min(HEADER_BYTES - this.#headerFill, chunk.length - i);
        this.#header.set(chunk.subarray(i, i + n), this.#headerFill);
        this.#headerFill += n;
        i += n;
        keep = i;
        if (this.#headerFill === HEADER_BYTES) {
          this.#headerFill = 0;
          if (!this.#startFrame(this.#header, 0)) {
            pieces.push(this.#header.slice());
          }
        }
      }
      if (this.#dropping && this.#payloadLeft === 0 && this.#headerFill === 0) {
        goaways.push(this.#endGoaway());
      }
    }
    flush(chunk.length);
    return { pieces, goaways };
  }

  /** Reads a frame header; true when the frame is a GOAWAY to drop. */
  #startFrame(bytes: Uint8Array, at: number): boolean {
    this.#payloadLeft = (bytes[at] << 16) | (bytes[at + 1] << 8) |
      bytes[at + 2];
    this.#dropping = bytes[at + 3] === GOAWAY;
    if (this.#dropping) {
      this.#goaway = new Uint8Array(
        Math.min(this.#payloadLeft, GOAWAY_KEPT_BYTES),
      );
      this.#goawayFill = 0;
    }
    return this.#dropping;
  }

  #endGoaway(): Goaway {
    this.#dropping = false;
    const p = this.#goaway;
    const view = new DataView(p.buffer, p.byteOffset, p.byteLength);
    return p.length < 8
      ? { lastStreamId: 0, errorCode: PROTOCOL_ERROR, debugData: p }
      : {
        lastStreamId: view.getUint32(0) & 0x7fffffff,
        errorCode: view.getUint32(4),
        debugData: p.subarray(8),
      };
  }
}
