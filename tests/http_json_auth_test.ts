/**
 * Who may call the HTTP/JSON surface, in process: no Authorization is 401;
 * stream tickets are issued to an authenticated caller and redeemed
 * without headers, bound and short-lived; a NoAuth gateway needs no
 * header; passthrough auth forwards the bearer token as security_token and
 * no other mode does.
 */
import assert from "node:assert/strict";
import { NoAuth } from "../src/auth/authenticator.ts";
import { PassthroughAuth } from "../src/auth/passthrough-auth.ts";
import { Gateway } from "../src/gateway/gateway.ts";
import { createHttpJsonRoutes } from "../src/front/http-json/index.ts";
import { StreamTickets } from "../src/front/http-json/stream-ticket.ts";
import { demoBackend, type MemoryBackend } from "./support/memory-backend.ts";
import {
  blockTuples,
  DEMO_BLOCKS,
  parseNdjson,
  parseSse,
  sseRecords,
  tuplesOf,
} from "./support/json-records.ts";
import {
  ALLOC2,
  DELTA,
  errorOf,
  httpJsonInProcess as setup,
} from "./support/http-json-in-process.ts";

Deno.test("no Authorization at all is 401; paths it does not own are left alone", async () => {
  const { route } = setup();
  const r = await route(new Request(`http://gw${ALLOC2}`));
  assert.ok(r);
  assert.equal(r.status, 401);
  assert.equal((await r.json()).code, "unauthenticated");
  for (
    const p of [
      "/",
      "/healthz",
      "/v1/namespaces/demo",
      "/v1/namespaces/demo/snapshots/snap-2",
      "/snapshotmetadata.SnapshotMetadata/GetMetadataAllocated",
    ]
  ) {
    assert.equal(route(new Request(`http://gw${p}`)), undefined, p);
  }
});

Deno.test("stream tickets: issued to an authenticated caller, redeemed without headers, bound and short-lived", async () => {
  let now = Date.now();
  const { call, route, auth } = setup();
  const ticketPath = "/v1/namespaces/demo/snapshots/snap-2/stream-tickets";
  const issued = await call(ticketPath, { method: "POST" });
  assert.equal(issued.status, 201);
  const { ticket, expiresInSeconds } = await issued.json();
  assert.equal(expiresInSeconds, 60);
  const bare = (path: string) =>
    route(
      new Request(`http://gw${path}`, {
        headers: { accept: "text/event-stream" },
      }),
    )!;
  const ok = await bare(`${ALLOC2}?ticket=${ticket}`);
  assert.equal(ok.status, 200);
  assert.deepEqual(
    tuplesOf(sseRecords(parseSse(await ok.text()))),
    blockTuples(DEMO_BLOCKS["snap-2"]),
  );
  // the same ticket works for the delta of that snapshot (an EventSource reconnect, too)
  assert.equal(
    (await bare(`${DELTA}?baseSnapshotName=snap-1&ticket=${ticket}`)).status,
    200,
  );

  const statusOf = async (r: Response | Promise<Response>) =>
    (await errorOf(await r)).status;
  assert.equal(
    await statusOf(
      bare(`/v1/namespaces/demo/snapshots/snap-1/allocated?ticket=${ticket}`),
    ),
    403,
  );
  const [payload, sig] = ticket.split(".");
  const forged = btoa(
    atob(payload.replace(/-/g, "+").replace(/_/g, "/")).replace(
      "alice",
      "mallory",
    ),
  )
    .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  assert.equal(await statusOf(bare(`${ALLOC2}?ticket=${forged}.${sig}`)), 401);
  assert.equal(
    await statusOf(bare(`${ALLOC2}?ticket=${payload}.${"A".repeat(43)}`)),
    401,
  );
  assert.equal(await statusOf(bare(`${ALLOC2}?ticket=garbage`)), 401);
  // authorization is re-checked at redemption
  auth.revoked.add("alice");
  assert.equal(await statusOf(bare(`${ALLOC2}?ticket=${ticket}`)), 403);
  auth.revoked.clear();

  // issuing needs the normal credential, and the right to read the namespace
  assert.equal(
    await statusOf(
      route(new Request(`http://gw${ticketPath}`, { method: "POST" }))!,
    ),
    401,
  );
  assert.equal(
    await statusOf(
      call(ticketPath, {
        method: "POST",
        headers: { authorization: "Bearer bob-token" },
      }),
    ),
    403,
  );
  assert.equal(
    await statusOf(
      call("/v1/namespaces/demo/snapshots/nope/stream-tickets", {
        method: "POST",
      }),
    ),
    404,
  );

  // expiry, with a clock we control
  const tickets = new StreamTickets({ ttlSeconds: 60, now: () => now });
  const t = await tickets.issue({ username: "alice" }, "demo", "snap-2");
  assert.equal(
    (await tickets.redeem(t.ticket, "demo", "snap-2")).username,
    "alice",
  );
  now += 61_000;
  await assert.rejects(tickets.redeem(t.ticket, "demo", "snap-2"), /expired/);
  // another process's secret doesn't verify
  await assert.rejects(
    new StreamTickets().redeem(t.ticket, "demo", "snap-2"),
    /signature/,
  );
});

Deno.test("NoAuth gateway serves without any Authorization header", async () => {
  const route = createHttpJsonRoutes(
    new Gateway(demoBackend() as MemoryBackend, new NoAuth()),
  );
  const r = await route(new Request(`http://gw${ALLOC2}`))!;
  assert.equal(r.status, 200);
  assert.deepEqual(
    tuplesOf(parseNdjson(await r.text())),
    blockTuples(DEMO_BLOCKS["snap-2"]),
  );
});

Deno.test("passthrough auth: the bearer token becomes security_token; other modes never forward it", async () => {
  const backend = demoBackend();
  const route = createHttpJsonRoutes(
    new Gateway(backend, new PassthroughAuth()),
  );
  const get = (path: string, headers: Record<string, string> = {}) =>
    route(new Request(`http://gw${path}`, { headers }))!;
  const ok = await get(ALLOC2, { authorization: "Bearer sa-token-for-driver" });
  assert.equal(ok.status, 200);
  await ok.body?.cancel();
  assert.equal(backend.queries[0].securityToken, "sa-token-for-driver");
  const missing = await errorOf(await get(ALLOC2));
  assert.deepEqual([missing.status, missing.code], [400, "invalid_argument"]);
  const ticket = await errorOf(
    await route(
      new Request(
        `http://gw/v1/namespaces/demo/snapshots/snap-2/stream-tickets`,
        {
          method: "POST",
          headers: { authorization: "Bearer sa-token-for-driver" },
        },
      ),
    )!,
  );
  assert.deepEqual([ticket.status, ticket.code], [400, "failed_precondition"]);

  const { call, backend: other } = setup();
  await (await call(ALLOC2)).body?.cancel();
  assert.equal(other.queries[0].securityToken, "");
});
