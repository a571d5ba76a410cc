/**
 * Finds allocated and changed 4 KiB blocks in volume images, the way the
 * reference driver (csi-driver-host-path) defines them:
 *
 * - allocated: a block that is not all zeros;
 * - changed: a block whose bytes differ between base and target. Blocks past
 *   the end of the base count as changed.
 *
 * The volume is the target image: its size is the capacity, and only its
 * blocks are scanned (a longer base's extra bytes are outside the volume). A
 * final partial block is a block of the remaining length: it is compared
 * over those bytes only (and against the base's bytes at the same offsets,
 * which differ if the base has more or fewer of them).
 *
 * Images are read in chunks into reused buffers; a chunk is first compared
 * whole, 4 bytes at a time, and split into blocks only when it differs, so
 * sparse and unchanged regions cost one pass per MiB (about 0.1 ms here;
 * node's Buffer.compare memcmp takes 0.025 ms, but would tie the store to a
 * runtime, and reading the MiB costs more than either). Results come out
 * per chunk as block runs, so nothing holds the whole answer.
 */
import type { ImageFile } from "./image-file.ts";

export const BLOCK_SIZE = 4096;
export const DEFAULT_CHUNK_SIZE = 1 << 20;

/**
 * Half-open block index ranges found in one chunk, flattened:
 * `[start0, end0, start1, end1, …]`, increasing, adjacent ranges merged.
 */
export type BlockRuns = number[];

function checkChunkSize(chunkSize: number): void {
  if (
    !Number.isSafeInteger(chunkSize) || chunkSize <= 0 ||
    chunkSize % BLOCK_SIZE !== 0
  ) {
    throw new RangeError(
      `chunk size must be a positive multiple of ${BLOCK_SIZE}`,
    );
  }
}

/** Whether `a[start, end)` equals `b[bStart, bStart + end - start)`. */
function sameBytes(
  a: Uint8Array,
  b: Uint8Array,
  start: number,
  end: number,
  bStart = start,
): boolean {
  let i = start, j = bStart;
  const words = (end - start) >>> 2;
  // Chunk buffers are fresh, so their word views line up at block offsets.
  if ((a.byteOffset + i) % 4 === 0 && (b.byteOffset + j) % 4 === 0) {
    const aw = new Int32Array(a.buffer, a.byteOffset + i, words);
    const bw = new Int32Array(b.buffer, b.byteOffset + j, words);
    for (let k = 0; k < words; k++) if (aw[k] !== bw[k]) return false;
    i += words * 4;
    j += words * 4;
  }
  for (; i < end; i++, j++) if (a[i] !== b[j]) return false;
  return true;
}

/** Appends block `b` to `runs`, extending the last run when adjacent. */
function addBlock(runs: BlockRuns, b: number): void {
  const n = runs.length;
  if (n > 0 && runs[n - 1] === b) runs[n - 1] = b + 1;
  else runs.push(b, b + 1);
}

/** Allocated blocks of `image` from block `fromBlock` on. */
export async function* scanAllocated(
  image: ImageFile,
  fromBlock: number,
  chunkSize = DEFAULT_CHUNK_SIZE,
): AsyncGenerator<BlockRuns> {
  checkChunkSize(chunkSize);
  const size = image.size;
  const buf = new Uint8Array(chunkSize);
  const zeros = new Uint8Array(chunkSize);
  for (let pos = fromBlock * BLOCK_SIZE; pos < size; pos += chunkSize) {
    const len = Math.min(chunkSize, size - pos);
    await image.readExactly(buf, len, pos);
    if (sameBytes(buf, zeros, 0, len)) continue;
    const runs: BlockRuns = [];
    const firstBlock = pos / BLOCK_SIZE;
    for (let off = 0; off < len; off += BLOCK_SIZE) {
      const end = Math.min(off + BLOCK_SIZE, len);
      if (!sameBytes(buf, zeros, off, end, 0)) {
        addBlock(runs, firstBlock + off / BLOCK_SIZE);
      }
    }
    yield runs;
  }
}

/** Blocks of `target` that differ from `base`, from block `fromBlock` on. */
export async function* scanChanged(
  base: ImageFile,
  target: ImageFile,
  fromBlock: number,
  chunkSize = DEFAULT_CHUNK_SIZE,
): AsyncGenerator<BlockRuns> {
  checkChunkSize(chunkSize);
  const size = target.size;
  const baseSize = base.size;
  const tbuf = new Uint8Array(chunkSize);
  const bbuf = new Uint8Array(chunkSize);
  for (let pos = fromBlock * BLOCK_SIZE; pos < size; pos += chunkSize) {
    const len = Math.min(chunkSize, size - pos);
    const baseLen = Math.max(0, Math.min(chunkSize, baseSize - pos));
    await target.readExactly(tbuf, len, pos);
    if (baseLen > 0) await base.readExactly(bbuf, baseLen, pos);
    if (baseLen === len && sameBytes(tbuf, bbuf, 0, len)) continue;
    const runs: BlockRuns = [];
    const firstBlock = pos / BLOCK_SIZE;
    for (let off = 0; off < len; off += BLOCK_SIZE) {
      const end = Math.min(off + BLOCK_SIZE, len);
      const baseEnd = Math.max(off, Math.min(off + BLOCK_SIZE, baseLen));
      // Different lengths (the base ends inside or before this block) differ.
      if (
        end - off !== baseEnd - off || !sameBytes(tbuf, bbuf, off, end)
      ) {
        addBlock(runs, firstBlock + off / BLOCK_SIZE);
      }
    }
    yield runs;
  }
}
