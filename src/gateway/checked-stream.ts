/**
 * Wraps an upstream message stream, checks the invariants the API promises
 * (spec §2) and keeps the progress that end and error records report: a
 * gateway that relays a broken stream as if it were fine hides data loss.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import {
  decodeMetadataMessage,
  FIXED_LENGTH,
  type MetadataMessage,
  VARIABLE_LENGTH,
} from "../wire/metadata-message.ts";

/** One message as relayed: the upstream bytes and their decoded form. */
export interface RelayedMessage {
  bytes: Uint8Array;
  message: MetadataMessage;
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

export class CheckedStream implements AsyncIterable<RelayedMessage> {
  readonly progress: StreamProgress;
  #fixedSize = 0;

  constructor(
    private readonly upstream: AsyncIterable<Uint8Array>,
    readonly startingOffset: number,
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

  async *[Symbol.asyncIterator](): AsyncIterator<RelayedMessage> {
    for await (const bytes of this.upstream) {
      const message = decodeMetadataMessage(bytes);
      this.#check(message);
      yield { bytes, message };
    }
  }

  #check(m: MetadataMessage): void {
    const p = this.progress;
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
    if (m.offsets.length === 0) throw broken("empty message");
    let end = p.nextOffset;
    let covered = 0;
    for (let i = 0; i < m.offsets.length; i++) {
      const off = m.offsets[i], size = m.sizes[i];
      if (size <= 0) throw broken(`tuple at ${off} has size ${size}`);
      if (m.blockMetadataType === FIXED_LENGTH) {
        if (this.#fixedSize === 0) this.#fixedSize = size;
        else if (size !== this.#fixedSize) {
          throw broken(
            `FIXED_LENGTH tuple at ${off} has size ${size}, not ${this.#fixedSize}`,
          );
        }
      }
      const isFirst = p.tuples === 0 && i === 0;
      // The first tuple may start before the starting offset, but must end after it;
      // every later tuple starts at or after the previous end.
      if (isFirst ? off + size <= end : off < end) {
        throw broken(
          `tuple [${off}, +${size}) is out of order (previous end ${end})`,
        );
      }
      end = off + size;
      covered += size;
    }
    p.messages++;
    p.tuples += m.offsets.length;
    p.coveredBytes += covered;
    p.nextOffset = end;
  }
}
