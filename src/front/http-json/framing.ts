/**
 * How records go on the wire: one JSON record per line (NDJSON), or one
 * Server-Sent Event per record. SSE events carry no `event:` name — every
 * record arrives at `EventSource.onmessage` and says what it is in `type`
 * (a named "error" event would collide with EventSource's own error event).
 * The `id:` of an event is the offset to resume from after it, so the
 * browser's automatic reconnect sends it back as `Last-Event-ID`.
 */
import { HEARTBEAT_RECORD } from "./block-records.ts";

export interface Framing {
  /** The first record, with anything the format sends once. */
  first(record: string): string;
  /** A record; `resumeOffset` is set for records after which one may resume. */
  record(record: string, resumeOffset?: number): string;
  heartbeat(): string;
}

export const ndjsonFraming: Framing = {
  first: (record) => record + "\n",
  record: (record) => record + "\n",
  heartbeat: () => HEARTBEAT_RECORD + "\n",
};

export function sseFraming(retryMs: number): Framing {
  return {
    first: (record) => `retry: ${retryMs}\ndata: ${record}\n\n`,
    record: (record, resumeOffset) =>
      resumeOffset === undefined
        ? `data: ${record}\n\n`
        : `id: ${resumeOffset}\ndata: ${record}\n\n`,
    heartbeat: () => ": heartbeat\n\n",
  };
}
