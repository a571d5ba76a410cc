/**
 * The HTTP/JSON surface in process: Requests into the route, records out,
 * compared with ground truth written down from the real sidecar's recordings
 * (the demo memory backend holds the same blocks). Real curl: curl_test.ts.
 */
import assert from "node:assert/strict";
import { create, toJson } from "@bufbuild/protobuf";
import { NoAuth } from "../src/auth/authenticator.ts";
import { PassthroughAuth } from "../src/auth/passthrough-auth.ts";
import { Gateway } from "../src/gateway/gateway.ts";
import { blocksRecordBytes } from "../src/front/http-json/block-records.ts";
import {
  createHttpJsonRoutes,
  type HttpJsonOptions,
} from "../src/front/http-json/index.ts";
import { negotiateFormat } from "../src/front/http-json/format.ts";
import { StreamTickets } from "../src/front/http-json/stream-ticket.ts";
import { VARIABLE_LENGTH } from "../src/wire/metadata-message.ts";
import {
  BlockMetadataSchema,
  GetMetadataAllocatedResponseSchema,
} from "../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import { demoBackend, type MemoryBackend } from "./support/memory-backend.ts";
import { demoAuth } from "./support/token-auth.ts";
import {
  blockTuples,
  DEMO_BLOCKS,
  mergeExtents,
  parseNdjson,
  parseSse,
  type Rec,
  sseRecords,
  tuplesOf,
} from "./support/json-records.ts";

const MiB16 = 16 * 1024 * 1024;
const ALICE = { authorization: "Bearer alice-token" };

function setup(options: HttpJsonOptions = {}, auth = demoAuth()) {
  const backend = demoBackend();
  const gateway = new Gateway(backend, auth);
  const route = createHttpJsonRoutes(gateway, options);
  const call = async (
    path: string,
    init: RequestInit = {},
  ): Promise<Response> => {
    const headers = new Headers(init.headers);
    if (!headers.has("authorization")) {
      headers.set("authorization", ALICE.authorization);
    }
    const response = await route(
      new Request(`http://gw${path}`, { ...init, headers }),
    );
    assert.ok(response, `route did not claim ${path}`);
    return response;
  };
  return { backend, gateway, route, call, auth };
}

async function ndjson(response: Response): Promise<Rec[]> {
  assert.equal(response.status, 200, await response.clone().text());
  assert.equal(response.headers.get("content-type"), "application/x-ndjson");
  return parseNdjson(await response.text());
}

async function errorOf(
  response: Response,
): Promise<{ status: number; code: string; message: string }> {
  assert.equal(response.headers.get("content-type"), "application/json");
  const body = await response.json();
  assert.equal(typeof body.message, "string");
  return { status: response.status, code: body.code, message: body.message };
}

const ALLOC2 = "/v1/namespaces/demo/snapshots/snap-2/allocated";
const DELTA = "/v1/namespaces/demo/snapshots/snap-2/delta";

Deno.test("NDJSON allocated: header, blocks equal to the recorded driver, end with totals", async () => {
  const { call } = setup();
  const records = await ndjson(await call(ALLOC2));
  const expected = blockTuples(DEMO_BLOCKS["snap-2"]);
  assert.deepEqual(records[0], {
    type: "header",
    operation: "allocated",
    namespace: "demo",
    snapshot: "snap-2",
    blockMetadataType: "FIXED_LENGTH",
    volumeCapacityBytes: MiB16,
    startingOffset: 0,
  });
  assert.deepEqual(tuplesOf(records), expected);
  const last = expected[expected.length - 1];
  assert.deepEqual(records[records.length - 1], {
    type: "end",
    messages: 1,
    tuples: 56,
    coveredBytes: 56 * 4096,
    nextOffset: last[0] + last[1],
  });
  // every blocks record says where to resume after it
  for (const r of records.filter((r) => r.type === "blocks")) {
    const b = r.blocks[r.blocks.length - 1];
    assert.equal(r.nextOffset, b.offset + b.length);
  }
});

