/**
 * Independent ground truth for the store's answers, computed from image
 * bytes with plain loops (shares no code with src/store/):
 *
 * - block i of an image is bytes [i*4096, min((i+1)*4096, size));
 * - allocated: some byte of the block is not zero;
 * - changed: the target block's bytes differ from the base's bytes at the same
 *   offsets (a base that is shorter there has fewer bytes, so it differs);
 * - only the target's blocks count; capacity is the target's size;
 * - a starting offset at or past the capacity gives no tuples;
 * - tuples start at the block that holds `startingOffset`; FIXED tuples are
 *   (i*4096, 4096); VARIABLE tuples merge adjacent blocks, ending at most at
 *   the capacity.
 */

export const BLOCK = 4096;

export type Tuple = [offset: number, size: number];

function blockCount(size: number): number {
  let n = 0;
  while (n * BLOCK < size) n++;
  return n;
}

export function allocatedBlocks(image: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < blockCount(image.length); i++) {
    for (let j = i * BLOCK; j < (i + 1) * BLOCK && j < image.length; j++) {
      if (image[j] !== 0) {
        out.push(i);
        break;
      }
    }
  }
  return out;
}

export function changedBlocks(base: Uint8Array, target: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < blockCount(target.length); i++) {
    const start = i * BLOCK;
    const tEnd = Math.min(start + BLOCK, target.length);
    const bEnd = Math.max(start, Math.min(start + BLOCK, base.length));
    let differs = tEnd - start !== bEnd - start;
    for (let j = start; !differs && j < tEnd; j++) {
      if (base[j] !== target[j]) differs = true;
    }
    if (differs) out.push(i);
  }
  return out;
}

/** The tuples a stream from `startingOffset` must carry, all messages joined. */
export function expectedTuples(
  blocks: number[],
  type: "FIXED" | "VARIABLE",
  capacity: number,
  startingOffset: number,
): Tuple[] {
  if (startingOffset >= capacity) return []; // at or past the end: nothing
  // Past the end there is nothing to list (the reference driver's answer).
  if (startingOffset >= capacity) return [];
  const firstBlock = Math.floor(startingOffset / BLOCK);
  const kept = blocks.filter((b) => b >= firstBlock && b * BLOCK < capacity);
  if (type === "FIXED") return kept.map((b) => [b * BLOCK, BLOCK]);
  const out: Tuple[] = [];
  let i = 0;
  while (i < kept.length) {
    let j = i;
    while (j + 1 < kept.length && kept[j + 1] === kept[j] + 1) j++;
    const offset = kept[i] * BLOCK;
    const end = Math.min((kept[j] + 1) * BLOCK, capacity);
    out.push([offset, end - offset]);
    i = j + 1;
  }
  return out;
}
