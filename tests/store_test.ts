/**
 * The embedded file store (src/store/file-store.ts) against independent
 * ground truth (tests/support/ground-truth.ts): every offset, max_results
 * and type over random images; snapshots and listing; error codes; names
 * that try to leave the data dir. The demo is in demo_seed_test.ts,
 * cancellation and open files in store_cancellation_test.ts.
 */
import { Code } from "@connectrpc/connect";
import {
  allocatedBlocks,
  changedBlocks,
  expectedTuples,
} from "./support/ground-truth.ts";
import { mutate, randomImage, Rng, TempDataDir } from "./support/images.ts";
import { collect } from "./support/collect.ts";
import {
  assert,
  assertEquals,
  call,
  checkMessages,
  expectError,
  TYPES,
} from "./support/store-checks.ts";
import { NodeFileSnapshotStore } from "../src/adapter/node-fs/file-store.ts";

const BLOCK = 4096;

/** Offsets worth resuming from for a volume of `capacity` with these blocks. */
function interestingOffsets(capacity: number, blocks: number[]): number[] {
  const offsets = [0, 3 * BLOCK, 3 * BLOCK + 17, capacity, capacity + 5000];
  if (capacity > 0) {
    offsets.push(Math.floor((capacity - 1) / BLOCK) * BLOCK, capacity - 1);
  }
  const mid = blocks.findIndex((b, i) => blocks[i + 1] === b + 1);
  if (mid >= 0) offsets.push((blocks[mid] + 1) * BLOCK + 100); // inside an extent
  return offsets;
}

const MAX_RESULTS = [0, 1, 5, 256, 1000];

/** Every type × offset × max_results against ground truth, for one volume. */
async function checkAllCombinations(
  dir: TempDataDir,
  chunkSize: number,
  kind: "allocated" | "delta",
  base: Uint8Array,
  target: Uint8Array,
  label: string,
): Promise<number> {
  const blocks = kind === "allocated"
    ? allocatedBlocks(target)
    : changedBlocks(base, target);
  let streams = 0;
  for (const [typeName, type] of TYPES) {
    const store = new NodeFileSnapshotStore({
      dataDir: dir.dir,
      blockMetadataType: type,
      chunkSize,
    });
    for (const startingOffset of interestingOffsets(target.length, blocks)) {
      const expected = expectedTuples(
        blocks,
        typeName,
        target.length,
        startingOffset,
      );
      for (const maxResults of MAX_RESULTS) {
        const stream = kind === "allocated"
          ? store.getMetadataAllocated(
            {
              namespace: "ns",
              snapshotName: "target",
              startingOffset,
              maxResults,
              securityToken: "",
            },
            call(),
          )
          : store.getMetadataDelta(
            {
              namespace: "ns",
              baseSnapshotId: "vol/base",
              targetSnapshotName: "target",
              startingOffset,
              maxResults,
              securityToken: "",
            },
            call(),
          );
        const where =
          `${label} ${kind} ${typeName} chunk=${chunkSize} off=${startingOffset} max=${maxResults}`;
        const tuples = checkMessages(
          await collect(stream),
          type,
          target.length,
          maxResults,
          where,
        );
        assertEquals(tuples, expected, where);
        streams++;
      }
    }
    assertEquals(store.openFiles, 0, `${label}: files left open`);
    await store.close();
  }
  return streams;
}

const SIZES: [string, number, number][] = [
  // label, base size, target size
  ["one byte", 1, 1],
  ["one block", BLOCK, BLOCK],
  ["partial last block", 5 * BLOCK + 123, 5 * BLOCK + 123],
  ["40 blocks", 40 * BLOCK, 40 * BLOCK],
  ["over 256 blocks, odd size", 300 * BLOCK + 7, 300 * BLOCK + 7],
  ["base shorter", 7 * BLOCK + 100, 20 * BLOCK + 1],
  ["base longer", 33 * BLOCK, 9 * BLOCK + 2049],
  ["empty image", 0, 0],
];

