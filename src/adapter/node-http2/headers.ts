/** node:http2 header objects → Web Headers (pseudo-headers left out). */
import type { IncomingHttpHeaders } from "node:http2";

export function webHeaders(h: IncomingHttpHeaders): Headers {
  const out = new Headers();
  for (const [k, v] of Object.entries(h)) {
    if (k.startsWith(":") || v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) out.append(k, one);
  }
  return out;
}
