/**
 * The reference driver reports wrong blocks for an unaligned
 * starting_offset (spec §9). The gateway asks upstream from the block
 * boundary below and drops the tuples that end at or before the offset the
 * caller asked for, so the caller still gets "first tuple ends after the
 * starting offset". Only the first messages are rewritten; once a tuple
 * ends after the offset, messages pass through as upstream's bytes.
 *
 * A resumed stream (relay/resume.ts) goes one step further: its client
 * already has every byte before the offset, so a VARIABLE_LENGTH extent
 * that straddles it is cut to start there.
 */
import {
  decodeMetadataMessage,
  encodeMetadataMessage,
  VARIABLE_LENGTH,
} from "../wire/metadata-message.ts";

export const BLOCK_SIZE = 4096;

export function alignDown(offset: number): number {
  return offset - (offset % BLOCK_SIZE);
}

/**
 * One message with the tuples that end at or before `offset` dropped:
 * the same bytes when nothing goes, `undefined` when everything does.
 * `cutStraddling`: a VARIABLE_LENGTH tuple starting before `offset` (and
 * ending after it) is cut to start at `offset`. FIXED_LENGTH tuples are
 * never cut (their size is the block size).
 */
export function tuplesAfter(
  bytes: Uint8Array,
  offset: number,
  cutStraddling = false,
): Uint8Array | undefined {
  const m = decodeMetadataMessage(bytes);
  let keepFrom = 0;
  while (
    keepFrom < m.offsets.length &&
    m.offsets[keepFrom] + m.sizes[keepFrom] <= offset
  ) keepFrom++;
  if (keepFrom === m.offsets.length) return undefined;
  const cut = cutStraddling && m.blockMetadataType === VARIABLE_LENGTH &&
    m.offsets[keepFrom] < offset;
  if (keepFrom === 0 && !cut) return bytes;
  const offsets = m.offsets.slice(keepFrom);
  const sizes = m.sizes.slice(keepFrom);
  if (cut) {
    sizes[0] = offsets[0] + sizes[0] - offset;
    offsets[0] = offset;
  }
  return encodeMetadataMessage({ ...m, offsets, sizes });
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
    const kept = tuplesAfter(bytes, offset);
    if (kept === undefined) continue; // all before: skip it
    trimming = false;
    yield kept;
  }
}