Deno.test("random images: allocated and delta equal ground truth for every offset, max_results and type", async () => {
  const dir = await TempDataDir.create();
  try {
    let streams = 0;
    let seed = 1;
    for (const [label, baseSize, targetSize] of SIZES) {
      const rng = new Rng(seed++ * 7919);
      const base = randomImage(rng, baseSize);
      const target = mutate(rng, base, targetSize);
      await dir.writeImage("ns", "vol", "base", base);
      await dir.writeImage("ns", "vol", "target", target);
      for (const chunkSize of [3 * BLOCK, 1 << 20]) {
        streams += await checkAllCombinations(
          dir,
          chunkSize,
          "allocated",
          base,
          target,
          label,
        );
        streams += await checkAllCombinations(
          dir,
          chunkSize,
          "delta",
          base,
          target,
          label,
        );
      }
    }
    assert(streams > 2000, `only ${streams} streams checked`);
  } finally {
    await dir.dispose();
  }
});

Deno.test("all-zero and unchanged volumes stream zero messages", async () => {
  const dir = await TempDataDir.create();
  try {
    const zeros = new Uint8Array(50 * BLOCK + 5);
    const data = randomImage(new Rng(42), 50 * BLOCK + 5);
    await dir.writeImage("ns", "vol", "zeros", zeros);
    await dir.writeImage("ns", "vol", "base", data);
    await dir.writeImage("ns", "vol", "copy", data.slice());
    for (const [, type] of TYPES) {
      const store = new NodeFileSnapshotStore({
        dataDir: dir.dir,
        blockMetadataType: type,
        chunkSize: 8 * BLOCK,
      });
      for (const maxResults of MAX_RESULTS) {
        const q = {
          namespace: "ns",
          startingOffset: 0,
          maxResults,
          securityToken: "",
        };
        assertEquals(
          (await collect(
            store.getMetadataAllocated({ ...q, snapshotName: "zeros" }, call()),
          )).length,
          0,
          "all-zero allocated",
        );
        const unchanged = store.getMetadataDelta(
          { ...q, baseSnapshotId: "vol/base", targetSnapshotName: "copy" },
          call(),
        );
        assertEquals((await collect(unchanged)).length, 0, "unchanged delta");
        const self = store.getMetadataDelta({
          ...q,
          baseSnapshotId: "vol/base",
          targetSnapshotName: "base",
        }, call());
        assertEquals(
          (await collect(self)).length,
          0,
          "delta of a snapshot with itself",
        );
      }
      // The same data does show up where it should.
      const alloc = await collect(store.getMetadataAllocated(
        {
          namespace: "ns",
          snapshotName: "copy",
          startingOffset: 0,
          maxResults: 0,
          securityToken: "",
        },
        call(),
      ));
      assert(alloc.length > 0, "random image has allocated blocks");
      await store.close();
    }
  } finally {
    await dir.dispose();
  }
});

