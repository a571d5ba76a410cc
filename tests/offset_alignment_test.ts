/**
 * Offset alignment (src/backend/offset-alignment.ts): ask the
 * sidecar from the block boundary, drop what ends at or before the offset.
 */
import { deepStrictEqual, equal } from "node:assert/strict";
import {
  alignDown,
  dropTuplesBefore,
} from "../src/backend/offset-alignment.ts";
import {
  decodeMetadataMessage,
  encodeMetadataMessage,
} from "../src/wire/metadata-message.ts";

Deno.test("offset alignment: ask from the block boundary, drop what ends at or before the offset", async () => {
  equal(alignDown(4096 * 3 + 5), 4096 * 3);
  equal(alignDown(8192), 8192);
  const msg = (offsets: number[]) =>
    encodeMetadataMessage({
      blockMetadataType: 1,
      volumeCapacityBytes: 1 << 20,
      offsets,
      sizes: offsets.map(() => 4096),
    });
  async function* upstream() {
    yield msg([0, 4096]); // all end at or before 8192+1? 0-4096 and 4096-8192: dropped
    yield msg([8192, 12288]); // 8192-12288 ends after 8193: kept
    yield msg([16384]);
  }
  const out = [];
  for await (const b of dropTuplesBefore(upstream(), 8193)) {
    out.push(decodeMetadataMessage(b).offsets);
  }
  deepStrictEqual(out, [[8192, 12288], [16384]]);
  // Aligned offsets pass through untouched (same bytes).
  const first = msg([0]);
  async function* one() {
    yield first;
  }
  for await (const b of dropTuplesBefore(one(), 0)) equal(b, first);
});
