/**
 * The fast response codec (src/wire/metadata-message.ts) against the real
 * sidecar's recorded bytes, against @bufbuild/protobuf with the generated
 * schemas, and against malformed input.
 */
import {
  fromBinary,
  type JsonValue,
  toBinary,
  toJson,
} from "@bufbuild/protobuf";
import {
  BlockMetadataType,
  GetMetadataAllocatedResponseSchema,
  GetMetadataDeltaResponseSchema,
} from "../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import {
  decodeMetadataMessage,
  encodeMetadataMessage,
  type MetadataMessage,
  WireFormatError,
} from "../src/wire/metadata-message.ts";

const VECTORS = new URL("./fixtures/real-sidecar/", import.meta.url);

function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(msg);
}

function assertEquals(actual: unknown, expected: unknown, msg: string): void {
  const a = JSON.stringify(actual), e = JSON.stringify(expected);
  if (a !== e) {
    throw new Error(
      `${msg}\n  actual:   ${a.slice(0, 600)}\n  expected: ${e.slice(0, 600)}`,
    );
  }
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function fromB64(b64: string): Uint8Array {
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

/** Splits a gRPC response body into its messages (flag byte, 4-byte length, bytes). */
function splitFrames(body: Uint8Array): Uint8Array[] {
  const frames: Uint8Array[] = [];
  let pos = 0;
  while (pos < body.length) {
    assert(pos + 5 <= body.length, "truncated frame prefix");
    assertEquals(body[pos], 0, "uncompressed frame");
    const len = new DataView(body.buffer, body.byteOffset + pos + 1, 4)
      .getUint32(0);
    assert(pos + 5 + len <= body.length, "truncated frame");
    frames.push(body.subarray(pos + 5, pos + 5 + len));
    pos += 5 + len;
  }
  return frames;
}

/** Our decoded message in proto3 JSON, written out by hand (zero values omitted). */
function toProto3Json(m: MetadataMessage): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (m.blockMetadataType !== 0) {
    out.blockMetadataType = BlockMetadataType[m.blockMetadataType];
  }
  if (m.volumeCapacityBytes !== 0) {
    out.volumeCapacityBytes = String(m.volumeCapacityBytes);
  }
  if (m.offsets.length > 0) {
    out.blockMetadata = m.offsets.map((o, i) => {
      const t: Record<string, string> = {};
      if (o !== 0) t.byteOffset = String(o);
      if (m.sizes[i] !== 0) t.sizeBytes = String(m.sizes[i]);
      return t;
    });
  }
  return out;
}

interface Recording {
  name: string;
  rpc: string;
  messages: JsonValue[];
  body: Uint8Array;
}

async function recordings(): Promise<Recording[]> {
  const out: Recording[] = [];
  for await (const e of Deno.readDir(new URL("streams/", VECTORS))) {
    if (!/-max\d+\.json$/.test(e.name)) continue;
    const r = JSON.parse(
      await Deno.readTextFile(new URL(`streams/${e.name}`, VECTORS)),
    );
    out.push({
      name: e.name,
      rpc: r.rpc,
      messages: r.messages,
      body: fromB64(r.responseBodyB64),
    });
  }
  // Error cases that sent messages before their status carry bodies too.
  const errors = JSON.parse(
    await Deno.readTextFile(new URL("errors.json", VECTORS)),
  );
  for (const c of errors.cases) {
    if (c.messagesBeforeStatus > 0) {
      out.push({
        name: `errors.json: ${c.case} (${c.rpc})`,
        rpc: c.rpc,
        messages: c.messages,
        body: fromB64(c.responseBodyB64),
      });
    }
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

function schemaFor(rpc: string) {
  return rpc === "GetMetadataAllocated"
    ? GetMetadataAllocatedResponseSchema
    : GetMetadataDeltaResponseSchema;
}

Deno.test("recorded sidecar frames decode to the recorded messages and re-encode byte for byte", async () => {
  const recs = await recordings();
  assertEquals(
    recs.filter((r) => r.name.endsWith(".json")).length,
    8,
    "recorded streams",
  );
  let frames = 0;
  for (const rec of recs) {
    const split = splitFrames(rec.body);
    assertEquals(split.length, rec.messages.length, `${rec.name}: frame count`);
    split.forEach((frame, i) => {
      const decoded = decodeMetadataMessage(frame);
      assertEquals(
        toProto3Json(decoded),
        rec.messages[i],
        `${rec.name} message ${i}: decode`,
      );
      assert(
        bytesEqual(encodeMetadataMessage(decoded), frame),
        `${rec.name} message ${i}: re-encode differs`,
      );
      frames++;
    });
  }
  assert(frames >= 30, `only ${frames} frames checked`);
});

Deno.test("the codec agrees with @bufbuild/protobuf and the generated schemas", async () => {
  for (const rec of await recordings()) {
    const schema = schemaFor(rec.rpc);
    splitFrames(rec.body).forEach((frame, i) => {
      const generic = fromBinary(schema, frame);
      assertEquals(
        toJson(schema, generic),
        rec.messages[i],
        `${rec.name} ${i}: protobuf-es JSON`,
      );
      assert(
        bytesEqual(toBinary(schema, generic), frame),
        `${rec.name} ${i}: protobuf-es re-encode`,
      );
      const ours = decodeMetadataMessage(frame);
      assertEquals(
        [
          ours.blockMetadataType,
          ours.volumeCapacityBytes,
          ours.offsets,
          ours.sizes,
        ],
        [
          generic.blockMetadataType,
          Number(generic.volumeCapacityBytes),
          generic.blockMetadata.map((b) => Number(b.byteOffset)),
          generic.blockMetadata.map((b) => Number(b.sizeBytes)),
        ],
        `${rec.name} ${i}: values`,
      );
    });
  }
});

Deno.test("encoding matches protobuf-es for generated messages, including large and zero values", () => {
  let seed = 17;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  const edge = [
    0,
    1,
    127,
    128,
    4096,
    2 ** 31 - 1,
    2 ** 31,
    2 ** 32,
    2 ** 53 - 1,
  ];
  for (let round = 0; round < 200; round++) {
    const n = rand(20);
    const pick = () =>
      rand(3) === 0 ? edge[rand(edge.length)] : rand(2 ** 30) * 4096;
    const msg: MetadataMessage = {
      blockMetadataType: rand(3),
      volumeCapacityBytes: pick(),
      offsets: Array.from({ length: n }, pick),
      sizes: Array.from({ length: n }, pick),
    };
    const ours = encodeMetadataMessage(msg);
    const generic = toBinary(GetMetadataDeltaResponseSchema, {
      $typeName: "snapshotmetadata.GetMetadataDeltaResponse",
      blockMetadataType: msg.blockMetadataType,
      volumeCapacityBytes: BigInt(msg.volumeCapacityBytes),
      blockMetadata: msg.offsets.map((o, i) => ({
        $typeName: "snapshotmetadata.BlockMetadata" as const,
        byteOffset: BigInt(o),
        sizeBytes: BigInt(msg.sizes[i]),
      })),
    });
    assert(
      bytesEqual(ours, generic),
      `round ${round}: encoding differs from protobuf-es`,
    );
    assertEquals(
      decodeMetadataMessage(ours),
      msg,
      `round ${round}: round trip`,
    );
  }
});

function expectWireError(bytes: number[], what: string): void {
  try {
    decodeMetadataMessage(new Uint8Array(bytes));
  } catch (err) {
    assert(
      err instanceof WireFormatError,
      `${what}: threw ${err} instead of WireFormatError`,
    );
    return;
  }
  throw new Error(`${what}: decoded without error`);
}

/** Varint bytes of a bigint (any size). */
function varint(n: bigint): number[] {
  const out: number[] = [];
  while (n >= 0x80n) {
    out.push(Number(n & 0x7fn) | 0x80);
    n >>= 7n;
  }
  out.push(Number(n));
  return out;
}

Deno.test("malformed bytes throw WireFormatError", () => {
  expectWireError([0x10], "tag without value");
  expectWireError([0x10, 0x80], "truncated varint");
  expectWireError([0x10, 0x80, 0x80, 0x80], "truncated multi-byte varint");
  expectWireError([0x80], "truncated tag");
  expectWireError([0x1a, 0x05, 0x08, 0x01], "truncated submessage");
  expectWireError([0x1a, 0x02, 0x08], "submessage shorter than its field");
  expectWireError(
    [0x1a, 0x02, 0x08, 0x80],
    "truncated varint inside a submessage",
  );
  expectWireError([0x10, ...Array(10).fill(0xff), 0x01], "11-byte varint");
  expectWireError([0x10, ...varint(2n ** 53n)], "volume_capacity_bytes = 2^53");
  expectWireError(
    [0x1a, 0x0a, 0x08, ...varint(2n ** 60n)],
    "byte_offset > 2^53",
  );
  expectWireError(
    [0x10, ...varint(2n ** 64n - 1n)],
    "negative int64 (10-byte varint)",
  );
  expectWireError([0x21, 1, 2, 3], "truncated fixed64 field");
  expectWireError([0x25, 1, 2], "truncated fixed32 field");
  expectWireError([0x2a, 0x05, 1], "truncated unknown length-delimited field");
  expectWireError([0x23], "group (wire type 3)");
  expectWireError([0x1f], "wire type 7");
  // The largest safe value still decodes.
  const ok = decodeMetadataMessage(
    new Uint8Array([0x10, ...varint(2n ** 53n - 1n)]),
  );
  assertEquals(ok.volumeCapacityBytes, 2 ** 53 - 1, "2^53 - 1 decodes");
});

Deno.test("every truncation of a recorded frame fails cleanly or agrees with protobuf-es", async () => {
  let checked = 0, failed = 0;
  for (const rec of await recordings()) {
    const schema = schemaFor(rec.rpc);
    for (const frame of splitFrames(rec.body)) {
      for (let cut = 0; cut < frame.length; cut++) {
        const part = frame.subarray(0, cut);
        let ours: MetadataMessage | undefined;
        try {
          ours = decodeMetadataMessage(part);
        } catch (err) {
          assert(
            err instanceof WireFormatError,
            `${rec.name} cut ${cut}: threw ${err}`,
          );
        }
        let generic;
        try {
          generic = fromBinary(schema, part);
        } catch { /* protobuf-es refuses it too */ }
        assertEquals(
          ours === undefined,
          generic === undefined,
          `${rec.name} cut ${cut}: both accept or both refuse`,
        );
        if (ours && generic) {
          assertEquals(
            ours.offsets,
            generic.blockMetadata.map((b) => Number(b.byteOffset)),
            `${rec.name} cut ${cut}`,
          );
          assertEquals(
            ours.sizes,
            generic.blockMetadata.map((b) => Number(b.sizeBytes)),
            `${rec.name} cut ${cut}`,
          );
        } else failed++;
        checked++;
      }
    }
  }
  assert(
    checked > 1000 && failed > 100,
    `checked ${checked} truncations, ${failed} refused`,
  );
});
