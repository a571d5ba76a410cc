/**
 * The records of the HTTP/JSON surface, written straight from decoded
 * messages (plain numbers): blocks records byte by byte, the rest as strings. The generic protobuf JSON path turns
 * every int64 into a bigint and then into a quoted string; this writer emits
 * JSON numbers, which are exact for offsets and sizes up to 2^53 bytes (8 PiB,
 * more than any volume), and is several times faster (bench/json-writer.bench.ts).
 *
 * Every stream is: one header record, zero or more blocks records, then exactly
 * one end record — or an error record if the stream failed. No end record means
 * the stream is incomplete.
 */
import {
  writeAscii,
  writeFixed,
  writeSmall,
  writeUint,
} from "../../wire/ascii.ts";
import {
  blockMetadataTypeName,
  type MetadataMessage,
} from "../../wire/metadata-message.ts";
import type { StreamProgress } from "../../gateway/checked-stream.ts";

/** Which listing a stream carries. */
export type Operation = "allocated" | "delta";

export interface HeaderFields {
  operation: Operation;
  namespace: string;
  snapshot: string;
  /** Delta only: the base, as the caller named it. */
  baseSnapshotId?: string;
  baseSnapshotName?: string;
  /** 0 (UNKNOWN) when the upstream sent no message to learn it from. */
  blockMetadataType: number;
  /** null when neither the stream nor the backend knows it. */
  volumeCapacityBytes: number | null;
  startingOffset: number;
}

/** The first record of every stream. */
export function headerRecord(h: HeaderFields): string {
  let s =
    `{"type":"header","operation":"${h.operation}","namespace":${
      JSON.stringify(h.namespace)
    }` +
    `,"snapshot":${JSON.stringify(h.snapshot)}`;
  if (h.baseSnapshotId !== undefined) {
    s += `,"baseSnapshotId":${JSON.stringify(h.baseSnapshotId)}`;
  }
  if (h.baseSnapshotName !== undefined) {
    s += `,"baseSnapshotName":${JSON.stringify(h.baseSnapshotName)}`;
  }
  return s +
    `,"blockMetadataType":"${blockMetadataTypeName(h.blockMetadataType)}"` +
    `,"volumeCapacityBytes":${h.volumeCapacityBytes}` +
    `,"startingOffset":${h.startingOffset}}`;
}

/** Longest tuple: `{"offset":` and `,"length":` (10 bytes each), 16 digits each (< 2^53), `}` and `,`. */
const MAX_TUPLE_BYTES = 10 + 10 + 2 * 16 + 2;

/** Digits cached across tuples of one message (writing never awaits). */
const HI_DIGITS = new Uint8Array(16);
const SIZE_DIGITS = new Uint8Array(16);

function writeTuples(buf: Uint8Array, pos: number, m: MetadataMessage): number {
  const { offsets, sizes } = m;
  // Offsets in a message are increasing and mostly share their digits above
  // 1e8 (100 MB): keep those and write only the low 8 digits each time.
  let hiBase = -1;
  let hiLength = 0;
  let lastSize = -1;
  let sizeLength = 0;
  for (let i = 0; i < offsets.length; i++) {
    if (i > 0) buf[pos++] = 0x2c; // ,
    // {"offset":  (unrolled: this loop is the hot path of every JSON stream)
    buf[pos] = 0x7b;
    buf[pos + 1] = 0x22;
    buf[pos + 2] = 0x6f;
    buf[pos + 3] = 0x66;
    buf[pos + 4] = 0x66;
    buf[pos + 5] = 0x73;
    buf[pos + 6] = 0x65;
    buf[pos + 7] = 0x74;
    buf[pos + 8] = 0x22;
    buf[pos + 9] = 0x3a;
    pos += 10;
    const off = offsets[i];
    if (off < 1e8) {
      pos = writeSmall(buf, pos, off);
    } else {
      if (!(off >= hiBase && off - hiBase < 1e8)) {
        const hi = Math.floor(off / 1e8);
        hiBase = hi * 1e8;
        hiLength = writeSmall(HI_DIGITS, 0, hi); // hi < 2^53 / 1e8 < 1e8
      }
      for (let k = 0; k < hiLength; k++) buf[pos++] = HI_DIGITS[k];
      writeFixed(buf, pos, off - hiBase, 8);
      pos += 8;
    }
    // ,"length":
    buf[pos] = 0x2c;
    buf[pos + 1] = 0x22;
    buf[pos + 2] = 0x6c;
    buf[pos + 3] = 0x65;
    buf[pos + 4] = 0x6e;
    buf[pos + 5] = 0x67;
    buf[pos + 6] = 0x74;
    buf[pos + 7] = 0x68;
    buf[pos + 8] = 0x22;
    buf[pos + 9] = 0x3a;
    pos += 10;
    const size = sizes[i];
    if (size !== lastSize) {
      // FIXED_LENGTH sizes are all equal, and VARIABLE ones often repeat.
      lastSize = size;
      sizeLength = writeUint(SIZE_DIGITS, 0, size);
    }
    for (let k = 0; k < sizeLength; k++) buf[pos++] = SIZE_DIGITS[k];
    buf[pos++] = 0x7d; // }
  }
  return pos;
}

