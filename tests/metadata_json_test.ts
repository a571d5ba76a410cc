/**
 * The Connect JSON writer (src/wire/metadata-json.ts) against
 * @bufbuild/protobuf: for random response messages and the real sidecar's
 * recorded streams, its bytes equal `JSON.stringify(toJson(...))` of the
 * decoded message, byte for byte — what connect-es would send. Also the
 * envelope framing it writes, and runs of envelopes (src/wire/envelopes.ts).
 */
import { deepStrictEqual, equal, throws } from "node:assert/strict";
import { create, fromBinary, toBinary, toJson } from "@bufbuild/protobuf";
import {
  GetMetadataAllocatedResponseSchema,
  GetMetadataDeltaResponseSchema,
} from "../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import {
  MetadataJsonWriter,
  metadataMessageJson,
} from "../src/wire/metadata-json.ts";
import {
  EnvelopeError,
  EnvelopeQueue,
  forEachEnvelope,
} from "../src/wire/envelopes.ts";
import { Rng } from "./support/images.ts";

const VECTORS = new URL(
  "./fixtures/real-sidecar/streams/",
  import.meta.url,
);
const decoder = new TextDecoder();

/** What connect-es writes for a message in a Connect JSON stream. */
function reference(bytes: Uint8Array, delta = false): string {
  const schema = delta
    ? GetMetadataDeltaResponseSchema
    : GetMetadataAllocatedResponseSchema;
  return JSON.stringify(toJson(schema, fromBinary(schema, bytes)));
}

/** A value drawn from the shapes that matter: zero, small, 2^31, 2^32, 2^53. */
function value(rng: Rng): bigint {
  switch (rng.next() % 6) {
    case 0:
      return 0n;
    case 1:
      return BigInt(rng.next() % 10);
    case 2:
      return BigInt(rng.next()) * 4096n;
    case 3:
      return BigInt(2 ** 31 - 2 + (rng.next() % 4));
    case 4:
      return BigInt(2 ** 53 - 1 - (rng.next() % 3));
    default:
      return BigInt(rng.next()) * BigInt(rng.next() % 2 ** 21);
  }
}

function randomMessage(rng: Rng): Uint8Array {
  const n = rng.next() % 4 === 0 ? 0 : rng.next() % 300;
  return toBinary(
    GetMetadataAllocatedResponseSchema,
    create(GetMetadataAllocatedResponseSchema, {
      // 0 UNKNOWN, the two names, and values no name exists for.
      blockMetadataType: rng.next() % 5,
      volumeCapacityBytes: value(rng),
      blockMetadata: Array.from({ length: n }, () => ({
        byteOffset: value(rng),
        sizeBytes: value(rng),
      })),
    }),
  );
}

Deno.test("JSON writer equals toJson + JSON.stringify for random messages", () => {
  const rng = new Rng(20261127);
  for (let i = 0; i < 2000; i++) {
    const bytes = randomMessage(rng);
    equal(metadataMessageJson(bytes), reference(bytes), `message ${i}`);
  }
});

Deno.test("JSON writer equals toJson and buf curl for the recorded sidecar streams", async () => {
  let checked = 0;
  for await (const entry of Deno.readDir(VECTORS)) {
    if (entry.name.startsWith("expected-")) continue;
    const rec = JSON.parse(
      await Deno.readTextFile(new URL(entry.name, VECTORS)),
    );
    const body = Uint8Array.from(
      atob(rec.responseBodyB64),
      (c) => c.charCodeAt(0),
    );
    const delta = rec.rpc === "GetMetadataDelta";
    const writer = new MetadataJsonWriter(16);
    let i = 0;
    forEachEnvelope(body, (flags, start, end) => {
      equal(flags, 0);
      const message = body.subarray(start, end);
      const json = metadataMessageJson(message);
      equal(json, reference(message, delta), `${entry.name} #${i}`);
      // buf curl's view of the same message, compacted.
      equal(json, JSON.stringify(rec.messages[i]), `${entry.name} #${i}`);
      writer.appendEnvelope(body, start, end);
      i++;
      checked++;
    });
    equal(i, rec.messages.length);
    // The envelopes the writer framed hold the same JSON, in order.
    const framed = writer.take();
    const texts: string[] = [];
    forEachEnvelope(framed, (flags, start, end) => {
      equal(flags, 0);
      texts.push(decoder.decode(framed.subarray(start, end)));
    });
    deepStrictEqual(texts, rec.messages.map((m: unknown) => JSON.stringify(m)));
  }
  equal(checked > 20, true, `only ${checked} recorded messages found`);
});

Deno.test("JSON writer leaves nothing behind for bytes that are not a message", () => {
  const good = randomMessage(new Rng(7));
  const writer = new MetadataJsonWriter(8);
  writer.appendEnvelope(good);
  const before = writer.length;
  throws(() => writer.appendEnvelope(new Uint8Array([0x1a, 0x05, 0x08])));
  equal(writer.length, before);
  const out = writer.take();
  forEachEnvelope(out, (_, start, end) => {
    equal(decoder.decode(out.subarray(start, end)), reference(good));
  });
});

Deno.test("envelope queue hands out whole envelopes however the bytes are cut", () => {
  const rng = new Rng(99);
  const messages = Array.from({ length: 50 }, () => randomMessage(rng));
  const stream: number[] = [];
  for (const m of messages) {
    stream.push(
      0,
      m.length >>> 24,
      (m.length >>> 16) & 255,
      (m.length >>> 8) & 255,
      m.length & 255,
      ...m,
    );
  }
  const bytes = new Uint8Array(stream);
  for (const cut of [1, 2, 5, 7, 100, 4096, bytes.length]) {
    const queue = new EnvelopeQueue(1 << 20);
    const got: Uint8Array[] = [];
    for (let pos = 0; pos < bytes.length; pos += cut) {
      queue.push(bytes.subarray(pos, pos + cut));
      const run = queue.take();
      forEachEnvelope(run, (_, start, end) => {
        got.push(run.slice(start, end));
      });
    }
    equal(queue.size, 0, `cut ${cut}: bytes left over`);
    deepStrictEqual(got, messages, `cut ${cut}`);
  }
  const queue = new EnvelopeQueue(10);
  throws(
    () => queue.push(new Uint8Array([0, 0, 0, 0, 11])),
    (e) => e instanceof EnvelopeError && e.tooLarge,
  );
  throws(
    () => new EnvelopeQueue(10).push(new Uint8Array([1, 0, 0, 0, 1])),
    (e) => e instanceof EnvelopeError && !e.tooLarge,
  );
});
