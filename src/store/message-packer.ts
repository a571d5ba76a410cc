/**
 * Turns block runs into encoded response messages of at most `maxResults`
 * tuples each (never empty):
 *
 * - FIXED_LENGTH: one tuple per block, every `size_bytes` = 4096 (the API
 *   requires equal sizes, so a final partial block is still a 4096 tuple);
 * - VARIABLE_LENGTH: adjacent blocks merged into one extent across the whole
 *   stream, not just one message (an extent is emitted only once it ends), and
 *   clipped to the volume's capacity.
 */
import {
  encodeMetadataMessage,
  FIXED_LENGTH,
  VARIABLE_LENGTH,
} from "../wire/metadata-message.ts";
import { BLOCK_SIZE, type BlockRuns } from "./block-scan.ts";

/** Tuples per message when the caller asks for 0 (the reference driver's). */
export const DEFAULT_MAX_RESULTS = 256;

export class MessagePacker {
  #offsets: number[] = [];
  #sizes: number[] = [];
  #ready: Uint8Array[] = [];
  /** VARIABLE_LENGTH's open extent, as block indices [start, end). */
  #extentStart = -1;
  #extentEnd = -1;
  readonly maxResults: number;

  constructor(
    readonly blockMetadataType: typeof FIXED_LENGTH | typeof VARIABLE_LENGTH,
    readonly volumeCapacityBytes: number,
    maxResults: number,
  ) {
    this.maxResults = maxResults === 0 ? DEFAULT_MAX_RESULTS : maxResults;
  }

  /** Adds the runs found in one chunk, in order. */
  add(runs: BlockRuns): void {
    for (let i = 0; i < runs.length; i += 2) {
      const start = runs[i], end = runs[i + 1];
      if (this.blockMetadataType === FIXED_LENGTH) {
        for (let b = start; b < end; b++) {
          this.#tuple(b * BLOCK_SIZE, BLOCK_SIZE);
        }
      } else if (start === this.#extentEnd) {
        this.#extentEnd = end;
      } else {
        this.#closeExtent();
        this.#extentStart = start;
        this.#extentEnd = end;
      }
    }
  }

  /** Ends the stream: the open extent and the last partial message go out. */
  finish(): void {
    this.#closeExtent();
    if (this.#offsets.length > 0) this.#flush();
  }

  /** Messages completed since the last call, in order. */
  take(): Uint8Array[] {
    const ready = this.#ready;
    this.#ready = [];
    return ready;
  }

  #closeExtent(): void {
    if (this.#extentStart < 0) return;
    const offset = this.#extentStart * BLOCK_SIZE;
    const end = Math.min(
      this.#extentEnd * BLOCK_SIZE,
      this.volumeCapacityBytes,
    );
    this.#extentStart = this.#extentEnd = -1;
    this.#tuple(offset, end - offset);
  }

  #tuple(offset: number, size: number): void {
    this.#offsets.push(offset);
    this.#sizes.push(size);
    if (this.#offsets.length === this.maxResults) this.#flush();
  }

  #flush(): void {
    this.#ready.push(encodeMetadataMessage({
      blockMetadataType: this.blockMetadataType,
      volumeCapacityBytes: this.volumeCapacityBytes,
      offsets: this.#offsets,
      sizes: this.#sizes,
    }));
    this.#offsets = [];
    this.#sizes = [];
  }
}
