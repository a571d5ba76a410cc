/**
 * The browser surface in a real browser (headless Chromium, playwright-core):
 *
 * - the block-map viewer at /ui/: what it paints, read back from the canvas
 *   pixels, equals ground truth computed from the image bytes; it says
 *   "incomplete" on an error record and on a cut stream, and Resume finishes
 *   the map without gaps or duplicates; a 1 TiB volume is drawn by pixel rows;
 * - connect-web bundled by `deno bundle` and run in a page of another origin:
 *   Connect binary, Connect JSON and gRPC-Web server streams through the
 *   gateway's CORS, and a page of a non-allowed origin is refused.
 */
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { UI_CONTENT_SECURITY_POLICY } from "../src/ui/ui-route.ts";
import { type RunningGateway, startGateway } from "../src/server/start.ts";
import { DEMO } from "../src/store/demo-seed.ts";
import { seedNodeDemoIfEmpty } from "../src/adapter/node-fs/file-store.ts";
import { HAS_CHROMIUM, launchBrowser } from "./support/browser.ts";
import { startTestGateway } from "./support/gateway.ts";
import {
  allocatedBlocks,
  BLOCK,
  changedBlocks,
  expectedTuples,
  type Tuple,
} from "./support/ground-truth.ts";
import { demoBackend, MemoryBackend } from "./support/memory-backend.ts";
import { ROOT } from "./support/run.ts";

const WAIT = { timeout: 20_000 };

async function readDemoImage(dataDir: string, snapshot: string) {
  return await Deno.readFile(
    `${dataDir}/${DEMO.namespace}/${DEMO.volume}/${snapshot}.img`,
  );
}

/** Console errors and uncaught exceptions of a page (CSP violations land here too). */
function collectPageErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(String(e)));
  return errors;
}

async function openViewer(page: Page, gatewayUrl: string) {
  const response = await page.goto(gatewayUrl + "/ui/");
  assert.equal(response?.status(), 200);
  await page.waitForSelector("#snap option", { state: "attached", ...WAIT });
  return response!;
}

interface Drawing {
  state: string;
  layout: {
    capacity: number;
    bytesPerCell: number;
    cells: number;
    cols: number;
    rows: number;
    cellPx: number;
  };
  marked: number[];
  painted: number[];
  tuples: number;
  nextOffset: number;
  status: string;
  totals: string;
  resumeVisible: boolean;
}

/** Waits until the viewer's stream for `snap` has settled in `state`, then reads its map back. */
async function settled(
  page: Page,
  want: { state: string; snap: string; mode: string; base?: string },
): Promise<Drawing> {
  await page.waitForFunction(
    (w) => {
      // deno-lint-ignore no-explicit-any
      const m = (globalThis as any).__blockMap;
      return m.state === w.state && m.request?.snap === w.snap &&
        m.request.mode === w.mode &&
        (w.mode !== "delta" || m.request.base === w.base);
    },
    want,
    WAIT,
  );
  return await page.evaluate(() => {
    // deno-lint-ignore no-explicit-any
    const g = globalThis as any;
    const m = g.__blockMap;
    const text = (id: string) => g.document.getElementById(id).textContent;
    return {
      state: m.state,
      layout: m.layout,
      marked: m.markedCells(),
      painted: m.paintedCells(),
      tuples: m.totals.tuples,
      nextOffset: m.nextOffset,
      status: text("status"),
      totals: text("totals"),
      resumeVisible: !g.document.getElementById("resume").hidden,
    };
  });
}

async function draw(
  page: Page,
  choice: { snap: string; mode: "allocated" | "delta"; base?: string },
) {
  await page.selectOption("#snap", choice.snap);
  await page.check(`input[name=mode][value=${choice.mode}]`);
  if (choice.base) await page.selectOption("#base", choice.base);
  await page.click("#draw");
}

/** Width and height from a PNG's IHDR chunk, after checking the signature. */
function pngSize(png: Uint8Array): { width: number; height: number } {
  const signature = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  assert.deepEqual([...png.subarray(0, 8)], signature, "not a PNG");
  const view = new DataView(png.buffer, png.byteOffset);
  assert.equal(new TextDecoder().decode(png.subarray(12, 16)), "IHDR");
  return { width: view.getUint32(16), height: view.getUint32(20) };
}

