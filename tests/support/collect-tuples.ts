/** Reads a SnapshotMetadata response stream into [offset, size] tuples. */
import type { Tuple } from "./ground-truth.ts";

export async function collectTuples(
  stream: AsyncIterable<
    { blockMetadata: { byteOffset: bigint; sizeBytes: bigint }[] }
  >,
): Promise<Tuple[]> {
  const out: Tuple[] = [];
  for await (const m of stream) {
    for (const b of m.blockMetadata) {
      out.push([Number(b.byteOffset), Number(b.sizeBytes)]);
    }
  }
  return out;
}
