/**
 * Reading a response stream to its end, in the shapes tests compare:
 * every item, the [offset, size] tuples of SnapshotMetadata responses, or
 * the tuples together with the error that ended the stream. Nothing
 * runtime-specific: connect_web_test.ts bundles this file into its page.
 */
import { ConnectError } from "@connectrpc/connect";
import type { Tuple } from "./ground-truth.ts";

/** A SnapshotMetadata response as every client decodes it. */
interface BlockMessage {
  blockMetadata: { byteOffset: bigint; sizeBytes: bigint }[];
}

/** Every item of `stream`, in order. */
export async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of stream) out.push(item);
  return out;
}

/** Reads `stream` to its end, for when only how it ends matters. */
export async function drain(stream: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of stream) { /* only the outcome matters */ }
}

/** A SnapshotMetadata response stream as [offset, size] tuples. */
export async function collectTuples(
  stream: AsyncIterable<BlockMessage>,
): Promise<Tuple[]> {
  const out: Tuple[] = [];
  for await (const m of stream) pushTuples(out, m);
  return out;
}

/** What a stream delivered before it ended, and the error it ended with, if any. */
export interface StreamOutcome {
  tuples: Tuple[];
  messages: number;
  error?: ConnectError;
}

/**
 * Like `collectTuples`, but a stream that fails with a ConnectError (all a
 * connect-es client throws) resolves with what came before the failure.
 * Any other error is a bug in the test and is thrown.
 */
export async function collectOutcome(
  stream: AsyncIterable<BlockMessage>,
): Promise<StreamOutcome> {
  const tuples: Tuple[] = [];
  let messages = 0;
  try {
    for await (const m of stream) {
      messages++;
      pushTuples(tuples, m);
    }
  } catch (error) {
    if (!(error instanceof ConnectError)) throw error;
    return { tuples, messages, error };
  }
  return { tuples, messages };
}

function pushTuples(out: Tuple[], message: BlockMessage): void {
  for (const b of message.blockMetadata) {
    out.push([Number(b.byteOffset), Number(b.sizeBytes)]);
  }
}
