/**
 * The resume decorator on its own, over an in-memory upstream that behaves
 * like a driver whose extents need not be block-aligned and whose message
 * boundaries depend on where a call starts (so a reopened stream's first
 * extent can straddle the cut). Ground truth is the upstream's extent list;
 * the stream goes through the gateway's CheckedStream, which refuses any
 * overlap or disorder.
 */
import { deepStrictEqual, equal, ok, rejects } from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { DEFAULT_RESUME_POLICY, ResumingBackend } from "../src/relay/resume.ts";
import { serviceChanged } from "../src/backend/service-changed.ts";
import type {
  AllocatedQuery,
  Backend,
  CallOptions,
  ResumeReason,
} from "../src/backend/backend.ts";
import { CheckedStream } from "../src/gateway/checked-stream.ts";
import { NEXT_OFFSET_KEY } from "../src/gateway/resumable-error.ts";
import {
  encodeMetadataMessage,
  VARIABLE_LENGTH,
} from "../src/wire/metadata-message.ts";
import { Rng } from "./support/images.ts";

type Tuple = [number, number];
const SECTOR = 512;
const BLOCK = 4096;

/** Seeded extents at 512-byte granularity, with gaps, inside `capacity`. */
function extentsOf(rng: Rng, capacity: number): Tuple[] {
  const out: Tuple[] = [];
  let at = rng.int(4) * SECTOR;
  while (at < capacity) {
    const len = Math.min((1 + rng.int(40)) * SECTOR, capacity - at);
    out.push([at, len]);
    at += len + rng.int(3) * SECTOR * 5; // sometimes adjacent, sometimes not
  }
  return out;
}

/** Merges adjacent or overlapping tuples: the bytes they cover. */
function coverage(tuples: Tuple[]): Tuple[] {
  const out: Tuple[] = [];
  for (const [off, len] of tuples) {
    const last = out.at(-1);
    if (last && last[0] + last[1] >= off) {
      last[1] = Math.max(last[1], off + len - last[0]);
    } else out.push([off, len]);
  }
  return out;
}

interface Plan {
  /** Per call: fail after this many messages (undefined: no failure). */
  failAfter: (number | undefined)[];
  error: (call: number) => unknown;
}

/**
 * A driver-like upstream: from `startingOffset`, the extents that end after
 * it, the first clipped to the block holding it, each split into pieces of
 * at most `piece` bytes counted from where the call started (so pieces
 * differ between calls), three per message.
 */
class ExtentUpstream implements Backend {
  readonly name = "extents";
  readonly starts: number[] = [];
  /** Every tuple any call produced, as "offset+size". */
  readonly produced = new Set<string>();
  constructor(
    readonly extents: Tuple[],
    readonly capacity: number,
    readonly piece: number,
    readonly plan: Plan,
    readonly withRuns: boolean,
  ) {}

