/**
 * The HTTP/JSON surface through the real server and a real client: curl as a
 * subprocess against a gateway on an ephemeral loopback port. Ground truth
 * comes from the image bytes of the seeded demo (tests/support/ground-truth.ts,
 * no shared code with the store); failures and pauses from the memory backend.
 */
import assert from "node:assert/strict";
import { NoAuth } from "../src/auth/authenticator.ts";
import type { Authenticator } from "../src/auth/authenticator.ts";
import {
  createHttpJsonRoutes,
  type HttpJsonOptions,
} from "../src/front/http-json/index.ts";
import { type RunningGateway, startGateway } from "../src/server/start.ts";
import {
  NodeFileSnapshotStore,
  seedNodeDemoIfEmpty,
} from "../src/adapter/node-fs/file-store.ts";
import type { Backend } from "../src/backend/backend.ts";
import { VARIABLE_LENGTH } from "../src/wire/metadata-message.ts";
import {
  allocatedBlocks,
  changedBlocks,
  expectedTuples,
  type Tuple,
} from "./support/ground-truth.ts";
import {
  parseNdjson,
  parseSse,
  type Rec,
  sseRecords,
  tuplesOf,
} from "./support/json-records.ts";
import { demoBackend, type MemoryBackend } from "./support/memory-backend.ts";
import { run } from "./support/run.ts";
import { demoAuth } from "./support/token-auth.ts";

async function serve(
  backend: Backend,
  auth: Authenticator = new NoAuth(),
  options: HttpJsonOptions = {},
): Promise<RunningGateway> {
  return await startGateway(
    { host: "127.0.0.1", port: 0, grpcPort: 0, corsOrigins: [] },
    {
      backend,
      auth,
      routes: (gateway) => [createHttpJsonRoutes(gateway, options)],
    },
  );
}

/** A seeded demo data dir, its store, and ground truth read from its image files. */
async function demoStore(type: "FIXED" | "VARIABLE" = "FIXED") {
  const dataDir = await Deno.makeTempDir({ prefix: "cbt-http-json-" });
  await seedNodeDemoIfEmpty(dataDir);
  const image = (snap: string) =>
    Deno.readFileSync(`${dataDir}/demo/vol-1/${snap}.img`);
  const store = new NodeFileSnapshotStore({
    dataDir,
    blockMetadataType: type === "VARIABLE" ? VARIABLE_LENGTH : undefined,
  });
  const truth = {
    allocated(snap: string, start = 0): Tuple[] {
      const img = image(snap);
      return expectedTuples(allocatedBlocks(img), type, img.length, start);
    },
    delta(base: string, target: string, start = 0): Tuple[] {
      const t = image(target);
      return expectedTuples(
        changedBlocks(image(base), t),
        type,
        t.length,
        start,
      );
    },
    capacity: image("snap-1").length,
  };
  return {
    dataDir,
    store,
    truth,
    cleanup: () => Deno.remove(dataDir, { recursive: true }),
  };
}

