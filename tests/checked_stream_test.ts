/**
 * The gateway refuses to relay a broken upstream stream as if it were fine:
 * every invariant of the API (spec §2) that a stream can break ends it with
 * Internal, after the good messages before it, and progress says where to
 * resume.
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { CheckedStream } from "../src/gateway/checked-stream.ts";
import {
  encodeMetadataMessage,
  FIXED_LENGTH,
  type MetadataMessage,
  VARIABLE_LENGTH,
} from "../src/wire/metadata-message.ts";

const CAP = 1 << 20;

function msg(
  type: number,
  tuples: [number, number][],
  capacity = CAP,
): Uint8Array {
  const m: MetadataMessage = {
    blockMetadataType: type,
    volumeCapacityBytes: capacity,
    offsets: tuples.map((t) => t[0]),
    sizes: tuples.map((t) => t[1]),
  };
  return encodeMetadataMessage(m);
}

async function* from(messages: Uint8Array[]): AsyncIterable<Uint8Array> {
  for (const m of messages) yield m;
}

async function drain(stream: CheckedStream) {
  const relayed: [number, number][][] = [];
  try {
    for await (const r of stream) {
      relayed.push(r.message.offsets.map((o, i) => [o, r.message.sizes[i]]));
    }
    return { relayed, error: undefined };
  } catch (e) {
    return { relayed, error: e };
  }
}

Deno.test("a good stream passes untouched and progress adds up", async () => {
  const bytes = [
    msg(FIXED_LENGTH, [[0, 4096], [8192, 4096]]),
    msg(FIXED_LENGTH, [[12288, 4096]]),
  ];
  const stream = new CheckedStream(from(bytes), 0);
  const seen: Uint8Array[] = [];
  for await (const r of stream) seen.push(r.bytes);
  deepStrictEqual(seen, bytes, "bytes are relayed as received");
  deepStrictEqual(
    { ...stream.progress },
    {
      messages: 2,
      tuples: 3,
      coveredBytes: 3 * 4096,
      nextOffset: 16384,
      blockMetadataType: FIXED_LENGTH,
      volumeCapacityBytes: CAP,
    },
  );
});

Deno.test("a first tuple may start before an unaligned starting offset but must end after it", async () => {
  const ok1 = await drain(
    new CheckedStream(from([msg(FIXED_LENGTH, [[4096, 4096]])]), 5000),
  );
  equal(ok1.error, undefined);
  const bad = await drain(
    new CheckedStream(from([msg(FIXED_LENGTH, [[0, 4096]])]), 5000),
  );
  ok(
    bad.error instanceof ConnectError && bad.error.code === Code.Internal,
    String(bad.error),
  );
});

const broken: {
  label: string;
  messages: Uint8Array[];
  goodBefore: number;
  resumeAt: number;
}[] = [
  {
    label: "tuples out of order across messages",
    messages: [
      msg(FIXED_LENGTH, [[8192, 4096]]),
      msg(FIXED_LENGTH, [[4096, 4096]]),
    ],
    goodBefore: 1,
    resumeAt: 12288,
  },
  {
    label: "overlapping tuples within a message",
    messages: [msg(VARIABLE_LENGTH, [[0, 8192], [4096, 4096]])],
    goodBefore: 0,
    resumeAt: 0,
  },
  {
    label: "block type changes mid-stream",
    messages: [
      msg(FIXED_LENGTH, [[0, 4096]]),
      msg(VARIABLE_LENGTH, [[8192, 8192]]),
    ],
    goodBefore: 1,
    resumeAt: 4096,
  },
  {
    label: "capacity changes mid-stream",
    messages: [
      msg(FIXED_LENGTH, [[0, 4096]]),
      msg(FIXED_LENGTH, [[8192, 4096]], CAP * 2),
    ],
    goodBefore: 1,
    resumeAt: 4096,
  },
  {
    label: "FIXED_LENGTH with unequal sizes",
    messages: [
      msg(FIXED_LENGTH, [[0, 4096]]),
      msg(FIXED_LENGTH, [[8192, 8192]]),
    ],
    goodBefore: 1,
    resumeAt: 4096,
  },
  {
    label: "an empty message",
    messages: [msg(FIXED_LENGTH, [[0, 4096]]), msg(FIXED_LENGTH, [])],
    goodBefore: 1,
    resumeAt: 4096,
  },
  {
    label: "UNKNOWN block type",
    messages: [msg(0, [[0, 4096]])],
    goodBefore: 0,
    resumeAt: 0,
  },
  {
    label: "a zero-length tuple",
    messages: [msg(VARIABLE_LENGTH, [[0, 4096], [4096, 0]])],
    goodBefore: 0,
    resumeAt: 0,
  },
  {
    label: "bytes that are not a message (truncated)",
    messages: [
      msg(FIXED_LENGTH, [[0, 4096]]),
      msg(FIXED_LENGTH, [[8192, 4096]]).slice(0, 7),
    ],
    goodBefore: 1,
    resumeAt: 4096,
  },
];

for (const b of broken) {
  Deno.test(`broken upstream: ${b.label} → Internal, nothing relayed after it`, async () => {
    const stream = new CheckedStream(from(b.messages), 0);
    const { relayed, error } = await drain(stream);
    ok(error instanceof ConnectError, `expected a ConnectError, got ${error}`);
    equal(Code[error.code], "Internal", error.message);
    equal(
      relayed.length,
      b.goodBefore,
      "only the good messages before the break are relayed",
    );
    equal(
      stream.progress.nextOffset,
      b.resumeAt,
      "progress says where to resume",
    );
  });
}

Deno.test("an upstream that ends quietly after the call was aborted is not a complete stream", async () => {
  const abort = new AbortController();
  async function* quietOnAbort() {
    yield msg(FIXED_LENGTH, [[0, 4096]]);
    abort.abort(
      new ConnectError("the server is shutting down", Code.Unavailable),
    );
    // A backend that just stops when its signal aborts.
  }
  for (const read of ["messages", "envelope runs"] as const) {
    const stream = new CheckedStream(quietOnAbort(), 0, abort.signal);
    let error: unknown;
    try {
      if (read === "messages") { for await (const _ of stream) { /* drain */ } }
      else for await (const _ of stream.envelopeRuns()) { /* drain */ }
    } catch (e) {
      error = e;
    }
    ok(error instanceof ConnectError, `${read}: ${error}`);
    equal(Code[error.code], "Unavailable", read);
    equal(
      stream.progress.nextOffset,
      4096,
      "resume after the last message relayed",
    );
  }
});