Deno.test("maxResults caps tuples per record", async () => {
  const { call } = setup();
  const records = await ndjson(await call(`${ALLOC2}?maxResults=5`));
  const blocks = records.filter((r) => r.type === "blocks");
  assert.equal(blocks.length, Math.ceil(56 / 5));
  assert.ok(blocks.every((r) => r.blocks.length <= 5));
  assert.deepEqual(tuplesOf(records), blockTuples(DEMO_BLOCKS["snap-2"]));
});

Deno.test("delta by id (GET), by name (GET) and by POST body all equal the recorded delta", async () => {
  const { call } = setup();
  const want = blockTuples(DEMO_BLOCKS["delta-1-2"]);
  const byId = await ndjson(await call(`${DELTA}?baseSnapshotId=vol-1/snap-1`));
  assert.equal(byId[0].baseSnapshotId, "vol-1/snap-1");
  assert.equal(byId[0].operation, "delta");
  assert.deepEqual(tuplesOf(byId), want);
  const byName = await ndjson(
    await call(`${DELTA}?baseSnapshotName=snap-1&maxResults=7`),
  );
  assert.equal(byName[0].baseSnapshotName, "snap-1");
  assert.deepEqual(tuplesOf(byName), want);
  const posted = await ndjson(
    await call(DELTA, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        baseSnapshotName: "snap-1",
        startingOffset: "0",
        maxResults: 3,
      }),
    }),
  );
  assert.deepEqual(tuplesOf(posted), want);
  assert.equal(posted[posted.length - 1].type, "end");
});

Deno.test("VARIABLE_LENGTH extents cover exactly the recorded blocks", async () => {
  const { call, backend } = setup();
  backend.blockMetadataType = VARIABLE_LENGTH;
  const records = await ndjson(await call(ALLOC2));
  assert.equal(records[0].blockMetadataType, "VARIABLE_LENGTH");
  assert.deepEqual(
    mergeExtents(tuplesOf(records)),
    mergeExtents(blockTuples(DEMO_BLOCKS["snap-2"])),
  );
  assert.equal(records[records.length - 1].coveredBytes, 56 * 4096);
});

Deno.test("SSE: retry first, one unnamed event per record, id = resume offset", async () => {
  const { call } = setup();
  const response = await call(`${ALLOC2}?maxResults=10`, {
    headers: { accept: "text/event-stream" },
  });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "text/event-stream");
  assert.equal(response.headers.get("x-accel-buffering"), "no");
  const events = parseSse(await response.text());
  assert.equal(events[0].retry, "2000");
  const records = sseRecords(events);
  assert.deepEqual(records.map((r) => r.type), [
    "header",
    ...Array(6).fill("blocks"),
    "end",
  ]);
  for (let i = 0; i < records.length; i++) {
    if (records[i].type === "blocks") {
      assert.equal(events[i].id, String(records[i].nextOffset));
    } else assert.equal(events[i].id, undefined);
  }
  assert.deepEqual(tuplesOf(records), blockTuples(DEMO_BLOCKS["snap-2"]));
});

Deno.test("application/json: one document; long listings are truncated with where to go on", async () => {
  const { call } = setup({ jsonMaxTuples: 20 });
  const whole = await setup().call(`${DELTA}?baseSnapshotId=vol-1/snap-1`, {
    headers: { accept: "application/json" },
  });
  assert.equal(whole.headers.get("content-type"), "application/json");
  const doc = await whole.json();
  assert.equal(doc.header.volumeCapacityBytes, MiB16);
  assert.equal(doc.end.tuples, 37);
  assert.deepEqual(
    doc.blocks.map((b: Rec) => [b.offset, b.length]),
    blockTuples(DEMO_BLOCKS["delta-1-2"]),
  );

  // 56 tuples in pages of at most 20 (+ one message): follow truncated.nextOffset
  const got: [number, number][] = [];
  let offset = 0;
  for (let page = 0; page < 10; page++) {
    const r = await call(`${ALLOC2}?maxResults=8&startingOffset=${offset}`, {
      headers: { accept: "application/json" },
    });
    const d = await r.json();
    got.push(
      ...d.blocks.map((b: Rec) => [b.offset, b.length] as [number, number]),
    );
    if (d.end) break;
    assert.equal(d.end, undefined);
    assert.ok(d.blocks.length >= 20 && d.blocks.length < 28);
    offset = d.truncated.nextOffset;
  }
  assert.deepEqual(got, blockTuples(DEMO_BLOCKS["snap-2"]));
});

