/**
 * Transparent resume: a Backend decorator for backends that call an
 * upstream (Kubernetes, the static relay, a Connect upstream). When the
 * upstream stream ends in a way worth retrying — the sidecar's own stream
 * cap (DeadlineExceeded), Unavailable (reset, GOAWAY, restart, TLS or
 * connect failure), or a SnapshotMetadataService that moved — the call is
 * reopened at the end of the last tuple already relayed, and the client
 * sees one stream with no gap and no duplicate.
 *
 * Why nothing is lost or doubled:
 * - streams are message-granular: an envelope cut mid-way never reaches the
 *   consumer (the inner backends only hand out whole messages);
 * - the cut is the end of the last tuple of the last message handed out;
 * - the reopened call asks from the block below the cut, and its first
 *   messages lose the tuples that end at or before the cut; a
 *   VARIABLE_LENGTH extent straddling the cut is cut to start there
 *   (`tuplesAfter`, the same alignment the Kubernetes backend uses).
 *
 * Only a stream that has relayed something is resumed: a call that fails
 * before its first message answers as it always has (an unready snapshot
 * is not worth retrying). Never retried: the caller's own cancel or
 * deadline, and every other code (InvalidArgument, NotFound,
 * PermissionDenied, Unauthenticated, OutOfRange, Internal…). The gateway's
 * invariant checks sit downstream (CheckedStream) and end the stream
 * themselves.
 *
 * Pacing: capped exponential backoff with full jitter between attempts, at
 * most `maxAttempts` reopenings in a row that relay nothing, and at most
 * `budgetMs` from the failure to the next relayed message. Waits end at
 * once when the caller's signal aborts.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import type {
  AllocatedQuery,
  Backend,
  CallOptions,
  DeltaQuery,
  EncodedMessageStream,
  ResumeReason,
  SnapshotInfo,
} from "../backend/backend.ts";
import { alignDown, tuplesAfter } from "../backend/offset-alignment.ts";
import {
  envelopeLength,
  type EnvelopeRunSource,
  hasEnvelopeRuns,
} from "../wire/envelopes.ts";
import { decodeMetadataMessage } from "../wire/metadata-message.ts";
import { isServiceChanged } from "../backend/service-changed.ts";

export interface ResumePolicy {
  /** Reopenings in a row that relay nothing before giving up. */
  maxAttempts: number;
  /** Longest time from a failure to the next relayed message. */
  budgetMs: number;
  /** First backoff ceiling; doubles per attempt up to `maxDelayMs`. */
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RESUME_POLICY: ResumePolicy = {
  maxAttempts: 5,
  budgetMs: 30_000,
  baseDelayMs: 100,
  maxDelayMs: 5_000,
};

/** The part of the gateway's config that shapes resume. */
export interface ResumeConfig {
  resume?: boolean;
  resumeBudgetMs?: number;
  resumeAttempts?: number;
}

/** `backend` with resume, unless the config turns it off (default on). */
export function withResume(backend: Backend, config: ResumeConfig): Backend {
  if (config.resume === false) return backend;
  return new ResumingBackend(backend, {
    ...DEFAULT_RESUME_POLICY,
    budgetMs: config.resumeBudgetMs ?? DEFAULT_RESUME_POLICY.budgetMs,
    maxAttempts: config.resumeAttempts ?? DEFAULT_RESUME_POLICY.maxAttempts,
  });
}

/** Why a failed stream is worth reopening; undefined: it is not. */
export function resumeReason(
  e: unknown,
  signal: AbortSignal,
): ResumeReason | undefined {
  if (signal.aborted || !(e instanceof ConnectError)) return undefined;
  if (isServiceChanged(e)) {
    return "service_changed";
  }
  if (e.code === Code.DeadlineExceeded) return "upstream_deadline";
  if (e.code === Code.Unavailable) return "unavailable";
  return undefined;
}

export class ResumingBackend implements Backend {
  readonly name: string;

