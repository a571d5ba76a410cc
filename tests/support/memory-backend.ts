/**
 * A small in-memory Backend for front tests: snapshots are sets of 4 KiB
 * blocks with a content tag each (allocated = present, changed = different
 * tag), served like the reference driver (spec §6). It can pause a stream,
 * fail it after N messages, and records what the fronts did to it (aborts).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type {
  AllocatedQuery,
  Backend,
  CallOptions,
  DeltaQuery,
  EncodedMessageStream,
  SnapshotInfo,
} from "../../src/backend/backend.ts";
import {
  encodeMetadataMessage,
  FIXED_LENGTH,
  VARIABLE_LENGTH,
} from "../../src/wire/metadata-message.ts";

export const BLOCK_SIZE = 4096;

export interface MemorySnapshot {
  namespace: string;
  name: string;
  volume: string;
  volumeCapacityBytes: number;
  /** block index → content tag; absent blocks are all zeros */
  blocks: Map<number, number>;
  readyToUse?: boolean;
}

export interface Injection {
  /** Fail the stream after this many messages… */
  failAfterMessages?: number;
  /** …with this code (default Unavailable). */
  failCode?: Code;
  /** Wait for `release()` before sending message number N (0-based). */
  pauseBeforeMessage?: number;
  /** Apply to the next stream only. */
  once?: boolean;
}

export class MemoryBackend implements Backend {
  readonly name = "memory";
  readonly snapshots: MemorySnapshot[] = [];
  blockMetadataType = FIXED_LENGTH;
  /** Applies to every stream started from now on. */
  injection: Injection = {};
  /** Streams started, and how many of them saw their signal abort. */
  streamsStarted = 0;
  streamsAborted = 0;
  streamsFinished = 0;
  /** Messages produced by all streams (to observe backpressure). */
  messagesYielded = 0;
  /** Queries the streams were started with, for tests that check the parameters arrived. */
  readonly queries: (AllocatedQuery | DeltaQuery)[] = [];
  #release: (() => void) | undefined;
  #released: Promise<void> = Promise.resolve();

  add(snapshot: MemorySnapshot): this {
    this.snapshots.push(snapshot);
    return this;
  }

  /** Arms a pause; the stream waits at `pauseBeforeMessage` until `release()`. */
  armPause(beforeMessage: number): void {
    this.injection = { ...this.injection, pauseBeforeMessage: beforeMessage };
    this.#released = new Promise((resolve) => (this.#release = resolve));
  }

  release(): void {
    this.#release?.();
  }

  static snapshotId(s: MemorySnapshot): string {
    return `${s.volume}/${s.name}`;
  }