async function curl(...args: string[]): Promise<string> {
  const r = await run("curl", ["-sS", "--max-time", "20", ...args]);
  assert.equal(r.code, 0, `curl ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}

/** curl -N and the HTTP status (written after the body by -w). */
async function curlStatus(
  ...args: string[]
): Promise<{ status: number; body: string }> {
  const out = await curl("-w", "\n%{http_code}", ...args);
  const at = out.lastIndexOf("\n");
  return { status: Number(out.slice(at + 1)), body: out.slice(0, at) };
}

Deno.test("curl: NDJSON and SSE of the seeded demo equal ground truth from the images", async () => {
  const demo = await demoStore();
  const gw = await serve(demo.store);
  try {
    const base = `${gw.httpUrl}/v1/namespaces/demo/snapshots`;
    for (const snap of ["snap-1", "snap-2", "snap-3"]) {
      const records = parseNdjson(
        await curl("-N", `${base}/${snap}/allocated`),
      );
      assert.equal(records[0].volumeCapacityBytes, demo.truth.capacity);
      assert.equal(records[0].blockMetadataType, "FIXED_LENGTH");
      assert.deepEqual(tuplesOf(records), demo.truth.allocated(snap), snap);
      const end = records[records.length - 1];
      assert.equal(end.type, "end");
      assert.equal(end.tuples, demo.truth.allocated(snap).length);
      const sse = sseRecords(parseSse(
        await curl(
          "-N",
          "-H",
          "Accept: text/event-stream",
          `${base}/${snap}/allocated?maxResults=9`,
        ),
      ));
      assert.deepEqual(
        tuplesOf(sse),
        demo.truth.allocated(snap),
        `${snap} SSE`,
      );
      assert.equal(sse[sse.length - 1].type, "end");
    }
    for (
      const [b, t] of [["snap-1", "snap-2"], ["snap-2", "snap-3"], [
        "snap-1",
        "snap-3",
      ]]
    ) {
      const byId = parseNdjson(
        await curl(
          "-N",
          `${base}/${t}/delta?baseSnapshotId=vol-1/${b}&maxResults=10`,
        ),
      );
      assert.deepEqual(tuplesOf(byId), demo.truth.delta(b, t), `${b}→${t}`);
      const posted = parseNdjson(
        await curl(
          "-N",
          "-X",
          "POST",
          "-H",
          "Content-Type: application/json",
          "--data",
          `{"baseSnapshotName":"${b}"}`,
          `${base}/${t}/delta`,
        ),
      );
      assert.deepEqual(
        tuplesOf(posted),
        demo.truth.delta(b, t),
        `${b}→${t} POST`,
      );
      const doc = JSON.parse(
        await curl(
          "-H",
          "Accept: application/json",
          `${base}/${t}/delta?baseSnapshotName=${b}`,
        ),
      );
      assert.deepEqual(
        doc.blocks.map((x: Rec) => [x.offset, x.length]),
        demo.truth.delta(b, t),
      );
      assert.equal(doc.end.tuples, demo.truth.delta(b, t).length);
    }
  } finally {
    await gw.close();
    await demo.cleanup();
  }
});

Deno.test("curl: VARIABLE_LENGTH store output equals ground truth", async () => {
  const demo = await demoStore("VARIABLE");
  const gw = await serve(demo.store);
  try {
    const base = `${gw.httpUrl}/v1/namespaces/demo/snapshots`;
    const records = parseNdjson(await curl("-N", `${base}/snap-3/allocated`));
    assert.equal(records[0].blockMetadataType, "VARIABLE_LENGTH");
    assert.deepEqual(tuplesOf(records), demo.truth.allocated("snap-3"));
    const delta = parseNdjson(
      await curl("-N", `${base}/snap-3/delta?baseSnapshotName=snap-1`),
    );
    assert.deepEqual(tuplesOf(delta), demo.truth.delta("snap-1", "snap-3"));
    // A stream with no blocks still says what it would have been: the store
    // knows capacity and block type without streaming.
    const empty = parseNdjson(
      await curl(
        "-N",
        `${base}/snap-3/allocated?startingOffset=${demo.truth.capacity}`,
      ),
    );
    assert.deepEqual(empty.map((r) => r.type), ["header", "end"]);
    assert.equal(empty[0].blockMetadataType, "VARIABLE_LENGTH");
    assert.equal(empty[0].volumeCapacityBytes, demo.truth.capacity);
  } finally {
    await gw.close();
    await demo.cleanup();
  }
});

Deno.test("curl: resume with startingOffset and Last-Event-ID continues without gaps or duplicates", async () => {
  const demo = await demoStore();
  const gw = await serve(demo.store);
  try {
    const url =
      `${gw.httpUrl}/v1/namespaces/demo/snapshots/snap-3/delta?baseSnapshotName=snap-1&maxResults=8`;
    const want = demo.truth.delta("snap-1", "snap-3");
    const events = parseSse(
      await curl("-N", "-H", "Accept: text/event-stream", url),
    );
    const ids = events.filter((e) => e.id !== undefined).map((e) => e.id!);
    assert.ok(ids.length >= 4);
    for (
      const id of [ids[0], ids[Math.floor(ids.length / 2)], ids[ids.length - 2]]
    ) {
      const before = want.filter(([o]) => o < Number(id));
      const viaHeader = sseRecords(parseSse(
        await curl(
          "-N",
          "-H",
          "Accept: text/event-stream",
          "-H",
          `Last-Event-ID: ${id}`,
          url,
        ),
      ));
      assert.equal(viaHeader[0].startingOffset, Number(id));
      assert.deepEqual(
        [...before, ...tuplesOf(viaHeader)],
        want,
        `Last-Event-ID ${id}`,
      );
      const viaQuery = parseNdjson(
        await curl("-N", `${url}&startingOffset=${id}`),
      );
      assert.deepEqual(
        [...before, ...tuplesOf(viaQuery)],
        want,
        `startingOffset ${id}`,
      );
    }
  } finally {
    await gw.close();
    await demo.cleanup();
  }
});

Deno.test("curl -N sees records before the stream ends", async () => {
  const backend = demoBackend();
  backend.armPause(2);
  const gw = await serve(backend);
  const child = new Deno.Command("curl", {
    args: [
      "-sS",
      "-N",
      "--max-time",
      "20",
      `${gw.httpUrl}/v1/namespaces/demo/snapshots/snap-2/allocated?maxResults=5`,
    ],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  try {
    const reader = child.stdout.pipeThrough(new TextDecoderStream())
      .getReader();
    let text = "";
    // header + two blocks records, while the upstream is held before its third message
    while (text.split("\n").length < 4) {
      const { done, value } = await reader.read();
      assert.ok(!done, "curl's output ended while the stream was paused");
      text += value;
    }
    const early = parseNdjson(text.slice(0, text.lastIndexOf("\n") + 1));
    assert.deepEqual(early.map((r) => r.type), ["header", "blocks", "blocks"]);
    assert.equal(backend.streamsFinished, 0, "stream finished before release");
    backend.release();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += value;
    }
    const records = parseNdjson(text);
    assert.equal(records[records.length - 1].type, "end");
    assert.equal(tuplesOf(records).length, 56);
    assert.equal((await child.status).code, 0);
  } finally {
    try {
      child.kill();
    } catch { /* already exited */ }
    await child.status;
    await gw.close();
  }
});

Deno.test("curl: a failure injected mid-stream ends with an error record holding the resume offset", async () => {
  const backend = demoBackend();
  backend.injection = { failAfterMessages: 4 };
  const gw = await serve(backend);
  try {
    const url =
      `${gw.httpUrl}/v1/namespaces/demo/snapshots/snap-2/allocated?maxResults=6`;
    const records = parseNdjson(await curl("-N", url));
    const got = tuplesOf(records);
    assert.equal(got.length, 24);
    const last = records[records.length - 1];
    assert.equal(last.type, "error");
    assert.equal(last.code, "unavailable");
    assert.equal(last.nextOffset, got[23][0] + got[23][1]);
    assert.ok(!records.some((r) => r.type === "end"));
    const events = parseSse(
      await curl("-N", "-H", "Accept: text/event-stream", url),
    );
    assert.equal(events[events.length - 1].id, String(last.nextOffset));
    backend.injection = {};
    const rest = parseNdjson(
      await curl("-N", `${url}&startingOffset=${last.nextOffset}`),
    );
    const all = [...got, ...tuplesOf(rest)];
    const full = tuplesOf(parseNdjson(await curl("-N", url)));
    assert.equal(full.length, 56);
    assert.deepEqual(all, full);
  } finally {
    await gw.close();
  }
});

Deno.test("curl: every bad parameter and credential gets the right status and code", async () => {
  const demo = await demoStore();
  const gw = await serve(demo.store, demoAuth());
  try {
    const a = `${gw.httpUrl}/v1/namespaces/demo/snapshots/snap-2/allocated`;
    const auth = ["-H", "Authorization: Bearer alice-token"];
    const cases: [string[], number, string][] = [
      [[...auth, `${a}?startingOffset=abc`], 400, "invalid_argument"],
      [[...auth, `${a}?startingOffset=-1`], 400, "out_of_range"],
      [
        [...auth, `${a}?startingOffset=18446744073709551616`],
        400,
        "out_of_range",
      ],
      [[...auth, `${a}?maxResults=-5`], 400, "invalid_argument"],
      [[...auth, `${a}?maxResults=1e3`], 400, "invalid_argument"],
      [[...auth, `${a}?maxResults=99999999999`], 400, "invalid_argument"],
      [[...auth, `${a}?foo=1`], 400, "invalid_argument"],
      [[...auth, a.replace("snap-2", "snap-9")], 404, "not_found"],
      [
        [
          ...auth,
          `${a.replace("allocated", "delta")}?baseSnapshotId=vol-1/snap-9`,
        ],
        404,
        "not_found",
      ],
      [
        [...auth, `${a.replace("allocated", "delta")}?baseSnapshotName=snap-9`],
        404,
        "not_found",
      ],
      [[...auth, "-H", "Accept: text/csv", a], 406, "invalid_argument"],
      [[a], 401, "unauthenticated"],
      [["-H", "Authorization: Bearer forged", a], 401, "unauthenticated"],
      [["-H", "Authorization: Bearer bob-token", a], 403, "permission_denied"],
      [[`${a}?ticket=x.y`], 401, "unauthenticated"],
    ];
    for (const [args, status, code] of cases) {
      const r = await curlStatus(...args);
      assert.equal(r.status, status, `${args.join(" ")}: ${r.body}`);
      assert.equal(JSON.parse(r.body).code, code, args.join(" "));
    }
    // a good token, for contrast
    const ok = await curlStatus(...auth, a);
    assert.equal(ok.status, 200);
    assert.equal(parseNdjson(ok.body + "\n").pop()!.type, "end");
  } finally {
    await gw.close();
    await demo.cleanup();
  }
});

Deno.test("curl: a stream ticket authorizes a header-less request (as EventSource makes)", async () => {
  const demo = await demoStore();
  const gw = await serve(demo.store, demoAuth());
  try {
    const snap = `${gw.httpUrl}/v1/namespaces/demo/snapshots/snap-2`;
    const issued = JSON.parse(
      await curl(
        "-X",
        "POST",
        "-H",
        "Authorization: Bearer alice-token",
        `${snap}/stream-tickets`,
      ),
    );
    assert.match(issued.ticket, /^[\w-]+\.[\w-]{43}$/);
    const records = sseRecords(parseSse(
      await curl(
        "-N",
        "-H",
        "Accept: text/event-stream",
        `${snap}/allocated?ticket=${issued.ticket}`,
      ),
    ));
    assert.deepEqual(tuplesOf(records), demo.truth.allocated("snap-2"));
    const other = await curlStatus(
      `${gw.httpUrl}/v1/namespaces/demo/snapshots/snap-1/allocated?ticket=${issued.ticket}`,
    );
    assert.equal(other.status, 403);
  } finally {
    await gw.close();
    await demo.cleanup();
  }
});

Deno.test("curl going away mid-stream cancels the upstream call", async () => {
  const backend: MemoryBackend = demoBackend();
  backend.armPause(1);
  const gw = await serve(backend);
  const child = new Deno.Command("curl", {
    args: [
      "-sS",
      "-N",
      `${gw.httpUrl}/v1/namespaces/demo/snapshots/snap-2/allocated?maxResults=5`,
    ],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  try {
    const reader = child.stdout.getReader();
    await reader.read(); // something arrived: the stream is running and now paused upstream
    child.kill("SIGKILL");
    await child.status;
    for (let i = 0; i < 200 && backend.streamsAborted === 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(backend.streamsAborted, 1);
    assert.equal(backend.streamsFinished, 0);
    reader.releaseLock();
    await child.stdout.cancel();
  } finally {
    await gw.close();
  }
});
