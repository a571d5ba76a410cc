/**
 * The fetch front on its own — `(Request) => Response`, no server, no port —
 * which is what makes it run on any fetch runtime: health and readiness,
 * the root redirect, CORS for Connect and gRPC-Web, and a Connect call.
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { SnapshotMetadata } from "../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import { NoAuth } from "../src/auth/authenticator.ts";
import { Gateway } from "../src/gateway/gateway.ts";
import { createFetchHandler } from "../src/server/fetch-handler.ts";
import { demoBackend } from "./support/memory-backend.ts";
import { ROOT } from "./support/run.ts";
import { collectTuples } from "./support/collect.ts";

const BASE = "http://gateway.test";

function handler(
  options: Parameters<typeof createFetchHandler>[1] = {},
  ready = true,
) {
  const backend = Object.assign(demoBackend(), { ready: () => ready });
  return createFetchHandler(new Gateway(backend, new NoAuth()), options);
}

Deno.test("health, readiness and the root redirect", async () => {
  const h = handler();
  equal((await h(new Request(`${BASE}/healthz`))).status, 200);
  equal((await h(new Request(`${BASE}/readyz`))).status, 200);
  const notReady = handler({}, false);
  const r = await notReady(new Request(`${BASE}/readyz`));
  equal(r.status, 503);
  equal((await r.json()).status, "starting");
  equal(
    (await notReady(new Request(`${BASE}/healthz`))).status,
    200,
    "alive while not ready",
  );
  const root = await h(new Request(`${BASE}/`));
  equal(root.status, 302);
  equal(root.headers.get("location"), "/ui/");
  equal((await h(new Request(`${BASE}/no/such/path`))).status, 404);
});

Deno.test("CORS: allowed origins get Connect's headers, others get none", async () => {
  const h = handler({ corsOrigins: ["https://app.example"] });
  const preflight = await h(
    new Request(
      `${BASE}/snapshotmetadata.SnapshotMetadata/GetMetadataAllocated`,
      {
        method: "OPTIONS",
        headers: {
          origin: "https://app.example",
          "access-control-request-method": "POST",
          "access-control-request-headers":
            "content-type,connect-protocol-version",
        },
      },
    ),
  );
  equal(preflight.status, 204);
  equal(
    preflight.headers.get("access-control-allow-origin"),
    "https://app.example",
  );
  const allowed = preflight.headers.get("access-control-allow-headers")!.split(
    ", ",
  );
  for (
    const h of [
      "Content-Type",
      "Connect-Protocol-Version",
      "X-Grpc-Web",
      "authorization",
      "last-event-id",
    ]
  ) {
    ok(
      allowed.map((a) => a.toLowerCase()).includes(h.toLowerCase()),
      `allows ${h}`,
    );
  }
  const root = await h(
    new Request(`${BASE}/`, { headers: { origin: "https://app.example" } }),
  );
  equal(root.headers.get("access-control-allow-origin"), "https://app.example");
  const exposed = root.headers.get("access-control-expose-headers")!
    .toLowerCase();
  ok(
    exposed.includes("grpc-status") && exposed.includes("grpc-message"),
    exposed,
  );
  const other = await h(
    new Request(`${BASE}/healthz`, {
      headers: { origin: "https://evil.example" },
    }),
  );
  equal(other.headers.get("access-control-allow-origin"), null);
});

Deno.test("a Connect stream through the bare handler, with no server at all", async () => {
  const h = handler();
  const client = createClient(
    SnapshotMetadata,
    createConnectTransport({
      baseUrl: BASE,
      fetch: (input, init) => h(new Request(input, init)),
    }),
  );
  const offsets = (await collectTuples(client.getMetadataAllocated({
    namespace: "demo",
    snapshotName: "snap-2",
    maxResults: 10,
  }))).map(([offset]) => offset / 4096);
  deepStrictEqual(offsets, [
    0,
    1,
    2,
    20,
    ...Array.from({ length: 48 }, (_, i) => 100 + i),
    1024,
    2048,
    4094,
    4095,
  ]);
});

/**
 * Edge-agnostic by construction: the fetch front's whole module graph (our
 * modules and the npm packages they pull in) imports no Node builtin, and
 * none of our modules in it touches the Deno namespace.
 */
Deno.test("the fetch front's module graph uses no Deno or Node API", async () => {
  for (
    const entry of [
      "src/server/fetch-handler.ts",
      "src/front/http-json/index.ts",
      "src/ui/ui-route.ts",
    ]
  ) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", entry],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const graph = JSON.parse(new TextDecoder().decode(out.stdout)) as {
      modules: { specifier: string; local?: string }[];
    };
    const specifiers = graph.modules.map((m) => m.specifier);
    deepStrictEqual(
      specifiers.filter((s) => s.startsWith("node:")),
      [],
      `${entry} pulls in Node builtins`,
    );
    const ours = graph.modules.filter((m) =>
      m.specifier.startsWith(`file://${ROOT}/src/`)
    );
    ok(ours.length > 3, `${entry}: graph has our modules`);
    for (const m of ours) {
      // Comments may mention Deno; code may not.
      const code = (await Deno.readTextFile(m.local!)).replace(
        /\/\*[\s\S]*?\*\/|\/\/.*$/gm,
        "",
      );
      ok(!/\bDeno\./.test(code), `${m.specifier} uses the Deno namespace`);
    }
  }
});
