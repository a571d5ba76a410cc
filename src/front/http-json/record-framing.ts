/**
 * How records go on the wire: one JSON record per line (NDJSON), or one
 * Server-Sent Event per record. SSE events carry no `event:` name — every
 * record arrives at `EventSource.onmessage` and says what it is in `type`
 * (a named "error" event would collide with EventSource's own error event).
 * The `id:` of an event is the offset to resume from after it, so the
 * browser's automatic reconnect sends it back as `Last-Event-ID`.
 */
import { HEARTBEAT_RECORD } from "./block-records.ts";

/** What goes before and after one record. */
export type Frame = [prefix: string, suffix: string];

export interface Framing {
  /**
   * The frame of a record; `resumeOffset` for records after which one may
   * resume, `first` for the stream's first record.
   */
  frame(resumeOffset?: number, first?: boolean): Frame;
  heartbeat(): string;
}

export const ndjsonFraming: Framing = {
  frame: () => ["", "\n"],
  heartbeat: () => HEARTBEAT_RECORD + "\n",
};

export function sseFraming(retryMs: number): Framing {
  return {
    frame: (resumeOffset, first) => [
      (first ? `retry: ${retryMs}\n` : "") +
      (resumeOffset === undefined ? "" : `id: ${resumeOffset}\n`) + "data: ",
      "\n\n",
    ],
    heartbeat: () => ": heartbeat\n\n",
  };
}
