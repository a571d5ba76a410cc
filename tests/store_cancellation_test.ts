/**
 * Cancellation in the file store: breaking out of a stream, aborting its
 * signal (even while the consumer is idle) and closing the store each stop
 * reading and release the image files at once. Open file descriptors are
 * counted in /proc/self/fd and bytes read in /proc/self/io, the kernel's
 * numbers, not the store's.
 */
import { Code } from "@connectrpc/connect";
import { TempDataDir } from "./support/images.ts";
import { collect } from "./support/collect.ts";
import {
  assert,
  assertEquals,
  call,
  expectError,
} from "./support/store-checks.ts";
import { waitFor } from "./support/wait.ts";
import { NodeFileSnapshotStore } from "../src/adapter/node-fs/file-store.ts";

const BLOCK = 4096;

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
      await waitFor(`${kind}: fds back to ${fds}`, () => openFds() === fds);
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
    await waitFor(
      "files released by abort alone",
      () => openFds() === fds && store.openFiles === 0,
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
    await waitFor(
      "fds released after an in-flight abort",
      () => openFds() === fds,
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
