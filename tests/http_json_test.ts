/**
 * The HTTP/JSON surface in process: Requests into the route, records out,
 * compared with ground truth written down from the real sidecar's recordings
 * (the demo memory backend holds the same blocks): NDJSON, SSE and JSON
 * documents, Accept negotiation, bad requests, the snapshot list, OpenAPI
 * and the fast block writer. Streams that fail, resume, stall or lose their
 * client: http_json_stream_lifecycle_test.ts; auth and stream tickets:
 * http_json_auth_test.ts. Real curl: curl_test.ts.
 */
import assert from "node:assert/strict";
import { create, toJson } from "@bufbuild/protobuf";
import { blocksRecordBytes } from "../src/front/http-json/block-records.ts";
import { VARIABLE_LENGTH } from "../src/wire/metadata-message.ts";
import {
  BlockMetadataSchema,
  GetMetadataAllocatedResponseSchema,
} from "../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import {
  blockTuples,
  DEMO_BLOCKS,
  mergeExtents,
  parseSse,
  type Rec,
  sseRecords,
  tuplesOf,
} from "./support/json-records.ts";
import {
  ALLOC2,
  DELTA,
  errorOf,
  httpJsonInProcess as setup,
  ndjson,
} from "./support/http-json-in-process.ts";
import { negotiateFormat } from "../src/front/http-json/format.ts";

const MiB16 = 16 * 1024 * 1024;

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
