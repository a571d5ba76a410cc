/**
 * The demo (src/store/demo-seed.ts) served by the file store, against the
 * real sidecar's recordings (tests/fixtures/real-sidecar): the seeded
 * blocks, byte-identical messages, and snap-3's description.
 */
import { DEMO } from "../src/store/demo-seed.ts";
import type { EncodedMessageStream } from "../src/backend/backend.ts";
import { FIXED_LENGTH, VARIABLE_LENGTH } from "../src/wire/metadata-message.ts";
import {
  allocatedBlocks,
  changedBlocks,
  type Tuple,
} from "./support/ground-truth.ts";
import { TempDataDir } from "./support/images.ts";
import { collect } from "./support/collect.ts";
import {
  assert,
  assertEquals,
  call,
  checkMessages,
  TYPES,
} from "./support/store-checks.ts";
import {
  NodeFileSnapshotStore,
  seedNodeDemoIfEmpty,
} from "../src/adapter/node-fs/file-store.ts";

const BLOCK = 4096;
const VECTORS = new URL(
  "./fixtures/real-sidecar/streams/",
  import.meta.url,
);

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