  #messages(from: number): Uint8Array[] {
    const tuples: Tuple[] = [];
    const blockStart = from - (from % BLOCK);
    for (const [off, len] of this.extents) {
      if (off + len <= from) continue;
      let start = Math.max(off, blockStart);
      const end = off + len;
      while (start < end) {
        const size = Math.min(this.piece, end - start);
        tuples.push([start, size]);
        this.produced.add(`${start}+${size}`);
        start += size;
      }
    }
    const out: Uint8Array[] = [];
    for (let i = 0; i < tuples.length; i += 3) {
      const part = tuples.slice(i, i + 3);
      out.push(encodeMetadataMessage({
        blockMetadataType: VARIABLE_LENGTH,
        volumeCapacityBytes: this.capacity,
        offsets: part.map((t) => t[0]),
        sizes: part.map((t) => t[1]),
      }));
    }
    return out;
  }

  getMetadataAllocated(query: AllocatedQuery, options: CallOptions) {
    const call = this.starts.push(query.startingOffset) - 1;
    const messages = this.#messages(query.startingOffset);
    const failAfter = this.plan.failAfter[call];
    const error = this.plan.error(call);
    async function* one(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < messages.length; i++) {
        if (i === failAfter) throw error;
        options.signal.throwIfAborted();
        yield messages[i];
      }
    }
    // Runs of two envelopes, as a relay upstream hands them out: what
    // arrived before a failure still goes out first.
    async function* runs(): AsyncGenerator<Uint8Array> {
      let run: Uint8Array[] = [];
      try {
        for await (const m of one()) {
          run.push(encodeEnvelope(0, m));
          if (run.length === 2) {
            yield concat(run);
            run = [];
          }
        }
      } finally {
        if (run.length > 0) yield concat(run);
      }
    }
    return this.withRuns
      ? { [Symbol.asyncIterator]: one, envelopeRuns: runs }
      : one();
  }
  getMetadataDelta(): never {
    throw new Error("unused");
  }
  getSnapshot(): never {
    throw new Error("unused");
  }
  listSnapshots(): never {
    throw new Error("unused");
  }
  close() {
    return Promise.resolve();
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const FAST = { ...DEFAULT_RESUME_POLICY, baseDelayMs: 1, maxDelayMs: 2 };

function options(signal = new AbortController().signal) {
  const reasons: ResumeReason[] = [];
  const o: CallOptions = {
    signal,
    caller: { username: "test" },
    onResume: (r) => reasons.push(r),
  };
  return { options: o, reasons };
}

/** Reads a checked stream to its end, per message or as runs. */
async function drain(
  stream: CheckedStream,
  runs: boolean,
): Promise<Tuple[]> {
  const tuples: Tuple[] = [];
  if (runs) {
    for await (const run of stream.envelopeRuns()) {
      let pos = 0;
      while (pos < run.length) {
        const len = new DataView(run.buffer, run.byteOffset + pos + 1, 4)
          .getUint32(0);
        const { decodeMetadataMessage } = await import(
          "../src/wire/metadata-message.ts"
        );
        const m = decodeMetadataMessage(run.subarray(pos + 5, pos + 5 + len));
        m.offsets.forEach((o, i) => tuples.push([o, m.sizes[i]]));
        pos += 5 + len;
      }
    }
  } else {
    for await (const { message } of stream) {
      message.offsets.forEach((o, i) => tuples.push([o, message.sizes[i]]));
    }
  }
  return tuples;
}

Deno.test("resume across 240 seeded cuts: VARIABLE extents straddling a cut are trimmed, nothing lost or doubled", async () => {
  let cuts = 0, straddles = 0;
  for (let seed = 1; seed <= 40; seed++) {
    for (const runs of [false, true]) {
      const rng = new Rng(seed * 7919 + (runs ? 1 : 0));
      const capacity = 64 * BLOCK + rng.int(BLOCK);
      const extents = extentsOf(rng, capacity);
      const startingOffset = rng.int(3) === 0 ? rng.int(8 * BLOCK) : 0;
      const failAfter = [1 + rng.int(4), rng.int(4), 1 + rng.int(4)];
      const upstream = new ExtentUpstream(
        extents,
        capacity,
        // Pieces not a multiple of the block size, so cuts are unaligned.
        3 * SECTOR + rng.int(16) * SECTOR,
        {
          failAfter,
          error: (call) =>
            call % 2 === 0
              ? new ConnectError("reset", Code.Unavailable)
              : new ConnectError(
                "context deadline exceeded",
                Code.DeadlineExceeded,
              ),
        },
        runs,
      );
      const backend = new ResumingBackend(upstream, FAST, () => 0.5);
      const { options: o, reasons } = options();
      const query = {
        namespace: "ns",
        snapshotName: "s",
        startingOffset,
        maxResults: 0,
        securityToken: "",
      };
      const stream = new CheckedStream(
        backend.getMetadataAllocated(query, o),
        startingOffset,
        o.signal,
      );
      const got = await drain(stream, runs);
      const wanted = coverage(
        extents.filter(([off, len]) => off + len > startingOffset),
      );
      // The first tuple may start before the starting offset (the API's rule).
      const gotCoverage = coverage(got);
      if (gotCoverage.length > 0 && wanted.length > 0) {
        const from = Math.max(
          wanted[0][0],
          startingOffset - (startingOffset % BLOCK),
        );
        wanted[0] = [from, wanted[0][0] + wanted[0][1] - from];
      }
      deepStrictEqual(gotCoverage, wanted, `seed ${seed} runs ${runs}`);
      // Every reopened call started block-aligned, at a cut.
      for (const s of upstream.starts.slice(1)) equal(s % BLOCK, 0);
      cuts += upstream.starts.length - 1;
      equal(reasons.length, upstream.starts.length - 1);
      // A straddle: a tuple no call produced as is, so resume cut it.
      straddles += got.filter(([off, len]) =>
        !upstream.produced.has(`${off}+${len}`)
      ).length;
    }
  }
  ok(cuts >= 200, `cuts ${cuts}`);
  ok(straddles > 0, "some cuts fell inside an extent");
  console.log(
    `resume units: ${cuts} cuts, ${straddles} straddling extents cut`,
  );
});

Deno.test("resume: never retried codes, the caller's abort, and a stream with nothing relayed yet", async () => {
  const extents: Tuple[] = [[0, 40 * BLOCK]];
  for (
    const code of [
      Code.InvalidArgument,
      Code.NotFound,
      Code.PermissionDenied,
      Code.Unauthenticated,
      Code.OutOfRange,
      Code.Internal,
      Code.Canceled,
    ]
  ) {
    const upstream = new ExtentUpstream(extents, 40 * BLOCK, BLOCK, {
      failAfter: [2],
      error: () => new ConnectError("no", code),
    }, false);
    const { options: o } = options();
    const stream = new CheckedStream(
      new ResumingBackend(upstream, FAST).getMetadataAllocated({
        namespace: "n",
        snapshotName: "s",
        startingOffset: 0,
        maxResults: 0,
        securityToken: "",
      }, o),
      0,
      o.signal,
    );
    await rejects(drain(stream, false), (e) => {
      equal((e as ConnectError).code, code);
      equal(
        (e as ConnectError).metadata.get(NEXT_OFFSET_KEY),
        String(6 * BLOCK),
      );
      return true;
    });
    equal(upstream.starts.length, 1, `code ${Code[code]} is not retried`);
  }
  // Unavailable before any message: answered as is.
  const early = new ExtentUpstream(extents, 40 * BLOCK, BLOCK, {
    failAfter: [0],
    error: () => new ConnectError("down", Code.Unavailable),
  }, false);
  const { options: o } = options();
  await rejects(
    drain(
      new CheckedStream(
        new ResumingBackend(early, FAST).getMetadataAllocated({
          namespace: "n",
          snapshotName: "s",
          startingOffset: 0,
          maxResults: 0,
          securityToken: "",
        }, o),
        0,
        o.signal,
      ),
      false,
    ),
    /down/,
  );
  equal(early.starts.length, 1);
  // The caller's own deadline: the wait ends with it, nothing reopened after.
  const deadline = new AbortController();
  const slow = new ExtentUpstream(extents, 40 * BLOCK, BLOCK, {
    failAfter: [1, 0, 0, 0, 0, 0],
    error: () => new ConnectError("down", Code.Unavailable),
  }, false);
  const { options: d } = options(deadline.signal);
  const reading = drain(
    new CheckedStream(
      new ResumingBackend(slow, {
        ...DEFAULT_RESUME_POLICY,
        baseDelayMs: 400,
        maxDelayMs: 400,
      }, () => 0.99).getMetadataAllocated({
        namespace: "n",
        snapshotName: "s",
        startingOffset: 0,
        maxResults: 0,
        securityToken: "",
      }, d),
      0,
      d.signal,
    ),
    false,
  );
  setTimeout(
    () =>
      deadline.abort(
        new ConnectError("the operation timed out", Code.DeadlineExceeded),
      ),
    100,
  );
  const t0 = performance.now();
  await rejects(
    reading,
    (e) => (e as ConnectError).code === Code.DeadlineExceeded,
  );
  ok(performance.now() - t0 < 390, "the wait ended with the caller's deadline");
  equal(slow.starts.length, 1, "nothing reopened after the caller's deadline");
});

Deno.test("resume gives up after the attempts or the budget, with the offset to continue from", async () => {
  const extents: Tuple[] = [[0, 40 * BLOCK]];
  for (
    const [policy, opens] of [
      [{ ...FAST, maxAttempts: 3 }, 4],
      [{
        ...FAST,
        maxAttempts: 100,
        budgetMs: 60,
        baseDelayMs: 20,
        maxDelayMs: 20,
      }, undefined],
    ] as const
  ) {
    const upstream = new ExtentUpstream(extents, 40 * BLOCK, BLOCK, {
      failAfter: [2, ...Array(200).fill(0)],
      error: (call) =>
        call === 0
          ? serviceChanged("moved")
          : new ConnectError("still down", Code.Unavailable),
    }, false);
    const { options: o, reasons } = options();
    await rejects(
      drain(
        new CheckedStream(
          new ResumingBackend(upstream, policy, () => 0.99)
            .getMetadataAllocated({
              namespace: "n",
              snapshotName: "s",
              startingOffset: 0,
              maxResults: 0,
              securityToken: "",
            }, o),
          0,
          o.signal,
        ),
        false,
      ),
      (e) => {
        const err = e as ConnectError;
        equal(err.code, Code.Unavailable);
        ok(/gave up resuming/.test(err.rawMessage), err.rawMessage);
        equal(err.metadata.get(NEXT_OFFSET_KEY), String(6 * BLOCK));
        return true;
      },
    );
    if (opens !== undefined) equal(upstream.starts.length, opens);
    else {ok(
        upstream.starts.length <= 5,
        `budget bounds the attempts: ${upstream.starts.length}`,
      );}
    equal(reasons[0], "service_changed");
    ok(reasons.slice(1).every((r) => r === "unavailable"));
  }
});
