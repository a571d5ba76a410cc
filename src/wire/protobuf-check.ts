/**
 * A strict walk over protobuf wire format, run on request messages before
 * they are decoded. `@bufbuild/protobuf` reads a length prefix as a uint32
 * varint and drops the bits above 32, so a field claiming 2^32 bytes is read
 * as empty and the message decodes; it also skips an unknown varint without
 * bounding it. A request that is not well-formed protobuf is refused here
 * (InvalidArgument), whatever fields it carries.
 */

/** Nested groups deeper than this are refused (requests have none at all). */
const MAX_GROUP_DEPTH = 32;

/** Why `bytes` is not well-formed protobuf, or undefined if it is. */
export function protobufWireError(bytes: Uint8Array): string | undefined {
  let pos = 0;
  const groups: number[] = [];

  /** A varint of at most 10 bytes, or undefined if it runs off the end. */
  function varint(): number | undefined {
    let value = 0, scale = 1;
    for (let i = 0; i < 10; i++) {
      if (pos >= bytes.length) return undefined;
      const b = bytes[pos++];
      value += (b & 0x7f) * scale;
      scale *= 128;
      if ((b & 0x80) === 0) return value;
    }
    return Number.NaN; // more than 10 bytes
  }

  while (pos < bytes.length) {
    const tag = varint();
    if (tag === undefined) return "truncated tag";
    if (!(tag <= 0xffffffff)) return "tag overflows uint32";
    const fieldNo = Math.floor(tag / 8), wireType = tag % 8;
    if (fieldNo === 0) return "field number 0";
    switch (wireType) {
      case 0: { // varint
        const v = varint();
        if (v === undefined) return `truncated varint in field ${fieldNo}`;
        if (Number.isNaN(v)) {
          return `varint longer than 10 bytes in field ${fieldNo}`;
        }
        break;
      }
      case 1: // fixed64
      case 5: { // fixed32
        pos += wireType === 1 ? 8 : 4;
        if (pos > bytes.length) return `truncated fixed field ${fieldNo}`;
        break;
      }
      case 2: { // length-delimited
        const len = varint();
        if (len === undefined || Number.isNaN(len)) {
          return `bad length prefix in field ${fieldNo}`;
        }
        if (len > bytes.length - pos) {
          return `field ${fieldNo} claims ${len} bytes, ${
            bytes.length - pos
          } remain`;
        }
        pos += len;
        break;
      }
      case 3: // start group
        if (groups.length >= MAX_GROUP_DEPTH) return "groups nested too deep";
        groups.push(fieldNo);
        break;
      case 4: // end group
        if (groups.pop() !== fieldNo) return `unmatched end group ${fieldNo}`;
        break;
      default:
        return `wire type ${wireType} in field ${fieldNo}`;
    }
  }
  return groups.length > 0 ? "unterminated group" : undefined;
}