Deno.test("zero upstream messages: header still has the capacity (from the snapshot), then end", async () => {
  const { call, backend } = setup();
  const past = await ndjson(await call(`${ALLOC2}?startingOffset=${MiB16}`));
  assert.deepEqual(past.map((r) => r.type), ["header", "end"]);
  assert.equal(past[0].volumeCapacityBytes, MiB16);
  assert.equal(past[0].blockMetadataType, "UNKNOWN");
  assert.deepEqual(past[1], {
    type: "end",
    messages: 0,
    tuples: 0,
    coveredBytes: 0,
    nextOffset: MiB16,
  });
  const same = await ndjson(await call(`${DELTA}?baseSnapshotId=vol-1/snap-2`));
  assert.deepEqual(same.map((r) => r.type), ["header", "end"]);
  assert.equal(same[0].volumeCapacityBytes, MiB16);
  assert.equal(backend.streamsFinished, 2);
});

Deno.test("Accept negotiation", () => {
  const cases: [string | null, string | undefined][] = [
    [null, "ndjson"],
    ["*/*", "ndjson"],
    ["application/x-ndjson", "ndjson"],
    ["text/event-stream", "sse"],
    ["application/json", "json"],
    ["application/json, text/plain, */*", "json"],
    [
      "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
      "ndjson",
    ],
    ["application/json;q=0.5, text/event-stream", "sse"],
    ["text/*", "sse"],
    ["text/html", undefined],
    ["application/xml", undefined],
    ["application/x-ndjson;q=0", undefined],
  ];
  for (const [accept, want] of cases) {
    assert.equal(negotiateFormat(accept), want, `Accept: ${accept}`);
  }
});

