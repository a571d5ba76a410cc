/**
 * The HTTP/JSON block writer (src/front/http-json/block-records.ts) against
 * the generic path: @bufbuild/protobuf's toJson on the generated message +
 * JSON.stringify. One message of 2048 FIXED_LENGTH tuples (a busy upstream's
 * size), spread over a 1 TiB volume so offsets have realistic lengths.
 *
 *   NO_COLOR=1 deno bench --allow-all bench/json-writer.bench.ts
 *
 * tuples/s = 2048 × iter/s. Three groups, see below.
 */
import { fromBinary, toJson } from "@bufbuild/protobuf";
import {
  type GetMetadataAllocatedResponse,
  GetMetadataAllocatedResponseSchema,
} from "../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import { blocksRecordBytes } from "../src/front/http-json/block-records.ts";
import {
  decodeMetadataMessage,
  encodeMetadataMessage,
  type MetadataMessage,
} from "../src/wire/metadata-message.ts";

const TUPLES = 2048;
const offsets: number[] = [];
const sizes: number[] = [];
for (let i = 0, at = 0; i < TUPLES; i++) {
  at += 4096 * (1 + ((i * 7919) % 130_000)); // sparse: gaps up to ~500 MiB
  offsets.push(at);
  sizes.push(4096);
  at += 4096;
}
const message: MetadataMessage = {
  blockMetadataType: 1,
  volumeCapacityBytes: 2 ** 40,
  offsets,
  sizes,
};
const bytes = encodeMetadataMessage(message);
const generated: GetMetadataAllocatedResponse = fromBinary(
  GetMetadataAllocatedResponseSchema,
  bytes,
);
const encoder = new TextEncoder();
let sink = 0;

// Same content either way (checked in tests/http_json_test.ts).
if (
  JSON.parse(new TextDecoder().decode(blocksRecordBytes(message, 0))).blocks
    .length !== generated.blockMetadata.length
) {
  throw new Error("writers disagree");
}

// 1. What the front pays per message: CheckedStream has decoded it already
//    (for its checks, on either path); the generic path still needs the
//    generated message to call toJson, and bytes to send.
Deno.bench({
  name: "generic: fromBinary + toJson + JSON.stringify + encode",
  group: "per relayed message (front's cost)",
  baseline: true,
  fn() {
    const m = fromBinary(GetMetadataAllocatedResponseSchema, bytes);
    sink += encoder.encode(
      JSON.stringify(toJson(GetMetadataAllocatedResponseSchema, m)),
    ).length;
  },
});

Deno.bench({
  name: "fast: blocksRecordBytes",
  group: "per relayed message (front's cost)",
  fn() {
    sink += blocksRecordBytes(message, 0).length;
  },
});

// 2. The writers alone, each from its own in-memory message. The generic side
//    stops at a JS string (no UTF-8 encoding), so this favours it.
Deno.bench({
  name: "generic: toJson + JSON.stringify",
  group: "writer alone",
  baseline: true,
  fn() {
    sink +=
      JSON.stringify(toJson(GetMetadataAllocatedResponseSchema, generated))
        .length;
  },
});

Deno.bench({
  name: "fast: blocksRecordBytes",
  group: "writer alone",
  fn() {
    sink += blocksRecordBytes(message, 0).length;
  },
});

// 3. Everything from wire bytes, decoding included on both sides.
Deno.bench({
  name: "generic: fromBinary + toJson + stringify + encode",
  group: "wire bytes → JSON bytes",
  baseline: true,
  fn() {
    const m = fromBinary(GetMetadataAllocatedResponseSchema, bytes);
    sink += encoder.encode(
      JSON.stringify(toJson(GetMetadataAllocatedResponseSchema, m)),
    ).length;
  },
});

Deno.bench({
  name: "fast: decodeMetadataMessage + blocksRecordBytes",
  group: "wire bytes → JSON bytes",
  fn() {
    sink += blocksRecordBytes(decodeMetadataMessage(bytes), 0).length;
  },
});

// Keeps the results observable so nothing is optimised away.
globalThis.addEventListener("unload", () => {
  if (sink === -1) console.log(sink);
});
