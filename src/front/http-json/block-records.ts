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
import type { MetadataMessage } from "../../wire/metadata-message.ts";
import type { StreamProgress } from "../../gateway/checked-stream.ts";

/** Which listing a stream carries. */
export type Operation = "allocated" | "delta";

/** Names of snapshotmetadata.BlockMetadataType values, as proto3 JSON spells them. */
const BLOCK_METADATA_TYPE_NAMES = [
  "UNKNOWN",
  "FIXED_LENGTH",
  "VARIABLE_LENGTH",
];

export function blockMetadataTypeName(value: number): string {
  return BLOCK_METADATA_TYPE_NAMES[value] ?? "UNKNOWN";
}

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

const OFFSET_KEY = '{"offset":';
const LENGTH_KEY = ',"length":';
/** Longest tuple: 16 digits each for offset and length (< 2^53), braces, comma. */
const MAX_TUPLE_BYTES = OFFSET_KEY.length + LENGTH_KEY.length + 2 * 16 + 2;

function writeAscii(buf: Uint8Array, pos: number, text: string): number {
  for (let i = 0; i < text.length; i++) buf[pos++] = text.charCodeAt(i);
  return pos;
}

/** Decimal digits of 0 <= n < 1e8, with int32 arithmetic. */
function writeSmall(buf: Uint8Array, pos: number, n: number): number {
  const end = pos +
    (n < 10
      ? 1
      : n < 100
      ? 2
      : n < 1e3
      ? 3
      : n < 1e4
      ? 4
      : n < 1e5
      ? 5
      : n < 1e6
      ? 6
      : n < 1e7
      ? 7
      : 8);
  let p = end;
  do {
    const q = (n / 10) | 0;
    buf[--p] = 48 + n - q * 10;
    n = q;
  } while (n !== 0);
  return end;
}

/**
 * Decimal digits of a safe integer. Above 1e8 it splits into parts below
 * 1e8 (exact in doubles), so no bigint and no string is made per number.
 */
function writeUint(buf: Uint8Array, pos: number, n: number): number {
  if (n < 1e8) return writeSmall(buf, pos, n);
  const hi = Math.floor(n / 1e8);
  let lo = n - hi * 1e8;
  pos = writeUint(buf, pos, hi);
  for (let p = pos + 7; p >= pos; p--) {
    const q = (lo / 10) | 0;
    buf[p] = 48 + lo - q * 10;
    lo = q;
  }
  return pos + 8;
}

function writeTuples(buf: Uint8Array, pos: number, m: MetadataMessage): number {
  const { offsets, sizes } = m;
  for (let i = 0; i < offsets.length; i++) {
    if (i > 0) buf[pos++] = 0x2c; // ,
    pos = writeAscii(buf, pos, OFFSET_KEY);
    pos = writeUint(buf, pos, offsets[i]);
    pos = writeAscii(buf, pos, LENGTH_KEY);
    pos = writeUint(buf, pos, sizes[i]);
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
  const buf = new Uint8Array(m.offsets.length * MAX_TUPLE_BYTES);
  return buf.subarray(0, writeTuples(buf, 0, m));
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
  const buf = new Uint8Array(
    head.length + m.offsets.length * MAX_TUPLE_BYTES + tail.length,
  );
  let pos = writeAscii(buf, 0, head);
  pos = writeTuples(buf, pos, m);
  pos = writeAscii(buf, pos, tail);
  return buf.subarray(0, pos);
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