Deno.test("bad requests get the right HTTP status and Connect code, before any stream", async () => {
  const { call, backend } = setup();
  const cases: [string, RequestInit, number, string][] = [
    [`${ALLOC2}?startingOffset=abc`, {}, 400, "invalid_argument"],
    [`${ALLOC2}?startingOffset=1.5`, {}, 400, "invalid_argument"],
    [`${ALLOC2}?startingOffset=`, {}, 400, "invalid_argument"],
    [`${ALLOC2}?startingOffset=-4096`, {}, 400, "out_of_range"],
    [`${ALLOC2}?startingOffset=99999999999999999999`, {}, 400, "out_of_range"],
    [
      `${ALLOC2}?startingOffset=${"9".repeat(100)}`,
      {},
      400,
      "invalid_argument",
    ],
    [`${ALLOC2}?maxResults=-1`, {}, 400, "invalid_argument"],
    [`${ALLOC2}?maxResults=x`, {}, 400, "invalid_argument"],
    [`${ALLOC2}?maxResults=4294967296`, {}, 400, "invalid_argument"],
    [`${ALLOC2}?startOffset=0`, {}, 400, "invalid_argument"],
    [`${ALLOC2}?maxResults=1&maxResults=2`, {}, 400, "invalid_argument"],
    [`${ALLOC2}?baseSnapshotId=x`, {}, 400, "invalid_argument"],
    [DELTA, {}, 400, "invalid_argument"],
    [
      `${DELTA}?baseSnapshotId=vol-1/snap-1&baseSnapshotName=snap-1`,
      {},
      400,
      "invalid_argument",
    ],
    [`${DELTA}?baseSnapshotId=nope`, {}, 404, "not_found"],
    [`${DELTA}?baseSnapshotName=nope`, {}, 404, "not_found"],
    ["/v1/namespaces/demo/snapshots/nope/allocated", {}, 404, "not_found"],
    [
      "/v1/namespaces/Demo!/snapshots/snap-2/allocated",
      {},
      400,
      "invalid_argument",
    ],
    [
      "/v1/namespaces/demo/snapshots/Snap_2/allocated",
      {},
      400,
      "invalid_argument",
    ],
    [
      ALLOC2,
      { headers: { authorization: "Bearer wrong" } },
      401,
      "unauthenticated",
    ],
    [
      ALLOC2,
      { headers: { authorization: "Basic YWxpY2U6eA==" } },
      401,
      "unauthenticated",
    ],
    [
      ALLOC2,
      { headers: { authorization: "Bearer bob-token" } },
      403,
      "permission_denied",
    ],
    [ALLOC2, { headers: { accept: "text/html" } }, 406, "invalid_argument"],
    [ALLOC2, { headers: { "last-event-id": "x" } }, 400, "invalid_argument"],
    [ALLOC2, { method: "POST", body: "{" }, 400, "invalid_argument"],
    [ALLOC2, { method: "POST", body: "[1]" }, 400, "invalid_argument"],
    [
      ALLOC2,
      { method: "POST", body: '{"startingOffset":-1}' },
      400,
      "out_of_range",
    ],
    [
      ALLOC2,
      { method: "POST", body: '{"startingOffset":1e300}' },
      400,
      "invalid_argument",
    ],
    [
      ALLOC2,
      { method: "POST", body: '{"baseSnapshotId":"a"}' },
      400,
      "invalid_argument",
    ],
    [
      ALLOC2,
      { method: "POST", body: "x".repeat(20000) },
      400,
      "invalid_argument",
    ],
    [
      `${ALLOC2}?maxResults=1`,
      { method: "POST", body: "{}" },
      400,
      "invalid_argument",
    ],
    [ALLOC2, { method: "DELETE" }, 405, "unimplemented"],
    [
      `${ALLOC2.replace("allocated", "stream-tickets")}`,
      { method: "GET" },
      405,
      "unimplemented",
    ],
  ];
  for (const [path, init, status, code] of cases) {
    const got = await errorOf(await call(path, init));
    assert.deepEqual(
      [got.status, got.code],
      [status, code],
      `${init.method ?? "GET"} ${path}: ${got.message}`,
    );
  }
  assert.equal(backend.streamsFinished, 0);
  const unauth = await call(ALLOC2, {
    headers: { authorization: "Bearer wrong" },
  });
  assert.match(unauth.headers.get("www-authenticate") ?? "", /^Bearer/);
  await unauth.body?.cancel();
});

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

Deno.test("upstream failure before the first message is an HTTP status (503), not a 200", async () => {
  const { call, backend } = setup();
  backend.injection = { failAfterMessages: 0 };
  const got = await errorOf(await call(ALLOC2));
  assert.deepEqual([got.status, got.code], [503, "unavailable"]);
});

Deno.test("failure mid-stream: error record with the resume offset; resuming there completes the listing", async () => {
  const { call, backend } = setup();
  backend.injection = { failAfterMessages: 3 };
  const broken = await ndjson(await call(`${ALLOC2}?maxResults=5`));
  const last = broken[broken.length - 1];
  const firstPart = tuplesOf(broken);
  assert.equal(firstPart.length, 15);
  const end = firstPart[14][0] + firstPart[14][1];
  assert.deepEqual(last, {
    type: "error",
    code: "unavailable",
    message: "injected failure",
    nextOffset: end,
    messages: 3,
    tuples: 15,
    coveredBytes: 15 * 4096,
  });
  assert.ok(!broken.some((r) => r.type === "end"));
  backend.injection = {};
  const rest = await ndjson(
    await call(`${ALLOC2}?maxResults=5&startingOffset=${last.nextOffset}`),
  );
  assert.equal(rest[0].startingOffset, end);
  assert.deepEqual(
    [...firstPart, ...tuplesOf(rest)],
    blockTuples(DEMO_BLOCKS["snap-2"]),
  );

  // SSE: the error event carries the id to resume from; Last-Event-ID resumes
  backend.injection = { failAfterMessages: 2 };
  const events = parseSse(
    await (await call(`${ALLOC2}?maxResults=4`, {
      headers: { accept: "text/event-stream" },
    })).text(),
  );
  const errorEvent = events[events.length - 1];
  const errorRec = JSON.parse(errorEvent.data!);
  assert.equal(errorRec.type, "error");
  assert.equal(errorEvent.id, String(errorRec.nextOffset));
  backend.injection = {};
  const resumed = sseRecords(parseSse(
    await (await call(`${ALLOC2}?maxResults=4`, {
      headers: { accept: "text/event-stream", "last-event-id": errorEvent.id! },
    })).text(),
  ));
  assert.deepEqual(
    [...tuplesOf(sseRecords(events)), ...tuplesOf(resumed)],
    blockTuples(DEMO_BLOCKS["snap-2"]),
  );
});

