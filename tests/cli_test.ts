/**
 * The CLI as people run it: `deno task start` in a subprocess, seeding the
 * demo into an empty data dir, printing its URLs, answering the demo call,
 * and shutting down cleanly on SIGTERM; bad flags and an open non-loopback
 * listener are refused.
 */
import { deepStrictEqual, equal, match, ok } from "node:assert/strict";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { SnapshotMetadata } from "../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import { DEMO } from "../src/store/demo-seed.ts";
import { ROOT, run } from "./support/run.ts";
import { collectTuples } from "./support/collect.ts";

const deno = Deno.execPath();

/** Lines of a child's stdout, read on demand while the child keeps running. */
class LineReader {
  readonly seen: string[] = [];
  #pending: string[] = [];
  #partial = "";
  constructor(readonly reader: ReadableStreamDefaultReader<string>) {}

  async waitFor(pattern: RegExp): Promise<RegExpMatchArray> {
    for (;;) {
      while (this.#pending.length > 0) {
        const line = this.#pending.shift()!;
        this.seen.push(line);
        const m = line.match(pattern);
        if (m) return m;
      }
      const { value, done } = await this.reader.read();
      if (done) {
        throw new Error(
          `gateway exited before printing ${pattern}:\n${this.seen.join("\n")}`,
        );
      }
      const lines = (this.#partial + value).split("\n");
      this.#partial = lines.pop()!;
      this.#pending.push(...lines);
    }
  }
}

Deno.test("deno task start seeds the demo, serves it, and stops on SIGTERM", async () => {
  const dataDir = `${await Deno.makeTempDir({ prefix: "cbt-cli-" })}/data`;
  const child = new Deno.Command(deno, {
    args: [
      "task",
      "start",
      "--port",
      "0",
      "--grpc-port",
      "0",
      "--data-dir",
      dataDir,
    ],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = new LineReader(
    child.stdout.pipeThrough(new TextDecoderStream()).getReader(),
  );
  try {
    const http = await lines.waitFor(
      /Connect, gRPC-Web, HTTP\/JSON: (http:\/\/\S+)/,
    );
    const grpc = await lines.waitFor(
      /native gRPC \(HTTP\/2\): +(http:\/\/\S+)/,
    );
    match(lines.seen.join("\n"), /seeded the demo/);
    ok(grpc[1] !== http[1]);
    const client = createClient(
      SnapshotMetadata,
      createConnectTransport({ baseUrl: http[1] }),
    );
    const offsets = (await collectTuples(client.getMetadataAllocated({
      namespace: DEMO.namespace,
      snapshotName: "snap-2",
    }))).map(([offset]) => offset / 4096);
    deepStrictEqual(
      offsets,
      DEMO.snapshots.find((s) => s.name === "snap-2")!.allocatedBlocks,
    );
  } finally {
    child.kill("SIGTERM");
    const status = await child.status;
    await lines.reader.cancel();
    await Deno.remove(dataDir.replace(/\/data$/, ""), { recursive: true });
    equal(status.code, 0, "clean exit on SIGTERM");
  }
});

Deno.test("--help prints usage and exits 0", async () => {
  const r = await run(deno, ["task", "start", "--help"], { cwd: ROOT });
  equal(r.code, 0);
  match(r.stdout, /--data-dir/);
  match(r.stdout, /--block-metadata-type/);
});

Deno.test("bad flags exit 2 with a message", async () => {
  for (
    const [args, pattern] of [
      [["--port", "http"], /--port must be a port number/],
      [
        ["--block-metadata-type", "ODD"],
        /--block-metadata-type must be one of/,
      ],
      [["--no-such-flag"], /no-such-flag/],
      [
        ["--host", "0.0.0.0"],
        /refusing to serve an open gateway on 0\.0\.0\.0/,
      ],
      [["--tls-cert", "x.pem"], /--tls-cert and --tls-key go together/],
      [
        [
          "--host",
          "0.0.0.0",
          "--auth",
          "passthrough",
          "--data-dir",
          "/nonexistent/cbt",
        ],
        /the embedded store has none/,
      ],
    ] as const
  ) {
    const r = await run(deno, ["task", "start", ...args], { cwd: ROOT });
    equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    match(r.stderr, pattern);
  }
});
