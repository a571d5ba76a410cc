/**
 * A hand-written codec for the two response messages of the snapshot-metadata
 * API (GetMetadataAllocatedResponse and GetMetadataDeltaResponse share one wire
 * shape). The generic protobuf path turns every int64 into a bigint and back,
 * which costs most of a relay's CPU; block offsets fit in a double (2^53 bytes
 * = 8 PiB), so this codec works on plain numbers.
 *
 * Encoding is canonical, like Go's: fields in number order, zero values left
 * out. The real sidecar's recorded bytes are the test of that.
 */

/** Wire values of snapshotmetadata.BlockMetadataType. */
export const FIXED_LENGTH = 1;
export const VARIABLE_LENGTH = 2;

/** Names of BlockMetadataType values, as proto3 JSON spells them. */
export const BLOCK_METADATA_TYPE_NAMES: readonly string[] = [
  "UNKNOWN",
  "FIXED_LENGTH",
  "VARIABLE_LENGTH",
];

export function blockMetadataTypeName(value: number): string {
  return BLOCK_METADATA_TYPE_NAMES[value] ?? "UNKNOWN";
}

/** One decoded (or to-be-encoded) response message. */
export interface MetadataMessage {
  /** 0 UNKNOWN, 1 FIXED_LENGTH, 2 VARIABLE_LENGTH. */
  blockMetadataType: number;
  volumeCapacityBytes: number;
  /** Tuples as parallel arrays: offsets[i], sizes[i]. */
  offsets: number[];
  sizes: number[];
}

function varintLength(n: number): number {
  let len = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
}

function writeVarint(buf: Uint8Array, pos: number, n: number): number {
  // Numbers above 2^31 can't use bit operators; divide instead.
  while (n >= 0x80) {
    buf[pos++] = (n % 128) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[pos++] = n;
  return pos;
}

function checkUint(name: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(
      `${name} must be a non-negative safe integer, got ${n}`,
    );
  }
}

/** Encodes one response message into protobuf bytes. */
export function encodeMetadataMessage(msg: MetadataMessage): Uint8Array {
  const { blockMetadataType, volumeCapacityBytes, offsets, sizes } = msg;
  if (offsets.length !== sizes.length) {
    throw new RangeError("offsets and sizes differ in length");
  }
  checkUint("volumeCapacityBytes", volumeCapacityBytes);
  let total = 0;
  if (blockMetadataType !== 0) total += 1 + varintLength(blockMetadataType);
  if (volumeCapacityBytes !== 0) total += 1 + varintLength(volumeCapacityBytes);
  const innerLengths = new Array<number>(offsets.length);
  for (let i = 0; i < offsets.length; i++) {
    const off = offsets[i], size = sizes[i];
    checkUint("byteOffset", off);
    checkUint("sizeBytes", size);
    let inner = 0;
    if (off !== 0) inner += 1 + varintLength(off);
    if (size !== 0) inner += 1 + varintLength(size);
    innerLengths[i] = inner;
    total += 1 + varintLength(inner) + inner;
  }
  const buf = new Uint8Array(total);
  let pos = 0;
  if (blockMetadataType !== 0) {
    buf[pos++] = 0x08;
    pos = writeVarint(buf, pos, blockMetadataType);
  }
  if (volumeCapacityBytes !== 0) {
    buf[pos++] = 0x10;
    pos = writeVarint(buf, pos, volumeCapacityBytes);
  }
  for (let i = 0; i < offsets.length; i++) {
    buf[pos++] = 0x1a;
    pos = writeVarint(buf, pos, innerLengths[i]);
    if (offsets[i] !== 0) {
      buf[pos++] = 0x08;
      pos = writeVarint(buf, pos, offsets[i]);
    }
    if (sizes[i] !== 0) {
      buf[pos++] = 0x10;
      pos = writeVarint(buf, pos, sizes[i]);
    }
  }
  return buf;
}

/** Thrown for bytes that are not a valid response message. */
export class WireFormatError extends Error {
  override name = "WireFormatError";
}

/**
 * A forward-only reader over protobuf bytes. Varints above 2^53 are refused:
 * no volume offset or size can be that large, so such a value is corruption.
 */
class Reader {
  constructor(
    readonly buf: Uint8Array,
    readonly end = buf.length,
    public pos = 0,
  ) {}

  varint(): number {
    const buf = this.buf;
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new WireFormatError("truncated varint");
      const b = buf[this.pos++];
      result += (b & 0x7f) * mul;
      if (b < 0x80) {
        if (!Number.isSafeInteger(result)) {
          throw new WireFormatError("varint exceeds 2^53");
        }
        return result;
      }
      mul *= 128;
    }
    throw new WireFormatError("varint longer than 10 bytes");
  }

  /** Skips a field of the given wire type (unknown fields are legal). */
  skip(wireType: number): void {
    switch (wireType) {
      case 0:
        this.varint();
        return;
      case 1:
        this.pos += 8;
        break;
      case 2:
        this.pos += this.varint();
        break;
      case 5:
        this.pos += 4;
        break;
      default:
        throw new WireFormatError(`unsupported wire type ${wireType}`);
    }
    if (this.pos > this.end) throw new WireFormatError("truncated field");
  }
}

/** What a scan learns about one message without building tuple arrays. */
export interface MessageSummary {
  blockMetadataType: number;
  volumeCapacityBytes: number;
  tuples: number;
}

/**
 * Walks one response message and hands each tuple to `visit`, in wire order,
 * without allocating: the relay path checks invariants this way and forwards
 * the original bytes. The codec's one parser: decodeMetadataMessage collects
 * what it visits. With `start`/`end`, the message is `bytes[start, end)`
 * (one message inside a run of envelopes, scanned in place).
 */
export function scanMetadataMessage(
  bytes: Uint8Array,
  visit: (offset: number, size: number) => void,
  start = 0,
  end = bytes.length,
): MessageSummary {
  const summary = { blockMetadataType: 0, volumeCapacityBytes: 0, tuples: 0 };
  const r = new Reader(bytes, end, start);
  while (r.pos < r.end) {
    const tag = r.varint();
    const field = Math.floor(tag / 8), wireType = tag & 7;
    if (field === 1 && wireType === 0) {
      summary.blockMetadataType = r.varint();
    } else if (field === 2 && wireType === 0) {
      summary.volumeCapacityBytes = r.varint();
    } else if (field === 3 && wireType === 2) {
      const len = r.varint();
      const end = r.pos + len;
      if (end > r.end) throw new WireFormatError("truncated BlockMetadata");
      let off = 0, size = 0;
      while (r.pos < end) {
        const t = r.varint();
        const f = Math.floor(t / 8), w = t & 7;
        if (f === 1 && w === 0) off = r.varint();
        else if (f === 2 && w === 0) size = r.varint();
        else r.skip(w);
      }
      // The reader is bounded by the message, so a field that overran the
      // tuple's own length shows up here.
      if (r.pos !== end) throw new WireFormatError("truncated BlockMetadata");
      visit(off, size);
      summary.tuples++;
    } else {
      r.skip(wireType);
    }
  }
  return summary;
}

/**
 * Decodes one response message from protobuf bytes (as fast as a parser of
 * its own: measured on 2048-tuple messages).
 */
export function decodeMetadataMessage(bytes: Uint8Array): MetadataMessage {
  const offsets: number[] = [], sizes: number[] = [];
  const { blockMetadataType, volumeCapacityBytes } = scanMetadataMessage(
    bytes,
    (offset, size) => {
      offsets.push(offset);
      sizes.push(size);
    },
  );
  return { blockMetadataType, volumeCapacityBytes, offsets, sizes };
}
