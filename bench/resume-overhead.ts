/**
 * The resume decorator's own cost on a healthy stream (src/relay/resume.ts):
 * 1 GiB fully allocated (262,144 FIXED_LENGTH tuples, 128 messages of 2048)
 * read through the gateway's CheckedStream, straight from an in-memory
 * upstream and through ResumingBackend, as runs of envelopes (what the
 * binary fronts take from the static relay) and per message (what the
 * Kubernetes backend and the JSON fronts use).
 *
 *   deno run --allow-all bench/resume-overhead.ts
 *
 * Interleaved, 40 rounds after 5 warm-up rounds; medians of ms per stream.
 */
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import type {
  AllocatedQuery,
  Backend,
  CallOptions,
} from "../src/backend/backend.ts";
import { CheckedStream } from "../src/gateway/checked-stream.ts";
import { ResumingBackend } from "../src/relay/resume.ts";
import {
  encodeMetadataMessage,
  FIXED_LENGTH,
} from "../src/wire/metadata-message.ts";

const PER_MESSAGE = 2048;
const MESSAGES = 128;
const CAPACITY = PER_MESSAGE * MESSAGES * 4096;

const messages: Uint8Array[] = [];
for (let m = 0; m < MESSAGES; m++) {
  const offsets = [], sizes = [];
  for (let i = 0; i < PER_MESSAGE; i++) {
    offsets.push((m * PER_MESSAGE + i) * 4096);
    sizes.push(4096);
  }
  messages.push(encodeMetadataMessage({
    blockMetadataType: FIXED_LENGTH,
    volumeCapacityBytes: CAPACITY,
    offsets,
    sizes,
  }));
}
// Runs of four envelopes, as HTTP/2 DATA frames tend to bring them.
const runs: Uint8Array[] = [];
for (let m = 0; m < MESSAGES; m += 4) {
  const parts = messages.slice(m, m + 4).map((b) => encodeEnvelope(0, b));
  const run = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    run.set(p, at);
    at += p.length;
  }
  runs.push(run);
}

const upstream: Backend = {
  name: "memory",
  getMetadataAllocated() {
    return {
      async *[Symbol.asyncIterator]() {
        yield* messages;
      },
      async *envelopeRuns() {
        yield* runs;
      },
    };
  },
  getMetadataDelta: () => {
    throw new Error("unused");
  },
  getSnapshot: () => Promise.reject(new Error("unused")),
  listSnapshots: () => Promise.reject(new Error("unused")),
  close: () => Promise.resolve(),
};
const resuming = new ResumingBackend(upstream);
const query: AllocatedQuery = {
  namespace: "n",
  snapshotName: "s",
  startingOffset: 0,
  maxResults: 0,
  securityToken: "",
};
const options: CallOptions = {
  signal: new AbortController().signal,
  caller: { username: "bench" },
};

async function viaRuns(backend: Backend): Promise<void> {
  const stream = new CheckedStream(
    backend.getMetadataAllocated(query, options),
    0,
  );
  let bytes = 0;
  for await (const run of stream.envelopeRuns()) bytes += run.length;
  if (stream.progress.tuples !== PER_MESSAGE * MESSAGES || bytes === 0) {
    throw new Error("short stream");
  }
}

async function perMessage(backend: Backend): Promise<void> {
  const stream = new CheckedStream(
    backend.getMetadataAllocated(query, options),
    0,
  );
  for await (const _ of stream) { /* the front's work is not measured */ }
  if (stream.progress.tuples !== PER_MESSAGE * MESSAGES) {
    throw new Error("short stream");
  }
}

const cases: [string, () => Promise<void>][] = [
  ["runs of envelopes, no resume", () => viaRuns(upstream)],
  ["runs of envelopes, through ResumingBackend", () => viaRuns(resuming)],
  ["per message, no resume", () => perMessage(upstream)],
  ["per message, through ResumingBackend", () => perMessage(resuming)],
];
const times = cases.map(() => [] as number[]);
for (let round = 0; round < 45; round++) {
  for (const [i, [, run]] of cases.entries()) {
    const t0 = performance.now();
    await run();
    if (round >= 5) times[i].push(performance.now() - t0);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
console.log(
  "| 262,144 tuples through CheckedStream | ms per stream (median) |",
);
console.log("| --- | --- |");
for (const [i, [name]] of cases.entries()) {
  console.log(`| ${name} | ${median(times[i]).toFixed(2)} |`);
}