Deno.test("getSnapshot and listSnapshots describe the images, sorted by volume then name", async () => {
  const dir = await TempDataDir.create();
  try {
    await dir.writeImage("ns", "vol-b", "snap-a", new Uint8Array(3 * BLOCK));
    await dir.writeImage("ns", "vol-a", "snap-z", new Uint8Array(5));
    await dir.writeImage("ns", "vol-a", "snap-c", new Uint8Array(BLOCK + 1));
    await Deno.writeTextFile(
      dir.path("ns", "vol-a", "notes.txt"),
      "not an image",
    );
    await Deno.writeTextFile(
      dir.path("ns", "vol-a", "Bad_Name.img"),
      "invalid name",
    );
    await Deno.mkdir(dir.path("ns", "vol-a", "dir.img"));
    const store = new NodeFileSnapshotStore({ dataDir: dir.dir });
    const list = await store.listSnapshots("ns", call());
    assertEquals(
      list.map((
        s,
      ) => [
        s.snapshotId,
        s.volume,
        s.name,
        s.volumeCapacityBytes,
        s.readyToUse,
        s.namespace,
      ]),
      [
        ["vol-a/snap-c", "vol-a", "snap-c", BLOCK + 1, true, "ns"],
        ["vol-a/snap-z", "vol-a", "snap-z", 5, true, "ns"],
        ["vol-b/snap-a", "vol-b", "snap-a", 3 * BLOCK, true, "ns"],
      ],
      "list",
    );
    const one = await store.getSnapshot("ns", "snap-a", call());
    assertEquals([one.snapshotId, one.volumeCapacityBytes], [
      "vol-b/snap-a",
      3 * BLOCK,
    ], "getSnapshot");
    await expectError(
      store.getSnapshot("ns", "nope", call()),
      Code.NotFound,
      "nope",
    );
    await expectError(
      store.getSnapshot("other", "snap-a", call()),
      Code.NotFound,
      "other",
    );
    await expectError(
      store.listSnapshots("other", call()),
      Code.NotFound,
      "other",
    );
    await store.close();
  } finally {
    await dir.dispose();
  }
});

Deno.test("stream errors carry the right codes", async () => {
  const dir = await TempDataDir.create();
  try {
    const img = randomImage(new Rng(5), 8 * BLOCK);
    await dir.writeImage("ns", "vol", "s1", img);
    await dir.writeImage("ns", "vol", "s2", img);
    await dir.writeImage("ns", "other-vol", "o1", img);
    await dir.writeImage("ns", "other-vol", "s1", img); // same name in two volumes
    const store = new NodeFileSnapshotStore({ dataDir: dir.dir });
    const alloc = (
      snapshotName: string,
      startingOffset = 0,
      maxResults = 0,
      namespace = "ns",
    ) =>
      collect(
        store.getMetadataAllocated({
          namespace,
          snapshotName,
          startingOffset,
          maxResults,
          securityToken: "",
        }, call()),
      );
    const delta = (
      baseSnapshotId: string,
      targetSnapshotName: string,
      startingOffset = 0,
    ) =>
      collect(store.getMetadataDelta(
        {
          namespace: "ns",
          baseSnapshotId,
          targetSnapshotName,
          startingOffset,
          maxResults: 0,
          securityToken: "",
        },
        call(),
      ));

    await expectError(alloc("missing"), Code.NotFound, "missing");
    await expectError(
      alloc("s2", 0, 0, "no-such-ns"),
      Code.NotFound,
      "no-such-ns",
    );
    await expectError(alloc("s2", -1), Code.OutOfRange);
    await expectError(alloc("s2", 0, -1), Code.InvalidArgument);
    await expectError(delta("vol/s2", "s2", -4096), Code.OutOfRange);
    const amb = await expectError(alloc("s1"), Code.FailedPrecondition);
    assert(
      amb.message.includes("vol/s1") && amb.message.includes("other-vol/s1"),
      `names both: ${amb.message}`,
    );

    for (
      const bad of [
        "s2",
        "vol/",
        "/s2",
        "vol/s2/x",
        "",
        "vol//s2",
        "../vol/s2",
        "vol/..",
        "Vol/S2",
      ]
    ) {
      await expectError(
        delta(bad, "s2"),
        Code.InvalidArgument,
        "base_snapshot_id",
      );
    }
    await expectError(
      delta("other-vol/o1", "s2"),
      Code.InvalidArgument,
      "other-vol",
    );
    await expectError(delta("vol/nope", "s2"), Code.NotFound, "vol/nope");
    await expectError(delta("vol/s2", "nope"), Code.NotFound, "nope");
    // Past the end is OK with no messages.
    assertEquals((await alloc("s2", 8 * BLOCK)).length, 0, "at end");
    assertEquals((await alloc("s2", 2 ** 50)).length, 0, "far past end");
    assertEquals(
      (await delta("vol/s2", "s2", 9 * BLOCK)).length,
      0,
      "delta past end",
    );
    await store.close();
    await expectError(alloc("s2"), Code.Unavailable, "closed");
  } finally {
    await dir.dispose();
  }
});

