/**
 * Test clients' view of a response body: enveloped messages one by one,
 * end-of-stream frames included (the gateway itself relays runs of them).
 */
import { asEnvelopeError } from "../../src/adapter/node-http2/grpc-call.ts";
import { EnvelopeQueue, forEachEnvelope } from "../../src/wire/envelopes.ts";

/** Messages larger than this are refused (a 2048-tuple message is ~25 KB). */
const READ_MAX_BYTES = 16 * 1024 * 1024;

/** One enveloped message: gRPC, gRPC-Web and Connect streams share the shape. */
export interface Envelope {
  flags: number;
  data: Uint8Array;
}

/**
 * Splits a byte stream into enveloped messages (1 byte flags, 4 bytes
 * big-endian length, payload). Pushes complete ones; keeps the rest. Any
 * flags are passed on (clients read end-of-stream frames with it).
 */
export class EnvelopeSplitter {
  #queue: EnvelopeQueue;

  constructor(readonly readMaxBytes = READ_MAX_BYTES) {
    this.#queue = new EnvelopeQueue(readMaxBytes, true);
  }

  push(chunk: Uint8Array, out: Envelope[]): void {
    try {
      this.#queue.push(chunk);
    } catch (e) {
      throw asEnvelopeError(e);
    }
    const run = this.#queue.take();
    forEachEnvelope(run, (flags, start, end) => {
      out.push({ flags, data: run.subarray(start, end) });
    });
  }

  get buffered(): number {
    return this.#queue.size;
  }
}
