/**
 * Runs of enveloped messages. gRPC, gRPC-Web and Connect streams frame each
 * message the same way (1 byte flags, 4 bytes big-endian length, payload),
 * so a relay can take whole runs of the upstream's envelopes — as many as
 * have arrived — check them in place and forward them with one write,
 * instead of one copy, one promise and one write per message.
 */

/** Thrown for an envelope a stream must not carry (too large, flagged). */
export class EnvelopeError extends Error {
  override name = "EnvelopeError";
  constructor(message: string, readonly tooLarge = false) {
    super(message);
  }
}

/** Length of the envelope whose header starts at `pos`. */
export function envelopeLength(buf: Uint8Array, pos: number): number {
  return ((buf[pos + 1] << 24) >>> 0) + (buf[pos + 2] << 16) +
    (buf[pos + 3] << 8) + buf[pos + 4];
}

/**
 * Calls `visit(start, end)` for each message payload in a run of complete
 * envelopes, `run[start, end)`. The run must hold whole envelopes only.
 */
export function forEachEnvelope(
  run: Uint8Array,
  visit: (flags: number, start: number, end: number) => void,
): void {
  let pos = 0;
  while (pos < run.length) {
    const end = pos + 5 + envelopeLength(run, pos);
    visit(run[pos], pos + 5, end);
    pos = end;
  }
}

/** The messages (payloads) of a stream of runs, one by one. */
export async function* messagesOfRuns(
  runs: AsyncIterable<Uint8Array>,
): AsyncGenerator<Uint8Array> {
  for await (const run of runs) {
    let pos = 0;
    while (pos < run.length) {
      const end = pos + 5 + envelopeLength(run, pos);
      yield run.subarray(pos + 5, end);
      pos = end;
    }
  }
}

/**
 * A source that hands out its messages as runs of complete envelopes, all
 * with flags 0 (uncompressed data). A backend stream may offer this next to
 * its per-message iterator; a consumer uses one or the other, once.
 */
export interface EnvelopeRunSource {
  envelopeRuns(): AsyncIterable<Uint8Array>;
}

export function hasEnvelopeRuns(
  stream: object,
): stream is EnvelopeRunSource {
  return typeof (stream as Partial<EnvelopeRunSource>).envelopeRuns ===
    "function";
}

/**
 * Collects received chunks and tells how many bytes at the front form whole
 * envelopes. `take()` hands those out as one Uint8Array: the chunk itself
 * when it is exactly that, else one copy. The partial envelope at the end
 * stays. Envelope headers are checked as they complete: flags must be 0
 * (unless `allowFlags`) and lengths at most `maxBytes`.
 */
export class EnvelopeQueue {
  #chunks: Uint8Array[] = [];
  /** Bytes queued. */
  #size = 0;
  /** Bytes at the front that form whole envelopes. */
  #complete = 0;
  /** End of the envelope whose header has been read, or -1. */
  #pendingEnd = -1;

  constructor(
    readonly maxBytes: number,
    readonly allowFlags = false,
  ) {}

  /** Bytes queued, complete or not. */
  get size(): number {
    return this.#size;
  }

  /** Bytes ready for `take()`. */
  get complete(): number {
    return this.#complete;
  }

  /** Queues a chunk; throws EnvelopeError for a header it must refuse. */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#size += chunk.length;
    for (;;) {
      if (this.#pendingEnd < 0) {
        const at = this.#complete;
        if (this.#size - at < 5) return;
        const flags = this.#byteAt(at);
        const len = ((this.#byteAt(at + 1) << 24) >>> 0) +
          (this.#byteAt(at + 2) << 16) + (this.#byteAt(at + 3) << 8) +
          this.#byteAt(at + 4);
        if (flags !== 0 && !this.allowFlags) {
          throw new EnvelopeError(`message with flags ${flags}`);
        }
        if (len > this.maxBytes) {
          throw new EnvelopeError(
            `message of ${len} bytes exceeds ${this.maxBytes}`,
            true,
          );
        }
        this.#pendingEnd = at + 5 + len;
      }
      if (this.#pendingEnd > this.#size) return;
      this.#complete = this.#pendingEnd;
      this.#pendingEnd = -1;
    }
  }

  /** Whole envelopes queued so far, as one run; empty if none. */
  take(): Uint8Array {
    const n = this.#complete;
    if (n === 0) return EMPTY;
    const chunks = this.#chunks;
    let run: Uint8Array;
    let used = 0; // chunks consumed entirely
    if (chunks[0].length >= n) {
      run = chunks[0].subarray(0, n);
      used = chunks[0].length === n ? 1 : 0;
      if (used === 0) chunks[0] = chunks[0].subarray(n);
    } else {
      run = new Uint8Array(n);
      let pos = 0;
      while (pos < n) {
        const c = chunks[used];
        const want = n - pos;
        if (c.length <= want) {
          run.set(c, pos);
          pos += c.length;
          used++;
        } else {
          run.set(c.subarray(0, want), pos);
          chunks[used] = c.subarray(want);
          pos = n;
        }
      }
    }
    if (used > 0) chunks.splice(0, used);
    this.#size -= n;
    this.#complete = 0;
    if (this.#pendingEnd >= 0) this.#pendingEnd -= n;
    return run;
  }

  #byteAt(abs: number): number {
    for (const c of this.#chunks) {
      if (abs < c.length) return c[abs];
      abs -= c.length;
    }
    throw new RangeError("byte beyond the queue");
  }
}

const EMPTY = new Uint8Array(0);
