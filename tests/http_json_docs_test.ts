/**
 * The HTTP/JSON docs (docs/http-json.md) can't rot: every ```sh block runs
 * against a real gateway with the seeded demo, the Python example runs with
 * real `requests`, and the sample records match what the gateway sends.
 */
import assert from "node:assert/strict";
import { NoAuth } from "../src/auth/authenticator.ts";
import { errorRecord } from "../src/front/http-json/block-records.ts";
import { createHttpJsonRoutes } from "../src/front/http-json/index.ts";
import { type RunningGateway, startGateway } from "../src/server/start.ts";
import {
  NodeFileSnapshotStore,
  seedNodeDemoIfEmpty,
} from "../src/adapter/node-fs/file-store.ts";
import { parseNdjson, type Rec } from "./support/json-records.ts";
import { ROOT, run } from "./support/run.ts";

const DOC = Deno.readTextFileSync(`${ROOT}/docs/http-json.md`);
const README = Deno.readTextFileSync(`${ROOT}/README.md`);
const DOC_URL = "http://localhost:8080";

function blocks(lang: string, doc = DOC): string[] {
  const re = new RegExp("```" + lang + "\\n([\\s\\S]*?)```", "g");
  return [...doc.matchAll(re)].map((m) => m[1]);
}

/** README shell blocks that call the HTTP/JSON surface of the local demo. */
function readmeCurlBlocks(): string[] {
  return blocks("sh", README).filter((b) => b.includes(`${DOC_URL}/v1/`));
}

async function withDemoGateway(
  fn: (gw: RunningGateway) => Promise<void>,
): Promise<void> {
  const dataDir = await Deno.makeTempDir({ prefix: "cbt-http-json-docs-" });
  await seedNodeDemoIfEmpty(dataDir);
  const gw = await startGateway(
    { host: "127.0.0.1", port: 0, grpcPort: 0, corsOrigins: [] },
    {
      backend: new NodeFileSnapshotStore({ dataDir }),
      auth: new NoAuth(),
      routes: (gateway) => [createHttpJsonRoutes(gateway)],
    },
  );
  try {
    await fn(gw);
  } finally {
    await gw.close();
    await Deno.remove(dataDir, { recursive: true });
  }
}

Deno.test("docs: every curl example runs and succeeds against the demo", async () => {
  const scripts = [...blocks("sh"), ...readmeCurlBlocks()];
  assert.ok(
    readmeCurlBlocks().length >= 1,
    "README has no HTTP/JSON curl example",
  );
  const curls = scripts.join("\n").match(/^curl /gm)?.length ?? 0;
  assert.ok(curls >= 12, `found only ${curls} curl examples`);
  await withDemoGateway(async (gw) => {
    for (const script of scripts) {
      assert.ok(
        script.includes(DOC_URL),
        `example without the demo URL:\n${script}`,
      );
      const r = await run("bash", [
        "-euo",
        "pipefail",
        "-c",
        script.replaceAll(DOC_URL, gw.httpUrl),
      ], {
        env: { TOKEN: "demo-token", PATH: Deno.env.get("PATH") ?? "" },
      });
      assert.equal(
        r.code,
        0,
        `example failed:\n${script}\nstderr: ${r.stderr}`,
      );
      assert.ok(r.stdout.trim() !== "", `example printed nothing:\n${script}`);
      // curl exits 0 on an HTTP error: look for error bodies and records too
      if (script.includes("startingOffset=abc")) {
        assert.match(r.stdout, /"code":"invalid_argument".* HTTP 400/);
      } else {assert.doesNotMatch(
          r.stdout,
          /"code":/,
          `example got an error:\n${script}\n${r.stdout}`,
        );}
      // (curl's progress meter goes to stderr when stdout is a pipe; real errors don't hide there)
      assert.doesNotMatch(
        r.stderr,
        /curl: \(|jq: error/,
        `example reported an error:\n${script}`,
      );
    }
  });
});

Deno.test("docs: the sample records are what the gateway sends", async () => {
  const samples = blocks("json")[0].trim().split("\n").map((l) =>
    JSON.parse(l) as Rec
  );
  assert.deepEqual(samples.map((r) => r.type), [
    "header",
    "blocks",
    "end",
    "error",
  ]);
  await withDemoGateway(async (gw) => {
    const real = parseNdjson(
      await (await fetch(
        `${gw.httpUrl}/v1/namespaces/demo/snapshots/snap-2/delta?baseSnapshotName=snap-1`,
      ))
        .text(),
    );
    assert.deepEqual(samples[0], real[0]);
    assert.deepEqual(samples[2], real[real.length - 1]);
    const small = parseNdjson(
      await (await fetch(
        `${gw.httpUrl}/v1/namespaces/demo/snapshots/snap-2/delta?baseSnapshotName=snap-1&maxResults=2`,
      )).text(),
    );
    assert.deepEqual(samples[1], small[1]);
    const progress = {
      messages: 1,
      tuples: 2,
      coveredBytes: 8192,
      nextOffset: 8192,
      blockMetadataType: 1,
      volumeCapacityBytes: 0,
    };
    assert.deepEqual(
      samples[3],
      JSON.parse(errorRecord("unavailable", "…", progress)),
    );
  });
});

const hasRequests =
  (await run("python3", ["-c", "import requests"]).catch(() => ({ code: 1 })))
    .code === 0;

Deno.test({
  name: "docs: the Python requests example prints the delta",
  ignore: !hasRequests,
  async fn() {
    const [script] = blocks("python");
    await withDemoGateway(async (gw) => {
      const r = await run("python3", [
        "-c",
        script.replaceAll(DOC_URL, gw.httpUrl),
      ]);
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.trim().split("\n");
      // the recorded real driver's delta snap-1 → snap-2 has 37 blocks (vectors/real-sidecar)
      assert.equal(lines.length, 37);
      assert.deepEqual(lines[0], "0 4096");
    });
  },
});
