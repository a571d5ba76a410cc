/**
 * The embedded store, except that streams of one (target) snapshot are
 * slow, like a real sidecar's: the first message at once, then one message
 * every `intervalMs`. A test can then cancel a stream that is certainly
 * still running at this tier — and a runtime that notices a gone client
 * only when it next writes (workerd) gets that next write soon.
 * Counts the slow streams whose call was aborted before they ended.
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
    private readonly options: {
      /** The snapshot name that streams slowly… */
      slow: string;
      /** …with the blocks of this one. */
      servedAs: string;
      intervalMs: number;
    },
  ) {}

  getMetadataAllocated(q: AllocatedQuery, o: CallOptions) {
    if (q.snapshotName !== this.options.slow) {
      return this.store.getMetadataAllocated(q, o);
    }
    return this.#slow(
      this.store.getMetadataAllocated(
        { ...q, snapshotName: this.options.servedAs },
        o,
      ),
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
    signal: AbortSignal,
  ): EncodedMessageStream {
    let first = true;
    for await (const message of stream) {
      if (!first && !(await this.#pause(signal))) {
        this.abortedWhileSlow++;
        return; // like a backend whose call was aborted: it stops quietly
      }
      first = false;
      yield message;
    }
  }

  /** Waits one interval; false if the call was aborted meanwhile. */
  #pause(signal: AbortSignal): Promise<boolean> {
    if (signal.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const onAbort = () => {
        clearTimeout(timer);
        resolve(false);
      };
      const timer = setTimeout(() => {
        signal.removeEventListener("abort", onAbort);
        resolve(true);
      }, this.options.intervalMs);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }
}
