/**
 * The embedded file store against independent ground truth (tests/support/
 * ground-truth.ts), the real-sidecar recordings, hostile names and
 * cancellation (open file descriptors counted in /proc/self/fd).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { DEMO } from "../src/store/demo-seed.ts";
import {
  NodeFileSnapshotStore,
  seedNodeDemoIfEmpty,
} from "../src/adapter/node-fs/file-store.ts";
import type {
  CallOptions,
  EncodedMessageStream,
} from "../src/backend/backend.ts";
import {
  decodeMetadataMessage,
  FIXED_LENGTH,
  type MetadataMessage,
  VARIABLE_LENGTH,
} from "../src/wire/metadata-message.ts";
import {
  allocatedBlocks,
  changedBlocks,
  expectedTuples,
  type Tuple,
} from "./support/ground-truth.ts";
import { mutate, randomImage, Rng, TempDataDir } from "./support/images.ts";

const BLOCK = 4096;
const VECTORS = new URL(
  "./fixtures/real-sidecar/streams/",
  import.meta.url,
);

function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(msg);
}

function assertEquals(actual: unknown, expected: unknown, msg: string): void {
  const a = JSON.stringify(actual), e = JSON.stringify(expected);
  if (a !== e) {
    throw new Error(
      `${msg}\n  actual:   ${a.slice(0, 600)}\n  expected: ${e.slice(0, 600)}`,
    );
  }
}

function call(signal = new AbortController().signal): CallOptions {
  return { signal, caller: { username: "test" } };
}

async function collect(stream: EncodedMessageStream): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const m of stream) out.push(m);
  return out;
}

async function expectError(
  p: Promise<unknown>,
  code: Code,
  includes?: string,
): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    assert(err instanceof ConnectError, `expected a ConnectError, got ${err}`);
    assertEquals(Code[err.code], Code[code], `code of "${err.message}"`);
    if (includes) {
      assert(
        err.message.includes(includes),
        `"${err.message}" should mention ${includes}`,
      );
    }
    return err;
  }
  throw new Error(`expected ${Code[code]}, but the call succeeded`);
}

/** Checks every per-message rule and returns the tuples of all messages joined. */
function checkMessages(
  bytes: Uint8Array[],
  type: number,
  capacity: number,
  maxResults: number,
  label: string,
): Tuple[] {
  const max = maxResults === 0 ? 256 : maxResults;
  const tuples: Tuple[] = [];
  const messages: MetadataMessage[] = bytes.map(decodeMetadataMessage);
  messages.forEach((m, i) => {
    assert(m.offsets.length > 0, `${label}: message ${i} is empty`);
    assert(
      m.offsets.length <= max,
      `${label}: message ${i} has ${m.offsets.length} > ${max} tuples`,
    );
    // Messages are sent when full: only the last may be short.
    if (i < messages.length - 1) {
      assertEquals(m.offsets.length, max, `${label}: message ${i} not full`);
    }
    assertEquals(m.blockMetadataType, type, `${label}: type in message ${i}`);
    assertEquals(
      m.volumeCapacityBytes,
      capacity,
      `${label}: capacity in message ${i}`,
    );
    m.offsets.forEach((o, j) => tuples.push([o, m.sizes[j]]));
  });
  if (type === VARIABLE_LENGTH) {
    for (let i = 1; i < tuples.length; i++) {
      const [po, ps] = tuples[i - 1];
      assert(
        po + ps < tuples[i][0],
        `${label}: extents ${i - 1} and ${i} touch (not merged)`,
      );
    }
  }
  return tuples;
}

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
const TYPES = [["FIXED", FIXED_LENGTH], ["VARIABLE", VARIABLE_LENGTH]] as const;

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

// ---------- the demo, against the real sidecar's recordings ----------

async function readVector(name: string): Promise<Record<string, unknown>> {
  return JSON.parse(await Deno.readTextFile(new URL(name, VECTORS)));
}

function blocksToExtents(tuples: Tuple[]): number[][] {
  return tuples.map(([o, s]) => [o, s]);
}

