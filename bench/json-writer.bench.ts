/**
 * The HTTP/JSON block writer (src/front/http-json/block-records.ts) against
 * the generic path: @bufbuild/protobuf's toJson on the generated message +
 * JSON.stringify. One message of 2048 FIXED_LENGTH tuples (a busy upstream's
 * size), spread over a 1 TiB volume so offsets have realistic lengths.
 *
 *   NO_COLOR=1 deno bench --allow-all bench/json-writer.bench.ts
 *
 * tuples/s = 2048 × iter/s. Two groups: from decoded messages (the writer
 * alone), and from wire bytes (decode + write + UTF-8 encode, what a
 * request really costs).
 */
import { fromBinary, toJson } from "@bufbuild/protobuf";
import {
  type GetMetadataAllocatedResponse,
  GetMetadataAllocatedResponseSchema,
} from "../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import { blocksRecord } from "../src/front/http-json/block-records.ts";
import { decodeMetadataMessage, encodeMetadataMessage, type MetadataMessage } from "../src/wire/metadata-message.ts";

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
const generated: GetMetadataAllocatedResponse = fromBinary(GetMetadataAllocatedResponseSchema, bytes);
const encoder = new TextEncoder();
let sink = 0;

// Same content either way (checked in tests/http_json_test.ts).
if (JSON.parse(blocksRecord(message, 0)).blocks.length !== generated.blockMetadata.length) {
  throw new Error("writers disagree");
}

Deno.bench({
  name: "generic: toJson + JSON.stringify",
  group: "message → JSON text",
  baseline: true,
  fn() {
    sink += JSON.stringify(toJson(GetMetadataAllocatedResponseSchema, generated)).length;
  },
});

Deno.bench({
  name: "fast: blocksRecord",
  group: "message → JSON text",
  fn() {
    // .length alone could leave a rope unflattened; charCodeAt forces the string.
    const s = blocksRecord(message, 0);
    sink += s.charCodeAt(s.length - 1);
  },
});

Deno.bench({
  name: "generic: fromBinary + toJson + stringify + encode",
  group: "wire bytes → JSON bytes",
  baseline: true,
  fn() {
    const m = fromBinary(GetMetadataAllocatedResponseSchema, bytes);
    sink += encoder.encode(JSON.stringify(toJson(GetMetadataAllocatedResponseSchema, m))).length;
  },
});

Deno.bench({
  name: "fast: decodeMetadataMessage + blocksRecord + encode",
  group: "wire bytes → JSON bytes",
  fn() {
    sink += encoder.encode(blocksRecord(decodeMetadataMessage(bytes), 0)).length;
  },
});

// Keeps the results observable so nothing is optimised away.
globalThis.addEventListener("unload", () => {
  if (sink === -1) console.log(sink);
});
