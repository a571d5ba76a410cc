/**
 * A real browser's EventSource against the HTTP/JSON surface (headless
 * Chromium driven by playwright-core): the docs' example with a stream
 * ticket, and the automatic reconnect after an error record resuming with
 * Last-Event-ID without gaps or duplicates.
 */
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { createHttpJsonRoutes } from "../src/front/http-json/index.ts";
import { type RunningGateway, startGateway } from "../src/server/start.ts";
import type { Backend } from "../src/backend/backend.ts";
import { blockTuples, DEMO_BLOCKS } from "./support/json-records.ts";
import { demoBackend } from "./support/memory-backend.ts";
import { ROOT } from "./support/run.ts";
import { demoAuth } from "./support/token-auth.ts";

const CHROMIUM = "/usr/bin/chromium";
const hasChromium = (() => {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
})();

const PAGE = "<!doctype html><title>EventSource test</title>";

async function serve(backend: Backend): Promise<RunningGateway> {
  return await startGateway(
    { host: "127.0.0.1", port: 0, grpcPort: 0, corsOrigins: [] },
    {
      backend,
      auth: demoAuth(),
      routes: (gateway) => [
        createHttpJsonRoutes(gateway, { retryMs: 50 }),
        // a same-origin page for the browser to run in
        (req) =>
          new URL(req.url).pathname === "/"
            ? new Response(PAGE, { headers: { "content-type": "text/html" } })
            : undefined,
      ],
    },
  );
}

/** The docs' EventSource example, run with `token` and a `draw` that collects blocks. */
const docsExample = [
  ...Deno.readTextFileSync(`${ROOT}/docs/http-json.md`).matchAll(
    /```js\n([\s\S]*?)```/g,
  ),
][0][1];

Deno.test({
  name:
    "EventSource: the docs example (ticket + onmessage) gets the whole delta",
  ignore: !hasChromium,
  async fn() {
    const backend = demoBackend();
    const gw = await serve(backend);
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    try {
      const page = await browser.newPage();
      await page.goto(gw.httpUrl + "/");
      const result = await page.evaluate(async (example: string) => {
        const got: [number, number][] = [];
        let end: unknown;
        const done = new Promise<void>((resolve, reject) => {
          setTimeout(() => reject(new Error("timed out")), 15_000);
          const draw = (blocks: { offset: number; length: number }[]) =>
            got.push(
              ...blocks.map((b) => [b.offset, b.length] as [number, number]),
            );
          const OriginalEventSource = EventSource;
          // Observe the example's source: resolve once it has closed itself on the end record.
          // deno-lint-ignore no-explicit-any
          (globalThis as any).EventSource = class extends OriginalEventSource {
            constructor(url: string) {
              super(url);
              this.addEventListener("message", (e) => {
                const r = JSON.parse((e as MessageEvent).data);
                if (r.type === "end") {
                  end = r;
                  setTimeout(
                    () =>
                      this.readyState === 2
                        ? resolve()
                        : reject(new Error("not closed")),
                    0,
                  );
                }
              });
            }
          };
          const run = new Function(
            "token",
            "draw",
            `return (async () => {${example}})();`,
          );
          run("alice-token", draw).catch(reject);
        });
        await done;
        return { got, end };
      }, docsExample);
      assert.deepEqual(result.got, blockTuples(DEMO_BLOCKS["delta-1-2"]));
      assert.equal((result.end as { tuples: number }).tuples, 37);
    } finally {
      await browser.close();
      await gw.close();
    }
  },
});

Deno.test({
  name:
    "EventSource: after an error record the browser reconnects with Last-Event-ID and resumes exactly",
  ignore: !hasChromium,
  async fn() {
    const backend = demoBackend();
    backend.injection = { failAfterMessages: 3, once: true };
    const gw = await serve(backend);
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    try {
      const page = await browser.newPage();
      await page.goto(gw.httpUrl + "/");
      const result = await page.evaluate(async () => {
        const base = "/v1/namespaces/demo/snapshots/snap-2";
        const { ticket } = await (await fetch(`${base}/stream-tickets`, {
          method: "POST",
          headers: { Authorization: "Bearer alice-token" },
        })).json();
        const types: string[] = [];
        const got: [number, number][] = [];
        await new Promise<void>((resolve, reject) => {
          setTimeout(() => reject(new Error("timed out")), 15_000);
          const source = new EventSource(
            `${base}/allocated?maxResults=5&ticket=${
              encodeURIComponent(ticket)
            }`,
          );
          source.onmessage = (e) => {
            const r = JSON.parse(e.data);
            types.push(r.type);
            if (r.type === "blocks") {
              got.push(
                ...r.blocks.map((
                  b: { offset: number; length: number },
                ) => [b.offset, b.length]),
              );
            }
            if (r.type === "end") {
              source.close();
              resolve();
            }
          };
        });
        return { types, got };
      });
      assert.deepEqual(result.got, blockTuples(DEMO_BLOCKS["snap-2"]));
      // first connection: header, 3 blocks, error; second: header, the rest, end
      assert.deepEqual(result.types.slice(0, 5), [
        "header",
        "blocks",
        "blocks",
        "blocks",
        "error",
      ]);
      assert.equal(result.types[5], "header");
      assert.equal(result.types[result.types.length - 1], "end");
      assert.equal(backend.streamsStarted, 2);
      const resumed = backend.queries[1];
      assert.equal(
        resumed.startingOffset,
        result.got[14][0] + result.got[14][1],
      );
    } finally {
      await browser.close();
      await gw.close();
    }
  },
});