/**
 * The tuples of one message as UTF-8 JSON objects, comma-separated, no
 * brackets: `{"offset":0,"length":4096},{"offset":8192,"length":4096}`.
 * Written digit by digit into bytes: the hot path of every JSON stream.
 * Offsets and sizes are safe non-negative integers (the decoder refuses
 * anything else).
 */
export function blockListBytes(m: MetadataMessage): Uint8Array {
  const buf = scratch(m.offsets.length * MAX_TUPLE_BYTES);
  return buf.slice(0, writeTuples(buf, 0, m));
}

/**
 * One upstream message as a blocks record, framed by `prefix` and `suffix`
 * (ASCII: the NDJSON newline, SSE `id:`/`data:` lines). `nextOffset`, the end
 * of its last tuple, is where to resume after it.
 */
export function blocksRecordBytes(
  m: MetadataMessage,
  nextOffset: number,
  prefix = "",
  suffix = "",
): Uint8Array {
  const head = prefix + '{"type":"blocks","blocks":[';
  const tail = '],"nextOffset":' + nextOffset + "}" + suffix;
  const buf = scratch(
    head.length + m.offsets.length * MAX_TUPLE_BYTES + tail.length,
  );
  let pos = writeAscii(buf, 0, head);
  pos = writeTuples(buf, pos, m);
  pos = writeAscii(buf, pos, tail);
  return buf.slice(0, pos);
}

/**
 * A reused buffer for the worst case; the exact result is copied out. Safe
 * because writing is synchronous, and cheaper than a zeroed worst-case buffer.
 */
let scratchBuffer = new Uint8Array(1 << 16);
function scratch(size: number): Uint8Array {
  if (scratchBuffer.length < size) {
    scratchBuffer = new Uint8Array(Math.max(size, scratchBuffer.length * 2));
  }
  return scratchBuffer;
}

/** The last record of a complete stream. */
export function endRecord(p: StreamProgress): string {
  return `{"type":"end","messages":${p.messages},"tuples":${p.tuples}` +
    `,"coveredBytes":${p.coveredBytes},"nextOffset":${p.nextOffset}}`;
}

/** The last record of a failed stream: resume at `nextOffset`. */
export function errorRecord(
  code: string,
  message: string,
  p: StreamProgress,
): string {
  return `{"type":"error","code":${JSON.stringify(code)},"message":${
    JSON.stringify(message)
  }` +
    `,"nextOffset":${p.nextOffset},"messages":${p.messages},"tuples":${p.tuples}` +
    `,"coveredBytes":${p.coveredBytes}}`;
}

/** Keeps proxies from cutting an idle NDJSON stream; clients skip it. */
export const HEARTBEAT_RECORD = '{"type":"heartbeat"}';
