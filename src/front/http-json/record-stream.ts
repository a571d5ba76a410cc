/**
 * Turns a started, checked upstream stream into a pull-based byte stream of
 * records: header, blocks…, then end or error. A record is produced only when
 * the client pulls (backpressure reaches the upstream), a heartbeat goes out
 * when the upstream is quiet for `heartbeatMs`, and a client that goes away
 * aborts the upstream call.
 */
import type {
  CheckedMessage,
  StreamProgress,
} from "../../gateway/checked-stream.ts";
import { blocksRecordBytes, endRecord, errorRecord } from "./block-records.ts";
import { asConnectError, errorFields } from "./errors.ts";
import type { Framing } from "./record-framing.ts";

/** A stream whose first step has already been taken (to report early errors as HTTP statuses). */
export interface StartedStream {
  iterator: AsyncIterator<CheckedMessage>;
  first: IteratorResult<CheckedMessage>;
  progress: StreamProgress;
  /** Aborts the upstream call. */
  abort: () => void;
}

/** The offset right after a (never empty) message's last tuple. */
export function messageEnd(m: CheckedMessage): number {
  const { offsets, sizes } = m.message;
  const last = offsets.length - 1;
  return offsets[last] + sizes[last];
}

type Step =
  | { kind: "message"; result: IteratorResult<CheckedMessage> }
  | { kind: "failed"; error: unknown };

export function recordStream(
  started: StartedStream,
  header: string,
  framing: Framing,
  heartbeatMs: number,
): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  const { iterator, progress } = started;
  const framed = (record: string, resumeOffset?: number, first?: boolean) => {
    const [prefix, suffix] = framing.frame(resumeOffset, first);
    return encoder.encode(prefix + record + suffix);
  };
  const queued: Uint8Array[] = [framed(header, undefined, true)];
  let next: IteratorResult<CheckedMessage> | undefined = started.first;
  // The pending upstream step survives a heartbeat; it never rejects, so a
  // failure while nobody awaits it is not an unhandled rejection.
  let pending: Promise<Step> | undefined;
  let finished = false;
  let timer: ReturnType<typeof setTimeout> | undefined;

  function take(result: IteratorResult<CheckedMessage>): void {
    if (result.done) {
      queued.push(framed(endRecord(progress)));
      finished = true;
    } else {
      const end = messageEnd(result.value);
      const [prefix, suffix] = framing.frame(end);
      queued.push(blocksRecordBytes(result.value.message, end, prefix, suffix));
    }
  }

  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (next) {
        take(next);
        next = undefined;
      }
      if (queued.length === 0 && !finished) {
        pending ??= iterator.next().then(
          (result): Step => ({ kind: "message", result }),
          (error): Step => ({ kind: "failed", error }),
        );
        const quiet = new Promise<"quiet">((resolve) => {
          timer = setTimeout(() => resolve("quiet"), heartbeatMs);
        });
        const step = await Promise.race([pending, quiet]);
        clearTimeout(timer);
        if (step === "quiet") {
          controller.enqueue(encoder.encode(framing.heartbeat()));
          return;
        }
        pending = undefined;
        if (step.kind === "message") {
          take(step.result);
        } else {
          const { code, message } = errorFields(asConnectError(step.error));
          queued.push(
            framed(errorRecord(code, message, progress), progress.nextOffset),
          );
          finished = true;
        }
      }
      const record = queued.shift();
      if (record !== undefined) controller.enqueue(record);
      if (finished && queued.length === 0) controller.close();
    },
    cancel() {
      clearTimeout(timer);
      started.abort();
      // Don't await: a generator's return() waits for a pending next().
      iterator.return?.().catch(() => {});
    },
  }, { highWaterMark: 0 });
}