  constructor(
    private readonly inner: Backend,
    private readonly policy: ResumePolicy = DEFAULT_RESUME_POLICY,
    /** Jitter source (tests pass a seeded one). */
    private readonly random: () => number = Math.random,
  ) {
    this.name = inner.name;
  }

  getMetadataAllocated(
    query: AllocatedQuery,
    options: CallOptions,
  ): EncodedMessageStream {
    return this.#resumable(
      query.startingOffset,
      options,
      (offset) =>
        this.inner.getMetadataAllocated(
          offset === undefined ? query : { ...query, startingOffset: offset },
          options,
        ),
    );
  }

  getMetadataDelta(
    query: DeltaQuery,
    options: CallOptions,
  ): EncodedMessageStream {
    return this.#resumable(
      query.startingOffset,
      options,
      (offset) =>
        this.inner.getMetadataDelta(
          offset === undefined ? query : { ...query, startingOffset: offset },
          options,
        ),
    );
  }

  getSnapshot(
    namespace: string,
    name: string,
    options: CallOptions,
  ): Promise<SnapshotInfo> {
    return this.inner.getSnapshot(namespace, name, options);
  }

  listSnapshots(
    namespace: string,
    options: CallOptions,
  ): Promise<SnapshotInfo[]> {
    return this.inner.listSnapshots(namespace, options);
  }

  ready(): boolean {
    return this.inner.ready?.() ?? true;
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  /**
   * The stream, per message or (when the inner stream offers them) as runs
   * of envelopes, so binary fronts keep their one-write-per-run path.
   * `open(undefined)` is the caller's own query; `open(n)` reopens at n.
   */
  #resumable(
    startingOffset: number,
    options: CallOptions,
    open: (offset?: number) => EncodedMessageStream,
  ): EncodedMessageStream {
    const first = open();
    const resume = (units: Units) =>
      this.#resume(startingOffset, options, units);
    const messages = () =>
      resume({
        first: first,
        reopen: (offset) => open(offset),
        last: lastTupleOfMessage,
        trim: (m, cut) => tuplesAfter(m, cut, true),
      });
    if (!hasEnvelopeRuns(first)) {
      return { [Symbol.asyncIterator]: () => messages() };
    }
    const stream: EncodedMessageStream & EnvelopeRunSource = {
      [Symbol.asyncIterator]: () => messages(),
      envelopeRuns: () =>
        resume({
          first: first.envelopeRuns(),
          reopen: (offset) => runsOf(open(offset)),
          last: lastTupleOfRun,
          trim: trimRun,
        }),
    };
    return stream;
  }

  async *#resume(
    startingOffset: number,
    options: CallOptions,
    units: Units,
  ): AsyncGenerator<Uint8Array> {
    const { signal } = options;
    let stream = units.first;
    let cut = startingOffset;
    let capacity = Infinity;
    let relayed = false;
    // The current run of reopenings that relayed nothing.
    let attempts = 0;
    let failedAt = 0;
    for (;;) {
      let last: Uint8Array | undefined;
      let trimming = relayed;
      try {
        for await (let unit of stream) {
          if (trimming) {
            const kept = units.trim(unit, cut);
            if (kept === undefined) continue;
            unit = kept;
            trimming = false;
          }
          last = unit;
          attempts = 0;
          relayed = true;
          yield unit;
        }
        return;
      } catch (e) {
        if (last !== undefined) {
          const end = units.last(last);
          cut = end.offset;
          capacity = end.capacity;
        }
        if (signal.aborted) throw aborted(e);
        const reason = resumeReason(e, signal);
        if (reason === undefined || !relayed) throw e;
        // Every tuple up to the volume's end is out: nothing is left to ask.
        if (cut >= capacity) return;
        if (attempts === 0) failedAt = performance.now();
        attempts++;
        const delay = this.#backoff(attempts);
        const spent = performance.now() - failedAt;
        if (
          attempts > this.policy.maxAttempts ||
          spent + delay > this.policy.budgetMs
        ) {
          throw gaveUp(e, attempts - 1, spent);
        }
        await sleep(delay, signal);
        options.onResume?.(reason);
        stream = units.reopen(alignDown(cut));
      }
    }
  }

  /** Full jitter: uniform in [0, min(max, base·2^(attempt−1))). */
  #backoff(attempt: number): number {
    const { baseDelayMs, maxDelayMs } = this.policy;
    const ceiling = Math.min(maxDelayMs, baseDelayMs * 2 ** (attempt - 1));
    return Math.floor(this.random() * ceiling);
  }
}

