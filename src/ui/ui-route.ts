/**
 * Serves the browser block-map viewer under /ui/: one HTML page, its script
 * and its stylesheet, all held in memory as strings (no build step, no CDN,
 * no file system — Web-standard APIs only, like the rest of the front).
 *
 * The page is static and carries no data; everything it shows it fetches
 * from the HTTP/JSON surface with the caller's own credentials. A strict
 * Content-Security-Policy allows only these same-origin files and same-origin
 * fetches, so the viewer can't be turned into a script-injection vector.
 */
import { type FetchRoute, methodNotAllowed } from "../front/fetch-route.ts";
import { VIEWER_CSS } from "./viewer-css.ts";
import { VIEWER_HTML } from "./viewer-html.ts";
import { VIEWER_JS } from "./viewer-js.ts";

export const UI_PATH = "/ui/";

export const UI_CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const FILES: Record<string, { type: string; body: string }> = {
  [UI_PATH]: { type: "text/html; charset=utf-8", body: VIEWER_HTML },
  [UI_PATH + "viewer.js"]: {
    type: "text/javascript; charset=utf-8",
    body: VIEWER_JS,
  },
  [UI_PATH + "viewer.css"]: {
    type: "text/css; charset=utf-8",
    body: VIEWER_CSS,
  },
};

export function createUiRoute(): FetchRoute {
  return (request) => {
    const url = new URL(request.url);
    if (url.pathname === "/ui") {
      // Relative links in the page need the trailing slash.
      return new Response(null, {
        status: 308,
        headers: { location: UI_PATH + url.search },
      });
    }
    const file = FILES[url.pathname];
    if (!file) return undefined;
    if (request.method !== "GET" && request.method !== "HEAD") {
      return methodNotAllowed("GET, HEAD");
    }
    return new Response(request.method === "HEAD" ? null : file.body, {
      headers: {
        "content-type": file.type,
        "content-security-policy": UI_CONTENT_SECURITY_POLICY,
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "cache-control": "no-cache",
      },
    });
  };
}