/** Polls a condition of the test process (the gateway's side), bounded. */
async function until(condition: () => boolean, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

function blocksOf(backend: MemoryBackend, snapshot: string): number[] {
  const s = backend.snapshots.find((x) => x.name === snapshot)!;
  return [...s.blocks.keys()].sort((a, b) => a - b);
}

async function serveMemory(backend: MemoryBackend): Promise<RunningGateway> {
  return await startGateway(
    { host: "127.0.0.1", port: 0, grpcPort: 0, corsOrigins: [] },
    { backend },
  );
}

Deno.test("viewer: /ui/ routes, headers and methods (no browser)", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "cbt-ui-" });
  const gw = await startTestGateway({ dataDir });
  try {
    const page = await fetch(gw.httpUrl + "/ui/");
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type")!, /^text\/html/);
    assert.equal(
      page.headers.get("content-security-policy"),
      UI_CONTENT_SECURITY_POLICY,
    );
    assert.match(UI_CONTENT_SECURITY_POLICY, /default-src 'none'/);
    assert.equal(page.headers.get("x-content-type-options"), "nosniff");
    const html = await page.text();
    assert.match(html, /<script type="module" src="viewer.js">/);
    assert.doesNotMatch(html, /https?:\/\//, "no external resources");

    const js = await fetch(gw.httpUrl + "/ui/viewer.js");
    assert.match(js.headers.get("content-type")!, /^text\/javascript/);
    assert.match(await js.text(), /__blockMap/);
    const css = await fetch(gw.httpUrl + "/ui/viewer.css");
    assert.match(css.headers.get("content-type")!, /^text\/css/);
    await css.body?.cancel();

    const bare = await fetch(gw.httpUrl + "/ui?ns=demo", {
      redirect: "manual",
    });
    assert.equal(bare.status, 308);
    assert.equal(bare.headers.get("location"), "/ui/?ns=demo");
    const post = await fetch(gw.httpUrl + "/ui/", { method: "POST" });
    assert.equal(post.status, 405);
    assert.equal((await post.json()).code, "unimplemented");
    const missing = await fetch(gw.httpUrl + "/ui/nope.js");
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
  } finally {
    await gw.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test({
  name:
    "viewer: snap-2 allocated and the snap-1 → snap-2 delta are painted exactly as the image bytes say",
  ignore: !HAS_CHROMIUM,
  async fn() {
    const dataDir = await Deno.makeTempDir({ prefix: "cbt-ui-" });
    const shotDir = await Deno.makeTempDir({ prefix: "cbt-ui-shot-" });
    await seedNodeDemoIfEmpty(dataDir);
    const snap1 = await readDemoImage(dataDir, "snap-1");
    const snap2 = await readDemoImage(dataDir, "snap-2");
    const allocated = allocatedBlocks(snap2);
    const changed = changedBlocks(snap1, snap2);
    // the ground truth is not trivially empty or full
    assert.ok(allocated.length > 20 && allocated.length < 4096);
    assert.ok(changed.length > 20 && changed.length < allocated.length + 2);
    const gw = await startTestGateway({ dataDir });
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage();
      const errors = collectPageErrors(page);
      const response = await openViewer(page, gw.httpUrl);
      assert.equal(
        await response.headerValue("content-security-policy"),
        UI_CONTENT_SECURITY_POLICY,
      );
      const listed = await page.$$eval(
        "#snap option",
        (os) => os.map((o) => (o as unknown as { value: string }).value),
      );
      assert.deepEqual(listed, DEMO.snapshots.map((s) => s.name));

      await draw(page, { snap: "snap-2", mode: "allocated" });
      const a = await settled(page, {
        state: "complete",
        snap: "snap-2",
        mode: "allocated",
      });
      // 16 MiB: one cell per 4 KiB block
      assert.equal(a.layout.capacity, snap2.length);
      assert.equal(a.layout.bytesPerCell, BLOCK);
      assert.equal(a.layout.cells, snap2.length / BLOCK);
      assert.deepEqual(a.painted, allocated);
      assert.deepEqual(a.marked, allocated);
      assert.equal(a.tuples, allocated.length);
      assert.match(a.totals, new RegExp(`^${allocated.length} extents`));
      assert.match(a.status, /^Complete/);
      assert.equal(a.resumeVisible, false);

      await draw(page, { snap: "snap-2", mode: "delta", base: "snap-1" });
      const d = await settled(page, {
        state: "complete",
        snap: "snap-2",
        mode: "delta",
        base: "snap-1",
      });
      assert.deepEqual(d.painted, changed);
      assert.deepEqual(d.marked, changed);
      assert.equal(d.tuples, changed.length);

      const shot = `${shotDir}/viewer.png`;
      await page.screenshot({ path: shot, fullPage: true });
      const png = await Deno.readFile(shot);
      const size = pngSize(png);
      assert.ok(size.width >= a.layout.cols * a.layout.cellPx);
      assert.ok(size.height >= a.layout.rows * a.layout.cellPx);
      assert.ok(png.length > 10_000, `screenshot only ${png.length} bytes`);
      if (Deno.env.get("CBT_KEEP_SCREENSHOT")) {
        await Deno.copyFile(shot, Deno.env.get("CBT_KEEP_SCREENSHOT")!);
      }
      assert.deepEqual(errors, [], "console errors (CSP violations?)");
    } finally {
      await browser.close();
      await gw.close();
      await Deno.remove(dataDir, { recursive: true });
      await Deno.remove(shotDir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "viewer: paints while streaming; an error record, a cut stream and Stop show 'incomplete'; Resume finishes the map without gaps or duplicates",
  ignore: !HAS_CHROMIUM,
  async fn() {
    const backend = demoBackend();
    const gw = await serveMemory(backend);
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage();
      const errors = collectPageErrors(page);
      await openViewer(page, gw.httpUrl);

      // 1. The upstream fails after its first message (256 blocks): an error record.
      const snap3 = blocksOf(backend, "snap-3");
      assert.ok(snap3.length > 512);
      backend.injection = { failAfterMessages: 1, once: true };
      await draw(page, { snap: "snap-3", mode: "allocated" });
      const failed = await settled(page, {
        state: "incomplete",
        snap: "snap-3",
        mode: "allocated",
      });
      assert.deepEqual(failed.painted, snap3.slice(0, 256));
      assert.equal(failed.nextOffset, (snap3[255] + 1) * BLOCK);
      assert.match(failed.status, /^Incomplete — unavailable: /);
      assert.ok(failed.resumeVisible);
      await page.click("#resume");
      const resumed = await settled(page, {
        state: "complete",
        snap: "snap-3",
        mode: "allocated",
      });
      assert.equal(backend.queries.at(-1)!.startingOffset, failed.nextOffset);
      assert.deepEqual(resumed.painted, snap3);
      assert.equal(resumed.tuples, snap3.length, "no duplicates");

      // 2. Something between cuts the stream after three records of ten
      //    blocks, mid-line: no end record, no error record.
      const snap2 = blocksOf(backend, "snap-2");
      await page.route("**/snapshots/snap-2/allocated?*", async (route) => {
        const url = new URL(route.request().url());
        url.searchParams.set("maxResults", "10");
        const response = await route.fetch({ url: url.toString() });
        const lines = (await response.text()).split("\n");
        assert.equal(JSON.parse(lines[3]).type, "blocks");
        const body = lines.slice(0, 4).join("\n") + "\n" +
          lines[4].slice(0, 25);
        await route.fulfill({ response, body });
      }, { times: 1 });
      await draw(page, { snap: "snap-2", mode: "allocated" });
      const cut = await settled(page, {
        state: "incomplete",
        snap: "snap-2",
        mode: "allocated",
      });
      assert.deepEqual(cut.painted, snap2.slice(0, 30));
      assert.equal(cut.nextOffset, (snap2[29] + 1) * BLOCK);
      assert.match(cut.status, /without an end record/);
      await page.click("#resume");
      const whole = await settled(page, {
        state: "complete",
        snap: "snap-2",
        mode: "allocated",
      });
      assert.equal(backend.queries.at(-1)!.startingOffset, cut.nextOffset);
      assert.deepEqual(whole.painted, snap2);
      assert.equal(whole.tuples, snap2.length, "no duplicates");

      // 3. Blocks are painted while the stream is still open; Stop cancels
      //    the upstream call and leaves a resumable map.
      backend.armPause(1);
      await draw(page, { snap: "snap-3", mode: "allocated" });
      await page.waitForFunction(
        () => {
          // deno-lint-ignore no-explicit-any
          const m = (globalThis as any).__blockMap;
          return m.state === "streaming" && m.request.snap === "snap-3" &&
            m.paintedCells().length === 256;
        },
        null,
        WAIT,
      );
      const aborted = backend.streamsAborted;
      await page.click("#stop");
      const stopped = await settled(page, {
        state: "incomplete",
        snap: "snap-3",
        mode: "allocated",
      });
      assert.deepEqual(stopped.painted, snap3.slice(0, 256));
      assert.match(stopped.status, /stopped/);
      await until(() => backend.streamsAborted === aborted + 1);
      backend.release();
      await page.click("#resume");
      const rest = await settled(page, {
        state: "complete",
        snap: "snap-3",
        mode: "allocated",
      });
      assert.deepEqual(rest.painted, snap3);
      assert.equal(rest.tuples, snap3.length);
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
      await gw.close();
    }
  },
});

Deno.test({
  name:
    "viewer: a 1 TiB volume is drawn one pixel per run of blocks, every marked run visible",
  ignore: !HAS_CHROMIUM,
  async fn() {
    const capacity = 2 ** 40;
    const totalBlocks = capacity / BLOCK;
    const blocks = new Map<number, number>();
    let x = 12345; // a fixed LCG spreads blocks over the whole volume
    for (let i = 0; i < 1500; i++) {
      x = (x * 1103515245 + 12345) % 2 ** 31;
      blocks.set(Math.floor((x / 2 ** 31) * totalBlocks), 1);
    }
    for (let b = 0; b < 5000; b++) blocks.set(totalBlocks - 5000 + b, 1); // the tail
    const backend = new MemoryBackend().add({
      namespace: "big",
      name: "tib",
      volume: "vol-big",
      volumeCapacityBytes: capacity,
      blocks,
    });
    const gw = await serveMemory(backend);
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage();
      const errors = collectPageErrors(page);
      await page.goto(gw.httpUrl + "/ui/?ns=big");
      await page.waitForSelector("#snap option", {
        state: "attached",
        ...WAIT,
      });
      await draw(page, { snap: "tib", mode: "allocated" });
      const d = await settled(page, {
        state: "complete",
        snap: "tib",
        mode: "allocated",
      });
      assert.equal(d.layout.cellPx, 1);
      assert.ok(d.layout.cells <= 512 * 512);
      const perCell = d.layout.bytesPerCell;
      assert.equal(perCell, Math.ceil(totalBlocks / (512 * 512)) * BLOCK);
      const expected = [
        ...new Set(
          [...blocks.keys()].map((b) => Math.floor(b * BLOCK / perCell)),
        ),
      ].sort((a, b) => a - b);
      assert.deepEqual(d.painted, expected);
      assert.equal(d.tuples, blocks.size);
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
      await gw.close();
    }
  },
});

// ---- connect-web in the browser ----

/** The browser client: connect-web + the generated service, exposed as `window.cbt`. */
const CLIENT_ENTRY = `
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { SnapshotMetadata } from "${ROOT}/gen/snapshotmetadata/snapshotmetadata_pb.ts";

type Protocol = "connect-binary" | "connect-json" | "grpc-web";

async function collect(
  baseUrl: string,
  protocol: Protocol,
  rpc: "getMetadataAllocated" | "getMetadataDelta",
  request: Record<string, string | number>,
) {
  const transport = protocol === "grpc-web"
    ? createGrpcWebTransport({ baseUrl })
    : createConnectTransport({ baseUrl, useBinaryFormat: protocol === "connect-binary" });
  const client = createClient(SnapshotMetadata, transport);
  const req = { ...request, startingOffset: BigInt(request.startingOffset ?? 0) };
  const tuples: [number, number][] = [];
  let messages = 0;
  try {
    for await (const m of client[rpc](req as never)) {
      messages++;
      for (const b of m.blockMetadata) tuples.push([Number(b.byteOffset), Number(b.sizeBytes)]);
    }
    return { tuples, messages };
  } catch (e) {
    return { error: String((e as Error).message), code: (e as { code?: number }).code };
  }
}
(globalThis as Record<string, unknown>).cbt = { collect };
`;

async function bundleClient(dir: string): Promise<string> {
  await Deno.writeTextFile(`${dir}/entry.ts`, CLIENT_ENTRY);
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--platform",
      "browser",
      "--config",
      `${ROOT}/deno.json`,
      "-o",
      `${dir}/client.js`,
      `${dir}/entry.ts`,
    ],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(120_000),
  }).output();
  const log = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `deno bundle failed:\n${log}`);
  return await Deno.readTextFile(`${dir}/client.js`);
}

