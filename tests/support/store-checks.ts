/**
 * What every test of the embedded store (src/store/) checks: error codes,
 * and the rules each streamed message must keep (non-empty, at most
 * max_results tuples, full but for the last, type and capacity in every
 * message, VARIABLE_LENGTH extents merged).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { CallOptions } from "../../src/backend/backend.ts";
import {
  decodeMetadataMessage,
  FIXED_LENGTH,
  type MetadataMessage,
  VARIABLE_LENGTH,
} from "../../src/wire/metadata-message.ts";
import type { Tuple } from "./ground-truth.ts";

/** Both block metadata types, by the names ground-truth.ts uses. */
export const TYPES = [
  ["FIXED", FIXED_LENGTH],
  ["VARIABLE", VARIABLE_LENGTH],
] as const;

/** Throws `msg` unless `cond` holds. */
export function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(msg);
}

/** Compares JSON forms, showing both (cut to 600 characters) when they differ. */
export function assertEquals(
  actual: unknown,
  expected: unknown,
  msg: string,
): void {
  const a = JSON.stringify(actual), e = JSON.stringify(expected);
  if (a !== e) {
    throw new Error(
      `${msg}\n  actual:   ${a.slice(0, 600)}\n  expected: ${e.slice(0, 600)}`,
    );
  }
}

/** Call options with a fresh signal (or the one given) and a test caller. */
export function call(signal = new AbortController().signal): CallOptions {
  return { signal, caller: { username: "test" } };
}

/** Resolves with the ConnectError `p` rejects with; fails unless its code is `code`. */
export async function expectError(
  p: Promise<unknown>,
  code: Code,
  includes?: string,
): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    assert(err instanceof ConnectError, `expected a ConnectError, got ${err}`);
    assertEquals(Code[err.code], Code[code], `code of "${err.message}"`);
    if (includes) {
      assert(
        err.message.includes(includes),
        `"${err.message}" should mention ${includes}`,
      );
    }
    return err;
  }
  throw new Error(`expected ${Code[code]}, but the call succeeded`);
}

/** Checks every per-message rule and returns the tuples of all messages joined. */
export function checkMessages(
  bytes: Uint8Array[],
  type: number,
  capacity: number,
  maxResults: number,
  label: string,
): Tuple[] {
  const max = maxResults === 0 ? 256 : maxResults;
  const tuples: Tuple[] = [];
  const messages: MetadataMessage[] = bytes.map(decodeMetadataMessage);
  messages.forEach((m, i) => {
    assert(m.offsets.length > 0, `${label}: message ${i} is empty`);
    assert(
      m.offsets.length <= max,
      `${label}: message ${i} has ${m.offsets.length} > ${max} tuples`,
    );
    // Messages are sent when full: only the last may be short.
    if (i < messages.length - 1) {
      assertEquals(m.offsets.length, max, `${label}: message ${i} not full`);
    }
    assertEquals(m.blockMetadataType, type, `${label}: type in message ${i}`);
    assertEquals(
      m.volumeCapacityBytes,
      capacity,
      `${label}: capacity in message ${i}`,
    );
    m.offsets.forEach((o, j) => tuples.push([o, m.sizes[j]]));
  });
  if (type === VARIABLE_LENGTH) {
    for (let i = 1; i < tuples.length; i++) {
      const [po, ps] = tuples[i - 1];
      assert(
        po + ps < tuples[i][0],
        `${label}: extents ${i - 1} and ${i} touch (not merged)`,
      );
    }
  }
  return tuples;
}