Deno.test("demo seeding reproduces the recorded real-sidecar blocks", async () => {
  const dir = await TempDataDir.create();
  try {
    const data = dir.path("data"); // missing: seeding creates it
    assertEquals(await seedNodeDemoIfEmpty(data), true, "seeds a missing dir");
    assertEquals(
      await seedNodeDemoIfEmpty(data),
      false,
      "leaves a non-empty dir alone",
    );

    for (const [typeName, type] of TYPES) {
      const store = new NodeFileSnapshotStore({
        dataDir: data,
        blockMetadataType: type,
      });
      const t = typeName.toLowerCase();
      const q = {
        namespace: DEMO.namespace,
        startingOffset: 0,
        maxResults: 0,
        securityToken: "",
      };
      const cases: [string, EncodedMessageStream][] = [
        [
          `expected-${t}-allocated.json`,
          store.getMetadataAllocated({ ...q, snapshotName: "snap-2" }, call()),
        ],
        [
          `expected-${t}-allocated-snap-1.json`,
          store.getMetadataAllocated({ ...q, snapshotName: "snap-1" }, call()),
        ],
        [
          `expected-${t}-delta.json`,
          store.getMetadataDelta({
            ...q,
            baseSnapshotId: "vol-1/snap-1",
            targetSnapshotName: "snap-2",
          }, call()),
        ],
      ];
      for (const [file, stream] of cases) {
        const expected = await readVector(file);
        const tuples = checkMessages(
          await collect(stream),
          type,
          16777216,
          0,
          file,
        );
        assertEquals(
          expected.volume_capacity_bytes,
          16777216,
          `${file} capacity`,
        );
        if (type === FIXED_LENGTH) {
          assertEquals(
            tuples.map(([o]) => o),
            expected.byte_offsets,
            `${file} byte_offsets`,
          );
          assert(tuples.every(([, s]) => s === 4096), `${file}: FIXED sizes`);
        } else {
          assertEquals(
            blocksToExtents(tuples),
            expected.extents,
            `${file} extents`,
          );
        }
      }
      await store.close();
    }
  } finally {
    await dir.dispose();
  }
});

Deno.test("demo streams are byte-identical to the real sidecar's recorded messages", async () => {
  const dir = await TempDataDir.create();
  try {
    await seedNodeDemoIfEmpty(dir.dir);
    let compared = 0;
    for await (const entry of Deno.readDir(VECTORS)) {
      if (!/-max\d+\.json$/.test(entry.name)) continue;
      const rec = await readVector(entry.name) as {
        rpc: string;
        driverBlockMetadataType: string;
        maxResults: number;
        responseBodyB64: string;
      };
      const type = rec.driverBlockMetadataType === "FIXED_LENGTH"
        ? FIXED_LENGTH
        : VARIABLE_LENGTH;
      const store = new NodeFileSnapshotStore({
        dataDir: dir.dir,
        blockMetadataType: type,
      });
      const q = {
        namespace: "demo",
        startingOffset: 0,
        maxResults: rec.maxResults,
        securityToken: "",
      };
      const stream = rec.rpc === "GetMetadataAllocated"
        ? store.getMetadataAllocated({ ...q, snapshotName: "snap-2" }, call())
        : store.getMetadataDelta({
          ...q,
          baseSnapshotId: "vol-1/snap-1",
          targetSnapshotName: "snap-2",
        }, call());
      const ours = await collect(stream);
      // The recorded body is the messages, each with a 5-byte gRPC prefix.
      const body = Uint8Array.from(
        atob(rec.responseBodyB64),
        (c) => c.charCodeAt(0),
      );
      const recorded: Uint8Array[] = [];
      for (let pos = 0; pos < body.length;) {
        const len = new DataView(body.buffer, pos + 1, 4).getUint32(0);
        recorded.push(body.subarray(pos + 5, pos + 5 + len));
        pos += 5 + len;
      }
      assertEquals(
        ours.length,
        recorded.length,
        `${entry.name}: message count`,
      );
      ours.forEach((m, i) =>
        assertEquals(
          [...m],
          [...recorded[i]],
          `${entry.name}: message ${i} bytes`,
        )
      );
      compared++;
      await store.close();
    }
    assertEquals(compared, 8, "recorded streams compared");
  } finally {
    await dir.dispose();
  }
});

