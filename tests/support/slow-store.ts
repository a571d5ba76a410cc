/**
 * The embedded store, except that allocated streams of some snapshot names
 * are paced like a real sidecar's: the first message at once, then one
 * message every `intervalMs`, with the blocks of another snapshot. A test
 * can then cancel a stream that is certainly still running at this tier —
 * and a runtime that notices a gone client only when it next writes
 * (workerd) gets that next write soon — or cut a link mid-stream without
 * the whole stream arriving in one burst.
 * Counts the paced streams whose call was aborted before they ended.
 */
import type {
  AllocatedQuery,
  Backend,
  CallOptions,
  DeltaQuery,
  EncodedMessageStream,
} from "../../src/backend/backend.ts";
import type { NodeFileSnapshotStore } from "../../src/adapter/node-fs/file-store.ts";

export class SlowStore implements Backend {
  readonly name = "embedded";
  /** Slow streams whose call was aborted before they ended. */
  abortedWhileSlow = 0;

  constructor(
    private readonly store: NodeFileSnapshotStore,
    /** Paced snapshot name → the snapshot whose blocks it streams, and how fast. */
    private readonly paced: Record<
      string,
      { servedAs: string; intervalMs: number }
    >,
  ) {}

  getMetadataAllocated(q: AllocatedQuery, o: CallOptions) {
    const pace = Object.hasOwn(this.paced, q.snapshotName)
      ? this.paced[q.snapshotName]
      : undefined;
    if (!pace) return this.store.getMetadataAllocated(q, o);
    return this.#slow(
      this.store.getMetadataAllocated({ ...q, snapshotName: pace.servedAs }, o),
      pace.intervalMs,
      o.signal,
    );
  }

  getMetadataDelta(q: DeltaQuery, o: CallOptions) {
    return this.store.getMetadataDelta(q, o);
  }

  getSnapshot(ns: string, name: string, o: CallOptions) {
    return this.store.getSnapshot(ns, name, o);
  }

  listSnapshots(ns: string, o: CallOptions) {
    return this.store.listSnapshots(ns, o);
  }

  close() {
    return this.store.close();
  }

  async *#slow(
    stream: EncodedMessageStream,
    intervalMs: number,
    signal: AbortSignal,
  ): EncodedMessageStream {
    let first = true;
    for await (const message of stream) {
      if (!first && !(await pause(intervalMs, signal))) {
        this.abortedWhileSlow++;
        return; // like a backend whose call was aborted: it stops quietly
      }
      first = false;
      yield message;
    }
  }
}

/** Waits `ms`; false if the call was aborted meanwhile. */
function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
