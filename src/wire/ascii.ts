/**
 * ASCII text and decimal numbers written straight into byte buffers, with
 * no string and no bigint per number: the hot path of every JSON stream
 * (HTTP/JSON records and Connect JSON both write their digits here).
 * Numbers are safe non-negative integers (< 2^53).
 */
const ascii = (text: string) => Uint8Array.from(text, (c) => c.charCodeAt(0));

/** "00".."99" as two ASCII bytes each: digits go out two at a time. */
const DIGIT_PAIRS = ascii(
  Array.from({ length: 100 }, (_, i) => String(i).padStart(2, "0")).join(""),
);

export function writeAscii(buf: Uint8Array, pos: number, text: string): number {
  for (let i = 0; i < text.length; i++) buf[pos++] = text.charCodeAt(i);
  return pos;
}

/** Exactly `count` (even) digits of 0 <= v < 10^count <= 1e8, leading zeros kept. */
export function writeFixed(
  buf: Uint8Array,
  pos: number,
  v: number,
  count: number,
): void {
  v = v | 0; // < 1e8 fits int32, so the divisions below are integer ones
  for (let p = pos + count - 2; p >= pos; p -= 2) {
    const q = (v / 100) | 0;
    const r = (v - q * 100) << 1;
    buf[p] = DIGIT_PAIRS[r];
    buf[p + 1] = DIGIT_PAIRS[r + 1];
    v = q;
  }
}

const POWERS_OF_TEN = [1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7];

/** Decimal digits of 0 <= v < 1e8. */
export function writeSmall(buf: Uint8Array, pos: number, v: number): number {
  const d = v < 10
    ? 1
    : v < 100
    ? 2
    : v < 1e3
    ? 3
    : v < 1e4
    ? 4
    : v < 1e5
    ? 5
    : v < 1e6
    ? 6
    : v < 1e7
    ? 7
    : 8;
  if (d & 1) {
    // odd: the leading digit alone, then pairs
    const scale = POWERS_OF_TEN[d - 1];
    const lead = Math.floor(v / scale);
    buf[pos] = 48 + lead;
    writeFixed(buf, pos + 1, v - lead * scale, d - 1);
  } else {
    writeFixed(buf, pos, v, d);
  }
  return pos + d;
}

/**
 * Decimal digits of a safe integer: the part above 1e8, then 8 digits.
 * No string and no bigint is made per number.
 */
export function writeUint(buf: Uint8Array, pos: number, n: number): number {
  if (n < 1e8) return writeSmall(buf, pos, n);
  const hi = Math.floor(n / 1e8);
  pos = writeSmall(buf, pos, hi); // hi < 2^53 / 1e8 < 1e8
  writeFixed(buf, pos, n - hi * 1e8, 8);
  return pos + 8;
}
