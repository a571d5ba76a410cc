/**
 * Parsing the HTTP/JSON surface's output in tests: NDJSON lines, SSE events,
 * and the tuples they carry, plus the real sidecar's recorded ground truth.
 */

// deno-lint-ignore no-explicit-any
export type Rec = Record<string, any>;

export function parseNdjson(text: string): Rec[] {
  if (text !== "" && !text.endsWith("\n")) {
    throw new Error("NDJSON does not end with a newline");
  }
  return text.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l));
}

export interface SseEvent {
  id?: string;
  retry?: string;
  data?: string;
  comments: string[];
}

/** Splits an SSE body into events (each ends with a blank line). */
export function parseSse(text: string): SseEvent[] {
  if (text !== "" && !text.endsWith("\n\n")) {
    throw new Error("SSE body does not end with a blank line");
  }
  return text.split("\n\n").filter((b) => b !== "").map((block) => {
    const ev: SseEvent = { comments: [] };
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) ev.comments.push(line.slice(1).trim());
      else {
        const at = line.indexOf(": ");
        const [field, value] = [line.slice(0, at), line.slice(at + 2)];
        if (field === "id" || field === "retry" || field === "data") {
          ev[field] = value;
        } else throw new Error(`unexpected SSE field ${field}`);
      }
    }
    return ev;
  });
}

/** The records SSE events carry (heartbeat comments dropped). */
export function sseRecords(events: SseEvent[]): Rec[] {
  return events.filter((e) => e.data !== undefined).map((e) =>
    JSON.parse(e.data!)
  );
}

/** All tuples of a record list, as [offset, length]. */
export function tuplesOf(records: Rec[]): [number, number][] {
  return records.filter((r) => r.type === "blocks").flatMap((r) =>
    r.blocks.map((b: Rec) => [b.offset, b.length] as [number, number])
  );
}

/** Adjacent tuples merged, to compare VARIABLE_LENGTH output with extents. */
export function mergeExtents(tuples: [number, number][]): [number, number][] {
  const out: [number, number][] = [];
  for (const [off, len] of tuples) {
    const last = out[out.length - 1];
    if (last && last[0] + last[1] === off) last[1] += len;
    else out.push([off, len]);
  }
  return out;
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

/**
 * Ground truth for the demo memory backend, written down from the real
 * sidecar recordings' README (vectors/real-sidecar): the blocks of each
 * snapshot and of the snap-1 → snap-2 delta, as the real driver reported
 * them — not computed by the code under test.
 */
export const DEMO_BLOCKS = {
  "snap-1": [0, 1, 2, 10, 20, ...range(100, 132), 2048, 4095],
  "snap-2": [0, 1, 2, 20, ...range(100, 148), 1024, 2048, 4094, 4095],
  "delta-1-2": [0, 1, 10, ...range(116, 148), 1024, 4094],
};

/** 4 KiB fixed-length tuples for a list of block numbers. */
export function blockTuples(blocks: number[]): [number, number][] {
  return blocks.map((b) => [b * 4096, 4096]);
}