Deno.test("resume at every record boundary (startingOffset and Last-Event-ID) has no gaps or duplicates", async () => {
  const { call } = setup();
  const want = blockTuples(DEMO_BLOCKS["delta-1-2"]);
  const full = await ndjson(
    await call(`${DELTA}?baseSnapshotId=vol-1/snap-1&maxResults=4`),
  );
  for (const r of full.filter((r) => r.type === "blocks")) {
    const before = want.filter(([o]) => o < r.nextOffset);
    const viaQuery = await ndjson(
      await call(
        `${DELTA}?baseSnapshotId=vol-1/snap-1&startingOffset=${r.nextOffset}`,
      ),
    );
    assert.deepEqual([...before, ...tuplesOf(viaQuery)], want);
    const viaHeader = sseRecords(parseSse(
      await (await call(
        `${DELTA}?baseSnapshotId=vol-1/snap-1&startingOffset=0`,
        {
          headers: {
            accept: "text/event-stream",
            "last-event-id": String(r.nextOffset),
          },
        },
      )).text(),
    ));
    assert.deepEqual([...before, ...tuplesOf(viaHeader)], want);
  }
  // an unaligned offset inside a block still returns that block (it ends after the offset)
  const mid = await ndjson(
    await call(`${ALLOC2}?startingOffset=${101 * 4096 + 17}`),
  );
  assert.deepEqual(tuplesOf(mid)[0], [101 * 4096, 4096]);
});

Deno.test("backpressure: the upstream produces only about as much as the client reads", async () => {
  const { call, backend } = setup();
  const response = await call(`${ALLOC2}?maxResults=1`);
  const reader = response.body!.getReader();
  for (let i = 0; i < 4; i++) await reader.read(); // header + 3 blocks records
  await new Promise((r) => setTimeout(r, 30));
  assert.ok(
    backend.messagesYielded <= 5,
    `upstream ran ahead: ${backend.messagesYielded} messages`,
  );
  await reader.cancel();
});

Deno.test("a client that goes away aborts the upstream call", async () => {
  const { call, backend } = setup();
  backend.armPause(1);
  const response = await call(`${ALLOC2}?maxResults=1`);
  const reader = response.body!.getReader();
  await reader.read(); // header
  await reader.read(); // first blocks
  const waiting = reader.read(); // waits on the paused upstream
  await reader.cancel();
  await waiting;
  assert.equal(backend.streamsAborted, 1);
  assert.equal(backend.streamsFinished, 0);
});