Deno.test("demo snap-3 and its deltas match its description and the image bytes", async () => {
  const dir = await TempDataDir.create();
  try {
    await seedNodeDemoIfEmpty(dir.dir);
    const store = new NodeFileSnapshotStore({ dataDir: dir.dir });
    const image = (name: string) =>
      Deno.readFile(dir.path(DEMO.namespace, DEMO.volume, `${name}.img`));
    for (const snap of DEMO.snapshots) {
      const bytes = await image(snap.name);
      assertEquals(bytes.length, DEMO.volumeCapacityBytes, `${snap.name} size`);
      assertEquals(
        allocatedBlocks(bytes),
        snap.allocatedBlocks,
        `${snap.name} allocated (bytes vs description)`,
      );
      const info = await store.getSnapshot(DEMO.namespace, snap.name, call());
      assertEquals(info.snapshotId, snap.snapshotId, `${snap.name} id`);
    }
    for (const d of DEMO.deltas) {
      const base = await image(d.base.split("/")[1]);
      const target = await image(d.target);
      assertEquals(
        changedBlocks(base, target),
        d.changedBlocks,
        `${d.base} → ${d.target} (bytes vs description)`,
      );
      const tuples = checkMessages(
        await collect(store.getMetadataDelta(
          {
            namespace: DEMO.namespace,
            baseSnapshotId: d.base,
            targetSnapshotName: d.target,
            startingOffset: 0,
            maxResults: 0,
            securityToken: "",
          },
          call(),
        )),
        FIXED_LENGTH,
        DEMO.volumeCapacityBytes,
        0,
        `${d.base} → ${d.target}`,
      );
      assertEquals(
        tuples.map(([o]) => o / BLOCK),
        d.changedBlocks,
        `${d.base} → ${d.target} streamed`,
      );
    }
    assertEquals(DEMO.deltas[1].changedBlocks, [
      3,
      4,
      5,
      6,
      7,
      20,
      1024,
      ...range(4000, 4031),
      4095,
    ], "snap-3 changes");
    await store.close();
  } finally {
    await dir.dispose();
  }
});

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

// ---------- snapshots, listing and errors ----------

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

// ---------- cancellation and resources ----------

/** Open file descriptors of this process: the kernel's count, not ours. */
function openFds(): number {
  let n = 0;
  for (const _ of Deno.readDirSync("/proc/self/fd")) n++;
  return n;
}

/** Bytes this process has read through read(2) and friends. */
function bytesRead(): number {
  const m = /rchar:\s*(\d+)/.exec(Deno.readTextFileSync("/proc/self/io"));
  return Number(m![1]);
}

/** Waits (bounded) until `cond` holds; file closes finish asynchronously. */
async function eventually(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) {
    await new Promise((r) => setTimeout(r, 5));
  }
  assert(cond(), `timed out waiting for ${what}`);
}

const BIG = 64 << 20;

async function bigVolume(dir: TempDataDir): Promise<void> {
  // Sparse 64 MiB volumes: "big" has a data block every 256 KiB (so every
  // chunk yields tuples), "big2" is all zeros (so the delta is those blocks).
  await Deno.mkdir(dir.path("ns", "vol"), { recursive: true });
  const data = new Uint8Array(BLOCK).fill(7);
  for (const name of ["big", "big2"]) {
    const f = await Deno.open(dir.path("ns", "vol", `${name}.img`), {
      create: true,
      write: true,
    });
    await f.truncate(BIG);
    for (let off = 0; name === "big" && off < BIG; off += 256 << 10) {
      await f.seek(off, Deno.SeekMode.Start);
      await f.write(data);
    }
    f.close();
  }
}

