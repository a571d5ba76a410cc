/**
 * The reference driver reports wrong blocks for an unaligned
 * starting_offset (spec §9). The gateway asks upstream from the block
 * boundary below and drops the tuples that end at or before the offset the
 * caller asked for, so the caller still gets "first tuple ends after the
 * starting offset". Only the first messages are rewritten; once a tuple
 * ends after the offset, messages pass through as upstream's bytes.
 */
import {
  decodeMetadataMessage,
  encodeMetadataMessage,
} from "../wire/metadata-message.ts";

export const BLOCK_SIZE = 4096;

export function alignDown(offset: number): number {
  return offset - (offset % BLOCK_SIZE);
}

export async function* dropTuplesBefore(
  upstream: AsyncIterable<Uint8Array>,
  offset: number,
): AsyncGenerator<Uint8Array> {
  let trimming = offset % BLOCK_SIZE !== 0;
  for await (const bytes of upstream) {
    if (!trimming) {
      yield bytes;
      continue;
    }
    const m = decodeMetadataMessage(bytes);
    let keepFrom = 0;
    while (
      keepFrom < m.offsets.length &&
      m.offsets[keepFrom] + m.sizes[keepFrom] <= offset
    ) keepFrom++;
    if (keepFrom === m.offsets.length) continue; // all before: skip it
    trimming = false;
    yield keepFrom === 0 ? bytes : encodeMetadataMessage({
      ...m,
      offsets: m.offsets.slice(keepFrom),
      sizes: m.sizes.slice(keepFrom),
    });
  }
}
