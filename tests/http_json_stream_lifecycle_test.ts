/**
 * HTTP/JSON streams over time, in process: an upstream failure before the
 * first message is an HTTP status, one mid-stream is an error record with
 * the resume offset; resuming at any record boundary has no gaps or
 * duplicates; the upstream runs only as far ahead as the client reads,
 * stops when the client goes away, and quiet periods carry heartbeats.
 */
import assert from "node:assert/strict";
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
  ndjson,
} from "./support/http-json-in-process.ts";

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