Deno.test("breaking out of the loop stops reading and closes the files", async () => {
  const dir = await TempDataDir.create();
  try {
    await bigVolume(dir);
    const store = new NodeFileSnapshotStore({ dataDir: dir.dir });
    const fds = openFds();
    for (const kind of ["allocated", "delta"]) {
      const before = bytesRead();
      const q = {
        namespace: "ns",
        startingOffset: 0,
        maxResults: 1,
        securityToken: "",
      };
      const stream = kind === "allocated"
        ? store.getMetadataAllocated({ ...q, snapshotName: "big" }, call())
        : store.getMetadataDelta({
          ...q,
          baseSnapshotId: "vol/big2",
          targetSnapshotName: "big",
        }, call());
      let seen = 0;
      for await (const _ of stream) {
        if (++seen === 3) {
          assert(openFds() > fds, `${kind}: the image is open while streaming`);
          break;
        }
      }
      assertEquals(seen, 3, `${kind}: messages before break`);
      // Three messages need a few MiB at most, never the whole 64 MiB volume.
      const read = bytesRead() - before;
      assert(
        read < 8 << 20,
        `${kind}: read ${read} bytes for 3 messages: the scan ran ahead`,
      );
      await eventually(() => openFds() === fds, `${kind}: fds back to ${fds}`);
      assertEquals(store.openFiles, 0, `${kind}: store's open files`);
    }
    await store.close();
  } finally {
    await dir.dispose();
  }
});

Deno.test("aborting the signal closes files at once, even while the consumer is idle", async () => {
  const dir = await TempDataDir.create();
  try {
    await bigVolume(dir);
    const store = new NodeFileSnapshotStore({ dataDir: dir.dir });
    const fds = openFds();

    // Suspended between messages: the abort alone must release the files.
    const ac = new AbortController();
    const it = store.getMetadataDelta(
      {
        namespace: "ns",
        baseSnapshotId: "vol/big2",
        targetSnapshotName: "big",
        startingOffset: 0,
        maxResults: 1,
        securityToken: "",
      },
      call(ac.signal),
    )[Symbol.asyncIterator]();
    assert(!(await it.next()).done, "first message");
    assertEquals(openFds(), fds + 2, "base and target open");
    const before = bytesRead();
    ac.abort();
    await eventually(
      () => openFds() === fds && store.openFiles === 0,
      "files released by abort alone",
    );
    // Draining what was already found is harmless; then the stream fails as canceled.
    await expectError(
      (async () => {
        while (!(await it.next()).done) {
          /* messages found before the abort */
        }
      })(),
      Code.Canceled,
    );
    assert(bytesRead() - before < 2 << 20, "nothing read after the abort");

    // Aborted while a read is in flight.
    const ac2 = new AbortController();
    const it2 = store.getMetadataAllocated(
      {
        namespace: "ns",
        snapshotName: "big",
        startingOffset: 0,
        maxResults: 0,
        securityToken: "",
      },
      call(ac2.signal),
    )[Symbol.asyncIterator]();
    const pending = it2.next();
    ac2.abort();
    await expectError(pending, Code.Canceled);
    await eventually(
      () => openFds() === fds,
      "fds released after an in-flight abort",
    );

    // Already aborted: nothing opens.
    const ac3 = new AbortController();
    ac3.abort();
    await expectError(
      collect(store.getMetadataAllocated(
        {
          namespace: "ns",
          snapshotName: "big",
          startingOffset: 0,
          maxResults: 0,
          securityToken: "",
        },
        call(ac3.signal),
      )),
      Code.Canceled,
    );
    assertEquals(openFds(), fds, "no fds for an aborted call");
    await store.close();
  } finally {
    await dir.dispose();
  }
});

Deno.test("close() ends open streams and releases their files", async () => {
  const dir = await TempDataDir.create();
  try {
    await bigVolume(dir);
    const store = new NodeFileSnapshotStore({ dataDir: dir.dir });
    const fds = openFds();
    const it = store.getMetadataAllocated(
      {
        namespace: "ns",
        snapshotName: "big",
        startingOffset: 0,
        maxResults: 1,
        securityToken: "",
      },
      call(),
    )[Symbol.asyncIterator]();
    assert(!(await it.next()).done, "first message");
    assertEquals(store.openFiles, 1, "one image open");
    await store.close();
    assertEquals(store.openFiles, 0, "closed by close()");
    assertEquals(openFds(), fds, "fds after close()");
    await expectError(
      (async () => {
        while (!(await it.next()).done) { /* drain */ }
      })(),
      Code.Canceled,
    );
  } finally {
    await dir.dispose();
  }
});
