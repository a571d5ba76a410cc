/**
 * Content negotiation for the stream endpoints: NDJSON (the default, so a
 * bare `curl -N` works), Server-Sent Events, or one JSON document.
 */

export type Format = "ndjson" | "sse" | "json";

export const CONTENT_TYPES: Record<Format, string> = {
  ndjson: "application/x-ndjson",
  sse: "text/event-stream",
  json: "application/json",
};

/** Media ranges each format satisfies, most specific first. */
const MATCHES: [Format, string[]][] = [
  ["ndjson", ["application/x-ndjson", "application/*", "*/*"]],
  ["sse", ["text/event-stream", "text/*"]],
  ["json", ["application/json"]],
];

/**
 * Picks a format from an Accept header, honouring q-values; undefined when
 * nothing acceptable is offered (the caller answers 406). Ties go to the
 * order above, so `*\/*` means NDJSON.
 */
export function negotiateFormat(accept: string | null): Format | undefined {
  if (accept === null || accept.trim() === "") return "ndjson";
  let best: Format | undefined;
  let bestQ = 0;
  let bestSpecificity = -1;
  for (const part of accept.split(",")) {
    const [rangeRaw, ...params] = part.split(";");
    const range = rangeRaw.trim().toLowerCase();
    let q = 1;
    for (const p of params) {
      const [k, v] = p.split("=").map((x) => x.trim());
      if (k.toLowerCase() === "q") q = Number(v);
    }
    if (!(q > 0)) continue;
    for (const [format, ranges] of MATCHES) {
      const at = ranges.indexOf(range);
      if (at < 0) continue;
      // An exact type beats a wildcard at equal q (RFC 9110 §12.5.1).
      const specificity = at === 0 ? 2 : range === "*/*" ? 0 : 1;
      if (q > bestQ || (q === bestQ && specificity > bestSpecificity)) {
        best = format;
        bestQ = q;
        bestSpecificity = specificity;
      }
    }
  }
  return best;
}
