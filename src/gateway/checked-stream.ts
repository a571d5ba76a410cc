/**
 * Wraps an upstream message stream, checks the invariants the API promises
 * (spec §2) and keeps the progress that end and error records report: a
 * gateway that relays a broken stream as if it were fine hides data loss.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { envelopeLength, hasEnvelopeRuns } from "../wire/envelopes.ts";
import {
  decodeMetadataMessage,
  FIXED_LENGTH,
  type MessageSummary,
  type MetadataMessage,
  scanMetadataMessage,
  VARIABLE_LENGTH,
  WireFormatError,
} from "../wire/metadata-message.ts";

/**
 * One message that passed the checks: the upstream bytes, and their decoded form on
 * demand (binary fronts forward the bytes and never pay for decoding).
 */
export interface CheckedMessage {
  bytes: Uint8Array;
  readonly message: MetadataMessage;
}

class Checked implements CheckedMessage {
  #message?: MetadataMessage;
  constructor(readonly bytes: Uint8Array) {}
  get message(): MetadataMessage {
    return this.#message ??= decodeMetadataMessage(this.bytes);
  }
}

/** Where a stream has got to; fronts report it in end and error records. */
export interface StreamProgress {
  messages: number;
  tuples: number;
  /** Sum of size_bytes of all tuples sent. */
  coveredBytes: number;
  /**
   * Where to resume: the end of the last tuple sent, or the requested
   * starting offset before any tuple.
   */
  nextOffset: number;
  blockMetadataType: number;
  volumeCapacityBytes: number;
}

function broken(detail: string): ConnectError {
  return new ConnectError(
    `upstream stream broke the API's invariants: ${detail}`,
    Code.Internal,
  );
}

/**
 * Told once how a stream ended: no error when it completed, else why not
 * (Canceled when the consumer stopped reading).
 */
export type StreamFinished = (
  progress: StreamProgress,
  error?: ConnectError,
) => void;

/** Marks a stream its consumer stopped reading (return() or break). */
const ABANDONED = Symbol("abandoned");

export class CheckedStream implements AsyncIterable<CheckedMessage> {
  readonly progress: StreamProgress;
  #fixedSize = 0;
  #started = false;
  #finished = false;

  constructor(
    private readonly upstream: AsyncIterable<Uint8Array>,
    readonly startingOffset: number,
    /** The call's signal: an upstream that ends after it aborted was cut. */
    private readonly signal?: AbortSignal,
    private readonly onFinish?: StreamFinished,
  ) {
    this.progress = {
      messages: 0,
      tuples: 0,
      coveredBytes: 0,
      nextOffset: startingOffset,
      blockMetadataType: 0,
      volumeCapacityBytes: 0,
    };
  }

  [Symbol.asyncIterator](): AsyncIterator<CheckedMessage> {
    return this.#finishing(this.#messages());
  }