Deno.test("names that try to leave the data dir are refused and nothing outside is read", async () => {
  const dir = await TempDataDir.create();
  const outside = await TempDataDir.create();
  try {
    const secret = randomImage(new Rng(9), 4 * BLOCK);
    await outside.writeImage("ns", "vol", "secret", secret);
    await dir.writeImage(
      "ns",
      "vol",
      "ok",
      randomImage(new Rng(10), 4 * BLOCK),
    );
    // A symlinked image and a symlinked namespace, both pointing outside.
    await Deno.symlink(
      outside.path("ns", "vol", "secret.img"),
      dir.path("ns", "vol", "evil.img"),
    );
    await Deno.symlink(outside.path("ns"), dir.path("evil-ns"));
    // A symlink that stays inside is fine.
    await Deno.symlink(
      dir.path("ns", "vol", "ok.img"),
      dir.path("ns", "vol", "alias.img"),
    );

    const store = new NodeFileSnapshotStore({ dataDir: dir.dir });
    const q = { startingOffset: 0, maxResults: 0, securityToken: "" };
    const hostile = [
      "..",
      "../ns",
      "/etc/passwd",
      "a/b",
      "a\\b",
      "a\0b",
      ".",
      "%2e%2e",
      "ns/../..",
      " ns",
    ];
    for (const name of hostile) {
      await expectError(
        collect(
          store.getMetadataAllocated({
            ...q,
            namespace: name,
            snapshotName: "ok",
          }, call()),
        ),
        Code.InvalidArgument,
      );
      await expectError(
        collect(
          store.getMetadataAllocated({
            ...q,
            namespace: "ns",
            snapshotName: name,
          }, call()),
        ),
        Code.InvalidArgument,
      );
      await expectError(
        collect(
          store.getMetadataDelta({
            ...q,
            namespace: "ns",
            baseSnapshotId: `vol/${name}`,
            targetSnapshotName: "ok",
          }, call()),
        ),
        Code.InvalidArgument,
      );
      await expectError(
        store.getSnapshot("ns", name, call()),
        Code.InvalidArgument,
      );
      await expectError(
        store.listSnapshots(name, call()),
        Code.InvalidArgument,
      );
    }
    await expectError(
      collect(
        store.getMetadataAllocated({
          ...q,
          namespace: "ns",
          snapshotName: "evil",
        }, call()),
      ),
      Code.InvalidArgument,
      "outside",
    );
    await expectError(
      collect(
        store.getMetadataAllocated({
          ...q,
          namespace: "evil-ns",
          snapshotName: "secret",
        }, call()),
      ),
      Code.InvalidArgument,
      "outside",
    );
    await expectError(
      collect(
        store.getMetadataDelta({
          ...q,
          namespace: "ns",
          baseSnapshotId: "vol/evil",
          targetSnapshotName: "ok",
        }, call()),
      ),
      Code.InvalidArgument,
      "outside",
    );
    await expectError(
      store.getSnapshot("ns", "evil", call()),
      Code.InvalidArgument,
      "outside",
    );
    await expectError(
      store.listSnapshots("evil-ns", call()),
      Code.InvalidArgument,
      "outside",
    );
    const listed = (await store.listSnapshots("ns", call())).map((s) =>
      s.snapshotId
    );
    assertEquals(
      listed,
      ["vol/alias", "vol/ok"],
      "escaping symlinks are not listed",
    );
    const viaAlias = await collect(
      store.getMetadataAllocated({
        ...q,
        namespace: "ns",
        snapshotName: "alias",
      }, call()),
    );
    assert(viaAlias.length > 0, "an inside symlink streams");
    await store.close();
  } finally {
    await dir.dispose();
    await outside.dispose();
  }
});
