/**
 * The demo the embedded store seeds into an empty (or missing) data dir, so
 * the first call answers something. One 16 MiB volume with three snapshots;
 * `snap-1` and `snap-2` reproduce the block pattern of the real-sidecar
 * recordings (tests/fixtures/real-sidecar), so the same requests give the
 * same blocks as the real driver did.
 *
 * Block contents are deterministic: seeded PRNG bytes per (version, block).
 * A block keeps its bytes from one snapshot to the next unless rewritten.
 */
import { BLOCK_SIZE } from "./block-scan.ts";
import type { StoreFiles } from "./files.ts";
import { IMAGE_SUFFIX } from "./paths.ts";

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

/** One demo snapshot: which blocks it holds, and which bytes (version). */
interface DemoSnapshotPlan {
  name: string;
  /** block index → content version; absent blocks are zeros. */
  blocks: Map<number, number>;
}

/** Builds a snapshot from the previous one plus writes and trims. */
function next(
  prev: Map<number, number>,
  version: number,
  changes: { write?: number[]; rewriteSame?: number[]; trim?: number[] },
): Map<number, number> {
  const blocks = new Map(prev);
  for (const b of changes.write ?? []) blocks.set(b, version);
  // Rewritten with identical bytes: the version (and so the content) stays.
  for (const b of changes.rewriteSame ?? []) blocks.set(b, prev.get(b)!);
  for (const b of changes.trim ?? []) blocks.delete(b);
  return blocks;
}

const SNAP1 = new Map(
  [0, 1, 2, 10, 20, ...range(100, 131), 2048, 4095].map((b) => [b, 1]),
);
const SNAP2 = next(SNAP1, 2, {
  write: [0, 1, ...range(116, 147), 1024, 4094],
  rewriteSame: [2],
  trim: [10],
});
const SNAP3 = next(SNAP2, 3, {
  write: [...range(3, 7), 1024, ...range(4000, 4031), 4095],
  trim: [20],
});

const PLANS: DemoSnapshotPlan[] = [
  { name: "snap-1", blocks: SNAP1 },
  { name: "snap-2", blocks: SNAP2 },
  { name: "snap-3", blocks: SNAP3 },
];

function sorted(blocks: Iterable<number>): number[] {
  return [...blocks].sort((a, b) => a - b);
}

function changedBlocks(
  base: Map<number, number>,
  target: Map<number, number>,
): number[] {
  const all = new Set([...base.keys(), ...target.keys()]);
  return sorted([...all].filter((b) => base.get(b) !== target.get(b)));
}

export interface DemoSnapshot {
  name: string;
  /** What `base_snapshot_id` takes: `<volume>/<snapshot>`. */
  snapshotId: string;
  /** Allocated (non-zero) block indices, increasing. */
  allocatedBlocks: number[];
}

/** What the seeded demo holds, for the CLI's example calls and for tests. */
export const DEMO = {
  namespace: "demo",
  volume: "vol-1",
  volumeCapacityBytes: 16 * 1024 * 1024,
  blockSizeBytes: BLOCK_SIZE,
  snapshots: PLANS.map((p): DemoSnapshot => ({
    name: p.name,
    snapshotId: `vol-1/${p.name}`,
    allocatedBlocks: sorted(p.blocks.keys()),
  })),
  /** Changed blocks between consecutive snapshots (block 2 of snap-2 is rewritten unchanged). */
  deltas: [
    {
      base: "vol-1/snap-1",
      target: "snap-2",
      changedBlocks: changedBlocks(SNAP1, SNAP2),
    },
    {
      base: "vol-1/snap-2",
      target: "snap-3",
      changedBlocks: changedBlocks(SNAP2, SNAP3),
    },
    {
      base: "vol-1/snap-1",
      target: "snap-3",
      changedBlocks: changedBlocks(SNAP1, SNAP3),
    },
  ],
} as const;

/** 4096 deterministic bytes for (version, block); never all zeros. */
export function demoBlockBytes(version: number, block: number): Uint8Array {
  const out = new Uint8Array(BLOCK_SIZE);
  // mulberry32, seeded from the pair.
  let state =
    (Math.imul(version, 0x9e3779b1) ^ Math.imul(block + 1, 0x85ebca6b)) >>> 0;
  for (let i = 0; i < BLOCK_SIZE; i += 4) {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    t = (t ^ (t >>> 14)) >>> 0;
    out[i] = t & 0xff;
    out[i + 1] = (t >>> 8) & 0xff;
    out[i + 2] = (t >>> 16) & 0xff;
    out[i + 3] = t >>> 24;
  }
  out[0] |= 1;
  return out;
}

/** One image's written blocks, in order, as (position, bytes). */
function* imageBlocks(
  blocks: Map<number, number>,
): Generator<[number, Uint8Array]> {
  for (const block of sorted(blocks.keys())) {
    yield [block * BLOCK_SIZE, demoBlockBytes(blocks.get(block)!, block)];
  }
}

/**
 * Seeds the demo when `dataDir` is empty or missing; leaves any other dir
 * alone. Returns true when it seeded.
 */
export async function seedDemoIfEmpty(
  files: StoreFiles,
  dataDir: string,
): Promise<boolean> {
  const entries = await files.readDir(dataDir);
  if (entries !== undefined && entries.length > 0) return false;
  const volumeDir = files.join(dataDir, DEMO.namespace, DEMO.volume);
  await files.makeDir(volumeDir);
  for (const plan of PLANS) {
    await files.writeSparse(
      files.join(volumeDir, plan.name + IMAGE_SUFFIX),
      DEMO.volumeCapacityBytes,
      imageBlocks(plan.blocks),
    );
  }
  return true;
}
