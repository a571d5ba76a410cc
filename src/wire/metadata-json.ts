/**
 * proto3 JSON for the two response messages, written straight from their wire
 * bytes: the same bytes `JSON.stringify(toJson(schema, message))` of
 * @bufbuild/protobuf gives (lowerCamelCase keys in field order, int64 as
 * strings, enum names, zero values left out), without building a message,
 * bigints or strings per tuple. The frame relay uses it for Connect JSON.
 */
import { writeUint } from "./ascii.ts";
import {
  BLOCK_METADATA_TYPE_NAMES,
  scanMetadataMessage,
} from "./metadata-message.ts";

/** Longest `{"blockMetadataType":…,"volumeCapacityBytes":"…","blockMetadata":[`. */
const HEADER_MAX = 128;
/** Longest `,{"byteOffset":"<2^53>","sizeBytes":"<2^53>"}`. */
const TUPLE_MAX = 72;

const ascii = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
const BYTE_OFFSET = ascii('"byteOffset":"');
const SIZE_BYTES = ascii('"sizeBytes":"');

function put(buf: Uint8Array, pos: number, bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length; i++) buf[pos++] = bytes[i];
  return pos;
}

/**
 * Appends proto3 JSON of response messages to one growing buffer, either bare
 * or each in a 5-byte envelope (a Connect JSON stream's framing).
 */
export class MetadataJsonWriter {
  #buf: Uint8Array;
  #pos = 0;
  #firstTuple = true;

  constructor(readonly initialBytes = 64 * 1024) {
    this.#buf = new Uint8Array(initialBytes);
  }

  /** Bytes written since the last take(). */
  get length(): number {
    return this.#pos;
  }

  /** Appends the JSON of the message `bytes[start, end)`. */
  appendJson(bytes: Uint8Array, start = 0, end = bytes.length): void {
    const base = this.#pos;
    this.#reserve(HEADER_MAX);
    this.#pos = base + HEADER_MAX;
    const tuplesAt = this.#pos;
    this.#firstTuple = true;
    let m;
    try {
      m = scanMetadataMessage(bytes, this.#visit, start, end);
    } catch (e) {
      this.#pos = base; // nothing half-written stays
      throw e;
    }
    this.#reserve(2);
    const buf = this.#buf;
    if (m.tuples > 0) buf[this.#pos++] = 0x5d; // ]
    buf[this.#pos++] = 0x7d; // }
    // The header is known only now: write it, then close the gap after it.
    let h = base;
    buf[h++] = 0x7b; // {
    const fields: string[] = [];
    if (m.blockMetadataType !== 0) {
      // Unknown values are written as numbers, as proto3 JSON does.
      const name = BLOCK_METADATA_TYPE_NAMES[m.blockMetadataType];
      fields.push(
        `"blockMetadataType":${
          name ? `"${name}"` : String(m.blockMetadataType)
        }`,
      );
    }
    if (m.volumeCapacityBytes !== 0) {
      fields.push(`"volumeCapacityBytes":"${m.volumeCapacityBytes}"`);
    }
    if (m.tuples > 0) fields.push(`"blockMetadata":[`);
    const header = fields.join(",");
    for (let i = 0; i < header.length; i++) buf[h++] = header.charCodeAt(i);
    buf.copyWithin(h, tuplesAt, this.#pos);
    this.#pos -= tuplesAt - h;
  }

  /** Appends one envelope (flags 0) holding the JSON of `bytes[start, end)`. */
  appendEnvelope(bytes: Uint8Array, start = 0, end = bytes.length): void {
    this.#reserve(5);
    const at = this.#pos;
    this.#pos += 5;
    try {
      this.appendJson(bytes, start, end);
    } catch (e) {
      this.#pos = at;
      throw e;
    }
    const len = this.#pos - at - 5;
    const buf = this.#buf;
    buf[at] = 0;
    buf[at + 1] = len >>> 24;
    buf[at + 2] = (len >>> 16) & 0xff;
    buf[at + 3] = (len >>> 8) & 0xff;
    buf[at + 4] = len & 0xff;
  }

  /** What has been written, handed over; the writer starts empty. */
  take(): Uint8Array {
    const out = this.#buf.subarray(0, this.#pos);
    this.#buf = new Uint8Array(Math.max(this.initialBytes, this.#pos));
    this.#pos = 0;
    return out;
  }

  readonly #visit = (offset: number, size: number): void => {
    this.#reserve(TUPLE_MAX);
    const buf = this.#buf;
    let p = this.#pos;
    if (this.#firstTuple) this.#firstTuple = false;
    else buf[p++] = 0x2c; // ,
    buf[p++] = 0x7b; // {
    if (offset !== 0) {
      p = put(buf, p, BYTE_OFFSET);
      p = writeUint(buf, p, offset);
      buf[p++] = 0x22; // "
    }
    if (size !== 0) {
      if (offset !== 0) buf[p++] = 0x2c;
      p = put(buf, p, SIZE_BYTES);
      p = writeUint(buf, p, size);
      buf[p++] = 0x22;
    }
    buf[p++] = 0x7d; // }
    this.#pos = p;
  };

  #reserve(n: number): void {
    if (this.#pos + n <= this.#buf.length) return;
    const grown = new Uint8Array(Math.max(this.#buf.length * 2, this.#pos + n));
    grown.set(this.#buf.subarray(0, this.#pos));
    this.#buf = grown;
  }
}

const decoder = new TextDecoder();

/** The proto3 JSON text of one response message. */
export function metadataMessageJson(bytes: Uint8Array): string {
  const w = new MetadataJsonWriter(1024);
  w.appendJson(bytes);
  return decoder.decode(w.take());
}