/** How one kind of unit (a message, or a run of envelopes) is resumed. */
interface Units {
  first: AsyncIterable<Uint8Array>;
  reopen(offset: number): AsyncIterable<Uint8Array>;
  /** End of the unit's last tuple, and the volume's capacity. */
  last(unit: Uint8Array): { offset: number; capacity: number };
  /** The unit without what ends at or before `cut`; undefined if nothing is left. */
  trim(unit: Uint8Array, cut: number): Uint8Array | undefined;
}

function lastTupleOfMessage(bytes: Uint8Array) {
  const m = decodeMetadataMessage(bytes);
  const i = m.offsets.length - 1;
  return { offset: m.offsets[i] + m.sizes[i], capacity: m.volumeCapacityBytes };
}

/** Start of the last envelope in a run of whole envelopes. */
function lastEnvelopeAt(run: Uint8Array): number {
  let pos = 0;
  for (;;) {
    const next = pos + 5 + envelopeLength(run, pos);
    if (next >= run.length) return pos;
    pos = next;
  }
}

function lastTupleOfRun(run: Uint8Array) {
  const at = lastEnvelopeAt(run);
  return lastTupleOfMessage(
    run.subarray(at + 5, at + 5 + envelopeLength(run, at)),
  );
}

/** A run with its leading tuples up to `cut` trimmed, re-enveloped where needed. */
function trimRun(run: Uint8Array, cut: number): Uint8Array | undefined {
  let pos = 0;
  while (pos < run.length) {
    const end = pos + 5 + envelopeLength(run, pos);
    const message = run.subarray(pos + 5, end);
    const kept = tuplesAfter(message, cut, true);
    if (kept === message) return run.subarray(pos);
    if (kept !== undefined) {
      const head = encodeEnvelope(0, kept);
      const out = new Uint8Array(head.length + run.length - end);
      out.set(head);
      out.set(run.subarray(end), head.length);
      return out;
    }
    pos = end;
  }
  return undefined;
}

async function* runsOf(
  stream: EncodedMessageStream,
): AsyncGenerator<Uint8Array> {
  if (hasEnvelopeRuns(stream)) {
    yield* stream.envelopeRuns();
    return;
  }
  for await (const m of stream) yield encodeEnvelope(0, m);
}

function gaveUp(e: unknown, attempts: number, spentMs: number): ConnectError {
  const cause = ConnectError.from(e);
  return new ConnectError(
    `${cause.rawMessage} (gave up resuming after ${attempts} attempt${
      attempts === 1 ? "" : "s"
    } in ${(spentMs / 1000).toFixed(1)} s)`,
    cause.code,
    undefined,
    undefined,
    cause,
  );
}

/**
 * What an aborted call ends with: a cancellation, whatever the upstream call
 * made of the abort (the signal's raw reason, a reset stream). The checked
 * stream then reports the abort's own reason (a deadline, a shutdown).
 */
function aborted(e: unknown): ConnectError {
  if (e instanceof ConnectError && e.code === Code.Canceled) return e;
  return new ConnectError(
    "the call was aborted",
    Code.Canceled,
    undefined,
    undefined,
    e,
  );
}

/** Waits `ms`, or throws Canceled as soon as `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const cancelled = () =>
      new ConnectError("the call was aborted while resuming", Code.Canceled);
    if (signal.aborted) return reject(cancelled());
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(cancelled());
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