Deno.test("heartbeats during quiet periods (NDJSON record, SSE comment), then the stream goes on", async () => {
  for (const accept of ["application/x-ndjson", "text/event-stream"]) {
    const { call, backend } = setup({ heartbeatMs: 25 });
    backend.armPause(1);
    const response = await call(`${ALLOC2}?maxResults=30`, {
      headers: { accept },
    });
    const reader = response.body!.pipeThrough(new TextDecoderStream())
      .getReader();
    let text = "";
    while (!/heartbeat/.test(text)) text += (await reader.read()).value;
    backend.release();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += value;
    }
    const records = accept === "text/event-stream"
      ? sseRecords(parseSse(text))
      : parseNdjson(text);
    if (accept === "text/event-stream") {
      assert.ok(parseSse(text).some((e) => e.comments.includes("heartbeat")));
    } else assert.ok(records.some((r) => r.type === "heartbeat"));
    assert.deepEqual(tuplesOf(records), blockTuples(DEMO_BLOCKS["snap-2"]));
    assert.equal(records[records.length - 1].type, "end");
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

Deno.test("snapshot list shows ids for baseSnapshotId", async () => {
  const { call } = setup();
  const r = await call("/v1/namespaces/demo/snapshots");
  assert.equal(r.status, 200);
  const { snapshots } = await r.json();
  assert.deepEqual(snapshots.map((s: Rec) => s.snapshotId), [
    "vol-1/snap-1",
    "vol-1/snap-2",
    "vol-1/snap-3",
  ]);
  assert.equal(snapshots[0].volumeCapacityBytes, MiB16);
  assert.equal(
    (await errorOf(
      await call("/v1/namespaces/demo/snapshots", {
        headers: { authorization: "Bearer bob-token" },
      }),
    )).status,
    403,
  );
});

Deno.test("/openapi.json is OpenAPI 3.1 and every path it lists is served", async () => {
  const { route, call } = setup();
  const r = await route(new Request("http://gw/openapi.json"))!;
  assert.equal(r.status, 200);
  const doc = await r.json();
  assert.equal(doc.openapi, "3.1.0");
  const paths = Object.keys(doc.paths);
  assert.equal(paths.length, 4);
  for (const p of paths) {
    const concrete = p.replace("{namespace}", "demo").replace(
      "{snapshot}",
      "snap-2",
    );
    for (
      const method of Object.keys(doc.paths[p]).filter((k) =>
        k !== "parameters"
      )
    ) {
      const delta = p.endsWith("/delta");
      const res = method === "post" && delta
        ? await call(concrete, {
          method: "POST",
          body: '{"baseSnapshotName":"snap-1"}',
        })
        : await call(concrete + (delta ? "?baseSnapshotName=snap-1" : ""), {
          method: method.toUpperCase(),
        });
      assert.ok(
        res.status === 200 || res.status === 201,
        `${method} ${concrete}: ${res.status}`,
      );
      await res.body?.cancel();
    }
  }
  // every $ref resolves
  const text = JSON.stringify(doc);
  for (
    const [, name] of text.matchAll(/"#\/components\/schemas\/([A-Za-z]+)"/g)
  ) {
    assert.ok(doc.components.schemas[name], `missing schema ${name}`);
  }
});

Deno.test("the fast block writer says the same as the generic protobuf JSON path", () => {
  const offsets: number[] = [], sizes: number[] = [];
  let at = 0;
  for (let i = 0; i < 500; i++) {
    at += Math.floor(Math.random() * 2 ** 20) * 4096;
    offsets.push(at);
    sizes.push(4096 * (1 + (i % 7)));
    at += sizes[i];
  }
  offsets[0] = 0; // zero values are left out by proto3 JSON: must still be a 0 here
  offsets.push(2 ** 53 - 8192);
  sizes.push(4096);
  const message = {
    blockMetadataType: 1,
    volumeCapacityBytes: 2 ** 53 - 1,
    offsets,
    sizes,
  };
  const generic = toJson(
    GetMetadataAllocatedResponseSchema,
    create(GetMetadataAllocatedResponseSchema, {
      blockMetadataType: 1,
      volumeCapacityBytes: BigInt(message.volumeCapacityBytes),
      blockMetadata: offsets.map((o, i) =>
        create(BlockMetadataSchema, {
          byteOffset: BigInt(o),
          sizeBytes: BigInt(sizes[i]),
        })
      ),
    }),
  ) as { blockMetadata: { byteOffset?: string; sizeBytes?: string }[] };
  const fast = JSON.parse(
    new TextDecoder().decode(blocksRecordBytes(message, 123, "", "")),
  );
  assert.deepEqual(
    fast.blocks.map((b: Rec) => [b.offset, b.length]),
    generic.blockMetadata.map((
      b,
    ) => [Number(b.byteOffset ?? 0), Number(b.sizeBytes ?? 0)]),
  );
  assert.equal(fast.nextOffset, 123);
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