  #find(namespace: string, name: string): MemorySnapshot {
    const s = this.snapshots.find((x) =>
      x.namespace === namespace && x.name === name
    );
    if (!s) {
      throw new ConnectError(
        `snapshot ${namespace}/${name} not found`,
        Code.NotFound,
      );
    }
    return s;
  }

  getMetadataAllocated(
    q: AllocatedQuery,
    o: CallOptions,
  ): EncodedMessageStream {
    this.queries.push(q);
    return this.#stream(o, q.startingOffset, q.maxResults, () => {
      const s = this.#find(q.namespace, q.snapshotName);
      return { capacity: s.volumeCapacityBytes, blocks: [...s.blocks.keys()] };
    });
  }

  getMetadataDelta(q: DeltaQuery, o: CallOptions): EncodedMessageStream {
    this.queries.push(q);
    return this.#stream(o, q.startingOffset, q.maxResults, () => {
      const target = this.#find(q.namespace, q.targetSnapshotName);
      const base = this.snapshots.find((s) =>
        MemoryBackend.snapshotId(s) === q.baseSnapshotId
      );
      if (!base) {
        throw new ConnectError(
          `snapshot id ${q.baseSnapshotId} not found`,
          Code.NotFound,
        );
      }
      const all = new Set([...base.blocks.keys(), ...target.blocks.keys()]);
      const changed = [...all].filter((b) =>
        base.blocks.get(b) !== target.blocks.get(b)
      );
      return { capacity: target.volumeCapacityBytes, blocks: changed };
    });
  }

  getSnapshot(namespace: string, name: string): Promise<SnapshotInfo> {
    try {
      return Promise.resolve(this.#info(this.#find(namespace, name)));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  listSnapshots(namespace: string): Promise<SnapshotInfo[]> {
    return Promise.resolve(
      this.snapshots.filter((s) => s.namespace === namespace).map((s) =>
        this.#info(s)
      ),
    );
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  #info(s: MemorySnapshot): SnapshotInfo {
    return {
      namespace: s.namespace,
      name: s.name,
      snapshotId: MemoryBackend.snapshotId(s),
      volume: s.volume,
      volumeCapacityBytes: s.volumeCapacityBytes,
      readyToUse: s.readyToUse ?? true,
    };
  }

  /** Like the reference driver: tuples ending after the offset, `maxResults` (default 256) per message. */
  async *#stream(
    o: CallOptions,
    startingOffset: number,
    maxResults: number,
    resolve: () => { capacity: number; blocks: number[] },
  ): AsyncGenerator<Uint8Array> {
    this.streamsStarted++;
    const injection = this.injection;
    if (injection.once) this.injection = {};
    let aborted = false;
    let wake = () => {};
    const abortedPromise = new Promise<void>((resolve) => (wake = resolve));
    const onAbort = () => {
      aborted = true;
      this.streamsAborted++;
      wake();
    };
    o.signal.addEventListener("abort", onAbort, { once: true });
    try {
      const { capacity, blocks } = resolve();
      const wanted = blocks.filter((b) => (b + 1) * BLOCK_SIZE > startingOffset)
        .sort((a, b) => a - b);
      const perMessage = maxResults > 0 ? maxResults : 256;
      let sent = 0;
      for (let i = 0; i < wanted.length; i += perMessage) {
        if (sent === injection.failAfterMessages) {
          throw new ConnectError(
            "injected failure",
            injection.failCode ?? Code.Unavailable,
          );
        }
        if (sent === injection.pauseBeforeMessage) {
          await Promise.race([this.#released, abortedPromise]);
        }
        if (aborted) throw new ConnectError("canceled", Code.Canceled);
        const chunk = wanted.slice(i, i + perMessage);
        const offsets: number[] = [], sizes: number[] = [];
        for (const b of chunk) {
          const last = offsets.length - 1;
          if (
            this.blockMetadataType === VARIABLE_LENGTH && last >= 0 &&
            offsets[last] + sizes[last] === b * BLOCK_SIZE
          ) {
            sizes[last] += BLOCK_SIZE;
          } else {
            offsets.push(b * BLOCK_SIZE);
            sizes.push(BLOCK_SIZE);
          }
        }
        yield encodeMetadataMessage({
          blockMetadataType: this.blockMetadataType,
          volumeCapacityBytes: capacity,
          offsets,
          sizes,
        });
        sent++;
        this.messagesYielded++;
      }
      if (sent === injection.failAfterMessages) {
        throw new ConnectError(
          "injected failure",
          injection.failCode ?? Code.Unavailable,
        );
      }
      this.streamsFinished++;
    } finally {
      o.signal.removeEventListener("abort", onAbort);
    }
  }
}

/** Block sets of the documented demo data: namespace demo, vol-1 (16 MiB), snap-1..3. */
export function demoBackend(): MemoryBackend {
  const capacity = 16 * 1024 * 1024;
  const snap1 = new Map<number, number>();
  for (const b of [0, 1, 2, 10, 20, ...range(100, 132), 2048, 4095]) {
    snap1.set(b, 1);
  }
  const snap2 = new Map(snap1);
  for (const b of [0, 1, ...range(116, 148), 1024, 4094]) snap2.set(b, 2);
  snap2.delete(10);
  const snap3 = new Map(snap2);
  for (const b of range(3000, 3600)) snap3.set(b, 3);
  const backend = new MemoryBackend();
  for (
    const [name, blocks] of [["snap-1", snap1], ["snap-2", snap2], [
      "snap-3",
      snap3,
    ]] as const
  ) {
    backend.add({
      namespace: "demo",
      name,
      volume: "vol-1",
      volumeCapacityBytes: capacity,
      blocks,
    });
  }
  return backend;
}

export function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}
