/**
 * Test images: written in the store's layout (into a temporary data dir or
 * any other), seeded random
 * volume images with the shapes that matter (zero blocks, full blocks, a
 * single non-zero byte at either end of a block, unchanged/changed/trimmed
 * blocks relative to a base); and the seeded demo's images read back.
 */
import { join } from "node:path";
import { DEMO } from "../../src/store/demo-seed.ts";

export const BLOCK = 4096;

/** A small seeded PRNG (xorshift32) so every run sees the same images. */
export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = (seed >>> 0) || 1;
  }
  next(): number {
    let x = this.#s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#s = x >>> 0;
    return this.#s;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return this.next() % n;
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.next() & 0xff;
    return out;
  }
}

/** A volume image of `size` bytes: a random mix of zero and data blocks. */
export function randomImage(rng: Rng, size: number): Uint8Array {
  const img = new Uint8Array(size);
  for (let start = 0; start < size; start += BLOCK) {
    const end = Math.min(start + BLOCK, size);
    const kind = rng.int(8);
    if (kind < 3) continue; // zeros (often in runs of several)
    if (kind === 3) img[start] = 1 + rng.int(255); // one byte at the start
    else if (kind === 4) img[end - 1] = 1 + rng.int(255); // one byte at the end
    else img.set(rng.bytes(end - start), start);
  }
  return img;
}

/**
 * A later version of `base`, `size` bytes long: most blocks kept, some
 * rewritten, some with one byte flipped, some trimmed to zeros.
 */
export function mutate(rng: Rng, base: Uint8Array, size: number): Uint8Array {
  const img = new Uint8Array(size);
  img.set(base.subarray(0, Math.min(size, base.length)));
  for (let start = 0; start < size; start += BLOCK) {
    const end = Math.min(start + BLOCK, size);
    const kind = rng.int(10);
    if (kind < 6) continue; // unchanged
    if (kind === 6) img.set(rng.bytes(end - start), start);
    else if (kind === 7) img[start + rng.int(end - start)] ^= 1 + rng.int(255);
    else if (kind === 8) img.fill(0, start, end);
    else img.set(img.slice(start, end), start); // rewritten with the same bytes
  }
  return img;
}

/** Writes `<dataDir>/<namespace>/<volume>/<snapshot>.img`; returns its path. */
export async function writeImage(
  dataDir: string,
  namespace: string,
  volume: string,
  snapshot: string,
  bytes: Uint8Array,
): Promise<string> {
  const dir = join(dataDir, namespace, volume);
  await Deno.mkdir(dir, { recursive: true });
  const path = join(dir, `${snapshot}.img`);
  await Deno.writeFile(path, bytes);
  return path;
}

/** A temporary data dir; `dispose()` removes it. */
export class TempDataDir {
  private constructor(readonly dir: string) {}

  static async create(): Promise<TempDataDir> {
    return new TempDataDir(
      await Deno.makeTempDir({ prefix: "cbt-store-test-" }),
    );
  }

  /** Writes `<dir>/<namespace>/<volume>/<snapshot>.img`; returns its path. */
  writeImage(
    namespace: string,
    volume: string,
    snapshot: string,
    bytes: Uint8Array,
  ): Promise<string> {
    return writeImage(this.dir, namespace, volume, snapshot, bytes);
  }

  path(...parts: string[]): string {
    return join(this.dir, ...parts);
  }

  async dispose(): Promise<void> {
    await Deno.remove(this.dir, { recursive: true });
  }
}

/** The bytes of a demo snapshot in a data dir the demo was seeded into. */
export function demoImage(dataDir: string, snapshot: string): Uint8Array {
  return Deno.readFileSync(
    join(dataDir, DEMO.namespace, DEMO.volume, `${snapshot}.img`),
  );
}