/** A tiny static site on its own port (its own origin) hosting the bundle. */
function servePage(clientJs: string) {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (req) => {
      const path = new URL(req.url).pathname;
      if (path === "/client.js") {
        return new Response(clientJs, {
          headers: { "content-type": "text/javascript" },
        });
      }
      if (path === "/") {
        return new Response(
          '<!doctype html><title>connect-web</title><script type="module" src="/client.js"></script>',
          { headers: { "content-type": "text/html" } },
        );
      }
      return new Response("not found", { status: 404 });
    },
  );
  return { origin: `http://127.0.0.1:${server.addr.port}`, server };
}

type CallResult = { tuples?: Tuple[]; messages?: number; error?: string };

async function callFromPage(
  page: Page,
  args: {
    baseUrl: string;
    protocol: string;
    rpc: string;
    request: Record<string, string | number>;
  },
): Promise<CallResult> {
  return await page.evaluate(
    (a) => {
      // deno-lint-ignore no-explicit-any
      const cbt = (globalThis as any).cbt;
      return cbt.collect(a.baseUrl, a.protocol, a.rpc, a.request);
    },
    args,
  );
}

Deno.test({
  name:
    "connect-web in Chromium, from another origin: Connect binary, Connect JSON and gRPC-Web streams match the image bytes; a non-allowed origin is refused",
  ignore: !HAS_CHROMIUM,
  async fn() {
    const dataDir = await Deno.makeTempDir({ prefix: "cbt-web-" });
    const buildDir = await Deno.makeTempDir({ prefix: "cbt-web-bundle-" });
    await seedNodeDemoIfEmpty(dataDir);
    const snap1 = await readDemoImage(dataDir, "snap-1");
    const snap2 = await readDemoImage(dataDir, "snap-2");
    const capacity = snap2.length;
    const clientJs = await bundleClient(buildDir);
    const allowed = servePage(clientJs);
    const other = servePage(clientJs);
    const gw = await startTestGateway({
      dataDir,
      corsOrigins: [allowed.origin],
    });
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage();
      await page.goto(allowed.origin + "/");
      await page.waitForFunction(() => "cbt" in globalThis, null, WAIT);
      assert.notEqual(new URL(gw.httpUrl).origin, allowed.origin);

      const cases: {
        rpc: string;
        request: Record<string, string | number>;
        expected: Tuple[];
      }[] = [
        {
          rpc: "getMetadataAllocated",
          request: {
            namespace: "demo",
            snapshotName: "snap-2",
            maxResults: 7,
          },
          expected: expectedTuples(
            allocatedBlocks(snap2),
            "FIXED",
            capacity,
            0,
          ),
        },
        {
          rpc: "getMetadataAllocated",
          request: {
            namespace: "demo",
            snapshotName: "snap-2",
            startingOffset: 120 * BLOCK + 17,
          },
          expected: expectedTuples(
            allocatedBlocks(snap2),
            "FIXED",
            capacity,
            120 * BLOCK + 17,
          ),
        },
        {
          rpc: "getMetadataDelta",
          request: {
            namespace: "demo",
            baseSnapshotId: "vol-1/snap-1",
            targetSnapshotName: "snap-2",
            maxResults: 5,
          },
          expected: expectedTuples(
            changedBlocks(snap1, snap2),
            "FIXED",
            capacity,
            0,
          ),
        },
      ];
      for (const protocol of ["connect-binary", "connect-json", "grpc-web"]) {
        for (const c of cases) {
          const got = await callFromPage(page, {
            baseUrl: gw.httpUrl,
            protocol,
            rpc: c.rpc,
            request: c.request,
          });
          const label = `${protocol} ${c.rpc} ${JSON.stringify(c.request)}`;
          assert.equal(got.error, undefined, label);
          assert.ok(c.expected.length > 0, label);
          assert.deepEqual(got.tuples, c.expected, label);
          const perMessage = Number(c.request.maxResults ?? 0);
          if (perMessage > 0) {
            assert.equal(
              got.messages,
              Math.ceil(c.expected.length / perMessage),
              label,
            );
          }
        }
      }
      // An error crosses CORS too: the status and grpc-status headers are exposed.
      const missing = await callFromPage(page, {
        baseUrl: gw.httpUrl,
        protocol: "grpc-web",
        rpc: "getMetadataAllocated",
        request: { namespace: "demo", snapshotName: "nope" },
      });
      assert.match(missing.error ?? "", /^\[not_found\]/);

      // The same client on a page of a non-allowed origin: the browser blocks it.
      const blockedPage = await browser.newPage();
      const consoleErrors = collectPageErrors(blockedPage);
      await blockedPage.goto(other.origin + "/");
      await blockedPage.waitForFunction(() => "cbt" in globalThis, null, WAIT);
      for (const protocol of ["connect-binary", "grpc-web"]) {
        const refused = await callFromPage(blockedPage, {
          baseUrl: gw.httpUrl,
          protocol,
          rpc: "getMetadataAllocated",
          request: { namespace: "demo", snapshotName: "snap-2" },
        });
        assert.equal(refused.tuples, undefined, protocol);
        assert.match(refused.error ?? "", /failed to fetch/i, protocol);
      }
      assert.ok(
        consoleErrors.some((e) =>
          e.includes(`from origin '${other.origin}' has been blocked by CORS`)
        ),
        consoleErrors.join("\n"),
      );
    } finally {
      await browser.close();
      await gw.close();
      await allowed.server.shutdown();
      await other.server.shutdown();
      await Deno.remove(dataDir, { recursive: true });
      await Deno.remove(buildDir, { recursive: true });
    }
  },
});