  async *#messages(): AsyncGenerator<CheckedMessage> {
    this.#started = true;
    let outcome: unknown = ABANDONED;
    try {
      for await (const bytes of this.upstream) {
        this.#check(bytes, 0, bytes.length);
        yield new Checked(bytes);
      }
      this.#refuseCutEnd();
      outcome = undefined;
    } catch (e) {
      outcome = this.#cause(e);
      throw outcome;
    } finally {
      this.#finish(outcome);
    }
  }

  /**
   * The same stream as runs of whole envelopes (flags 0) — what binary fronts
   * write as is. A relay upstream's runs are checked in place and passed on
   * untouched; other upstreams get one envelope per message. If a message
   * breaks the invariants, the run's good messages before it come first,
   * then the error, as on the per-message path. Use this or the iterator,
   * not both.
   */
  envelopeRuns(): AsyncGenerator<Uint8Array> {
    return this.#finishing(this.#runs());
  }

  async *#runs(): AsyncGenerator<Uint8Array> {
    this.#started = true;
    let outcome: unknown = ABANDONED;
    try {
      yield* this.#checkedRuns();
      outcome = undefined;
    } catch (e) {
      outcome = this.#cause(e);
      throw outcome;
    } finally {
      this.#finish(outcome);
    }
  }

  async *#checkedRuns(): AsyncGenerator<Uint8Array> {
    if (!hasEnvelopeRuns(this.upstream)) {
      for await (const bytes of this.upstream) {
        this.#check(bytes, 0, bytes.length);
        yield encodeEnvelope(0, bytes);
      }
      this.#refuseCutEnd();
      return;
    }
    for await (const run of this.upstream.envelopeRuns()) {
      let pos = 0, failure: unknown;
      try {
        while (pos < run.length) {
          const end = pos + 5 + envelopeLength(run, pos);
          this.#check(run, pos + 5, end);
          pos = end;
        }
      } catch (e) {
        failure = e;
      }
      if (pos > 0) yield pos === run.length ? run : run.subarray(0, pos);
      if (failure !== undefined) throw failure;
    }
    this.#refuseCutEnd();
  }

  /**
   * A generator returned before its first next() never runs its body, so
   * its finally can't report the end: report it here.
   */
  #finishing<T>(generator: AsyncGenerator<T>): AsyncGenerator<T> {
    if (!this.onFinish) return generator;
    const stop = generator.return.bind(generator);
    generator.return = (value) => {
      if (!this.#started) this.#finish(ABANDONED);
      return stop(value);
    };
    return generator;
  }

  /**
   * A backend cancelled by the call's own abort (deadline, shutdown) reports
   * just "canceled"; the client is better told why the call was aborted.
   */
  #cause(e: unknown): unknown {
    const reason = this.signal?.aborted ? this.signal.reason : undefined;
    const cancellation = !(e instanceof ConnectError) ||
      e.code === Code.Canceled;
    return reason instanceof ConnectError && cancellation ? reason : e;
  }

  /** Tells onFinish, once, how the stream ended. */
  #finish(outcome: unknown): void {
    if (this.#finished || !this.onFinish) return;
    this.#finished = true;
    let error: ConnectError | undefined;
    if (outcome === ABANDONED) {
      // A consumer that stopped because the call was aborted (deadline,
      // shutdown) reports that reason.
      const reason = this.signal?.aborted ? this.signal.reason : undefined;
      error = reason instanceof ConnectError ? reason : new ConnectError(
        "the consumer stopped reading before the stream ended",
        Code.Canceled,
      );
    } else if (outcome !== undefined) {
      error = ConnectError.from(outcome);
    }
    this.onFinish(this.progress, error);
  }

  /**
   * A backend may stop quietly when its call is aborted (client gone,
   * deadline, shutdown). Such an end is not "all metadata sent": say why
   * instead, so no front reports a cut stream as complete.
   */
  #refuseCutEnd(): void {
    if (!this.signal?.aborted) return;
    const reason = this.signal.reason;
    throw reason instanceof ConnectError ? reason : new ConnectError(
      "the call was aborted before the stream ended",
      Code.Canceled,
    );
  }

  // Per-message scan state, kept on the instance so the visitor is one
  // closure per stream rather than one per message.
  #end = 0;
  #first = true;
  #covered = 0;
  #error?: ConnectError;
  readonly #visit = (off: number, size: number): void => {
    if (this.#error) return;
    if (size <= 0) {
      this.#error = broken(`tuple at ${off} has size ${size}`);
      return;
    }
    // Only FIXED_LENGTH needs equal sizes; the type is judged after the scan.
    if (this.#fixedSize === 0) this.#fixedSize = size;
    else if (size !== this.#fixedSize && this.#oddSizeAt < 0) {
      this.#oddSizeAt = off;
      this.#oddSize = size;
    }
    // The first tuple may start before the starting offset, but must end after it;
    // every later tuple starts at or after the previous end.
    if (this.#first ? off + size <= this.#end : off < this.#end) {
      this.#error = broken(
        `tuple [${off}, +${size}) is out of order (previous end ${this.#end})`,
      );
      return;
    }
    this.#first = false;
    this.#end = off + size;
    this.#covered += size;
  };
  #oddSizeAt = -1;
  #oddSize = 0;

  /** Checks one message, `bytes[start, end)`, without decoding it. */
  #check(bytes: Uint8Array, start: number, end: number): void {
    const p = this.progress;
    this.#end = p.nextOffset;
    this.#first = p.tuples === 0;
    this.#covered = 0;
    let m: MessageSummary;
    try {
      m = scanMetadataMessage(bytes, this.#visit, start, end);
    } catch (e) {
      if (e instanceof WireFormatError) throw broken(e.message);
      throw e;
    }
    if (this.#error) throw this.#error;
    if (
      m.blockMetadataType !== FIXED_LENGTH &&
      m.blockMetadataType !== VARIABLE_LENGTH
    ) {
      throw broken(`block_metadata_type ${m.blockMetadataType}`);
    }
    if (p.messages === 0) {
      p.blockMetadataType = m.blockMetadataType;
      p.volumeCapacityBytes = m.volumeCapacityBytes;
    } else if (
      m.blockMetadataType !== p.blockMetadataType ||
      m.volumeCapacityBytes !== p.volumeCapacityBytes
    ) {
      throw broken(
        "block_metadata_type or volume_capacity_bytes changed mid-stream",
      );
    }
    if (m.tuples === 0) throw broken("empty message");
    if (m.blockMetadataType === FIXED_LENGTH && this.#oddSizeAt >= 0) {
      throw broken(
        `FIXED_LENGTH tuple at ${this.#oddSizeAt} has size ${this.#oddSize}, not ${this.#fixedSize}`,
      );
    }
    p.messages++;
    p.tuples += m.tuples;
    p.coveredBytes += this.#covered;
    p.nextOffset = this.#end;
  }
}
