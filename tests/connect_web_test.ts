/**
 * connect-web in a real browser (headless Chromium, playwright-core),
 * bundled by `deno bundle` and run in a page of another origin: Connect
 * binary, Connect JSON and gRPC-Web server streams through the gateway's
 * CORS match ground truth computed from the image bytes, and a page of a
 * non-allowed origin is refused. The viewer at /ui/ is in viewer_test.ts.
 */
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import {
  collectPageErrors,
  HAS_CHROMIUM,
  launchBrowser,
  WAIT,
} from "./support/browser.ts";
import { startTestGateway } from "./support/gateway.ts";
import { demoImage } from "./support/images.ts";
import {
  allocatedBlocks,
  BLOCK,
  changedBlocks,
  expectedTuples,
  type Tuple,
} from "./support/ground-truth.ts";
import { ROOT } from "./support/run.ts";
import { seedNodeDemoIfEmpty } from "../src/adapter/node-fs/file-store.ts";

/** The browser client: connect-web + the generated service, exposed as `window.cbt`. */
const CLIENT_ENTRY = `
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { SnapshotMetadata } from "${ROOT}/gen/snapshotmetadata/snapshotmetadata_pb.ts";
import { collectOutcome } from "${ROOT}/tests/support/collect.ts";

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
  const { tuples, messages, error } = await collectOutcome(client[rpc](req as never));
  return error ? { error: error.message, code: error.code } : { tuples, messages };
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
    const snap1 = demoImage(dataDir, "snap-1");
    const snap2 = demoImage(dataDir, "snap-2");
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
