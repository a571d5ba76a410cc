/**
 * A list-and-watch cache of one cluster-scoped resource, keyed by name.
 *
 * client-node's ListWatch stops for good on the first watch error and never
 * resyncs; a gateway that must keep routing for days needs more: it lists,
 * watches from the list's resourceVersion (with bookmarks), re-watches when
 * the server ends the stream, re-lists on 410 Gone and on a periodic resync,
 * and backs off and retries after failures. Readers see the last good state
 * meanwhile.
 */
import { apiStatus, type KubeObject, type ObjectList } from "./kube-api.ts";

export interface InformerSource {
  list(): Promise<ObjectList>;
  watch(
    resourceVersion: string,
    timeoutSeconds: number,
    onEvent: (type: string, object: KubeObject) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController>;
}

export interface InformerOptions {
  /** Re-list this often even when the watch is healthy (default 5 min). */
  resyncMs?: number;
  /** Server-side watch timeout (default 300 s); the watch is then renewed. */
  watchTimeoutSeconds?: number;
  /** First retry delay after a failure (default 250 ms), doubling. */
  retryMs?: number;
  /** Longest retry delay (default 30 s). */
  maxRetryMs?: number;
  /** Told about failures (they are retried regardless). */
  onError?: (err: unknown) => void;
}

/** How one watch stream ended. */
type WatchEnd = "closed" | "gone" | "resync" | "stopped" | { error: unknown };

export class Informer {
  readonly #source: InformerSource;
  readonly #options: Required<Omit<InformerOptions, "onError">>;
  readonly #onError: (err: unknown) => void;
  #items = new Map<string, KubeObject>();
  #resourceVersion = "";
  #synced = false;
  #syncWaiters: (() => void)[] = [];
  #stopped = false;
  #current?: AbortController;
  #endCurrent?: (end: WatchEnd) => void;
  #wake?: () => void;
  #loop?: Promise<void>;
  #listeners = new Set<() => void>();
  /** Counts list calls, for tests and metrics. */
  lists = 0;

  constructor(source: InformerSource, options: InformerOptions = {}) {
    this.#source = source;
    this.#options = {
      resyncMs: options.resyncMs ?? 5 * 60_000,
      watchTimeoutSeconds: options.watchTimeoutSeconds ?? 300,
      retryMs: options.retryMs ?? 250,
      maxRetryMs: options.maxRetryMs ?? 30_000,
    };
    this.#onError = options.onError ?? (() => {});
  }

  get synced(): boolean {
    return this.#synced;
  }

  /** The object named `name`, as last seen; undefined when absent. */
  get(name: string): KubeObject | undefined {
    return this.#items.get(name);
  }

  list(): KubeObject[] {
    return [...this.#items.values()];
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  /**
   * Calls `listener` after every change the informer takes in (watch event
   * or re-list); returns the unsubscribe function.
   */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #changed(): void {
    for (const listener of [...this.#listeners]) listener();
  }

  /** Resolves true once the first list has landed, false after `timeoutMs`. */
  waitForSync(timeoutMs: number): Promise<boolean> {
    if (this.#synced) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.#syncWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /** Forces a re-list now (as the periodic resync does). */
  resync(): void {
    this.#resourceVersion = "";
    this.#endCurrent?.("resync");
    this.#wake?.();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#endCurrent?.("stopped");
    this.#wake?.();
    await this.#loop;
  }

  async #run(): Promise<void> {
    let delay = this.#options.retryMs;
    let lastList = 0;
    while (!this.#stopped) {
      try {
        if (
          !this.#resourceVersion ||
          Date.now() - lastList >= this.#options.resyncMs
        ) {
          await this.#relist();
          lastList = Date.now();
        }
        const end = await this.#watchOnce(
          this.#options.resyncMs - (Date.now() - lastList),
        );
        if (end === "gone" || end === "resync") this.#resourceVersion = "";
        if (typeof end === "object") throw end.error;
        delay = this.#options.retryMs;
      } catch (err) {
        if (this.#stopped) break;
        if (apiStatus(err) === 410) this.#resourceVersion = "";
        this.#onError(err);
        await this.#sleep(delay);
        delay = Math.min(delay * 2, this.#options.maxRetryMs);
      }
    }
  }

  async #relist(): Promise<void> {
    this.lists++;
    const list = await this.#source.list();
    this.#items = new Map(list.items.map((o) => [o.metadata.name, o]));
    this.#resourceVersion = list.resourceVersion;
    this.#changed();
    if (!this.#synced) {
      this.#synced = true;
      for (const w of this.#syncWaiters.splice(0)) w();
    }
  }

  /** One watch stream, until it ends, fails, or the resync is due. */
  #watchOnce(untilResyncMs: number): Promise<WatchEnd> {
    return new Promise<WatchEnd>((resolve) => {
      let settled = false;
      const finish = (end: WatchEnd) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#current?.abort();
        this.#current = undefined;
        this.#endCurrent = undefined;
        resolve(end);
      };
      const timer = setTimeout(
        () => finish("resync"),
        Math.max(0, untilResyncMs),
      );
      this.#endCurrent = finish;
      if (this.#stopped) return finish("stopped");
      this.#source.watch(
        this.#resourceVersion,
        this.#options.watchTimeoutSeconds,
        (type, object) => {
          if (settled) return;
          if (type === "ERROR") {
            // A Status object: 410 means our resourceVersion is too old.
            const code = (object as unknown as { code?: number }).code;
            finish(code === 410 ? "gone" : { error: object });
            return;
          }
          this.#apply(type, object);
        },
        (err) => {
          if (apiStatus(err) === 410) finish("gone");
          else if (err) finish({ error: err });
          else finish("closed");
        },
      ).then((controller) => {
        if (settled) controller.abort();
        else this.#current = controller;
      }, (err) => finish({ error: err }));
    });
  }

  #apply(type: string, object: KubeObject): void {
    const name = object?.metadata?.name;
    const rv = object?.metadata?.resourceVersion;
    if (type === "ADDED" || type === "MODIFIED") {
      if (name) this.#items.set(name, object);
    } else if (type === "DELETED") {
      if (name) this.#items.delete(name);
    }
    if (name && type !== "BOOKMARK") this.#changed();
    // BOOKMARK carries only a resourceVersion: remember where we are.
    if (rv) this.#resourceVersion = rv;
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
  }
}
