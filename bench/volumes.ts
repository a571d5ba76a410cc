/**
 * Benchmark volumes: raw images in the embedded store's layout where every
 * 4 KiB block is allocated (one non-zero byte per block, the rest zero, all
 * written out so nothing is sparse).
 */
export const BLOCK = 4096;

/** Writes `<dataDir>/<namespace>/<volume>/<snapshot>.img` with `blocks` allocated blocks. */
export async function writeFullyAllocated(
  dataDir: string,
  namespace: string,
  volume: string,
  snapshot: string,
  blocks: number,
): Promise<string> {
  const dir = `${dataDir}/${namespace}/${volume}`;
  await Deno.mkdir(dir, { recursive: true });
  const file = `${dir}/${snapshot}.img`;
  const chunkBlocks = 4096; // 16 MiB per write
  const chunk = new Uint8Array(chunkBlocks * BLOCK);
  for (let i = 0; i < chunkBlocks; i++) chunk[i * BLOCK] = 1 + (i % 255);
  const f = await Deno.open(file, {
    write: true,
    create: true,
    truncate: true,
  });
  try {
    for (let done = 0; done < blocks; done += chunkBlocks) {
      const n = Math.min(chunkBlocks, blocks - done);
      let view = chunk.subarray(0, n * BLOCK);
      while (view.length > 0) view = view.subarray(await f.write(view));
    }
  } finally {
    f.close();
  }
  return file;
}
