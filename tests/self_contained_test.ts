/**
 * A clone from a forge holds the repository and nothing beside it, so no
 * source, test, bench or manifest may point outside the repository: no
 * relative path that climbs above its root (`../<a sibling>/…`), no absolute path
 * of a developer's machine. Fixtures live in tests/fixtures/ (see its README).
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";

const ROOT = fromFileUrl(new URL("../", import.meta.url));
const SCANNED = ["src", "tests", "bench", "deploy", ".ci"];
/** Data copied in byte for byte; its README describes where it was recorded. */
const NOT_SCANNED = ["tests/fixtures/"];
const TEXT = /\.(ts|js|json|jsonc|yaml|yml|conf|md|sh|toml|capnp)$|^run$/;

/** Home and work directories of these machines; system paths (/usr, /etc) are fine. */
const MACHINE_PATHS = /(?<![\w.])\/(work|root|home|Users|tmp\/bash_jobs)\//;
/** Traversal probes that tests send as hostile names, not paths they read. */
const TRAVERSAL_PROBE = /(^|\/)(etc\/(passwd|shadow)|proc\/self\/environ)$/;
/** A quoted relative path: "./x", "../x", `../x`. */
const RELATIVE_PATH = /["'`]((?:\.\.?\/)+[^"'`\s$]*|\.\.)["'`]/g;

/** Every place in `text` (a file at `file`, relative to `root`) that leaves the repository. */
export function outsideReferences(
  root: string,
  file: string,
  text: string,
): string[] {
  const found: string[] = [];
  text.split("\n").forEach((line, i) => {
    const where = `${file}:${i + 1}`;
    if (MACHINE_PATHS.test(line)) found.push(`${where}: ${line.trim()}`);
    for (const m of line.matchAll(RELATIVE_PATH)) {
      if (TRAVERSAL_PROBE.test(m[1])) continue;
      const target = resolve(root, dirname(file), m[1]);
      const inside = relative(root, target);
      if (inside.startsWith("..")) found.push(`${where}: ${m[1]}`);
    }
  });
  return found;
}

function* files(dir: string): Generator<string> {
  for (const entry of Deno.readDirSync(join(ROOT, dir))) {
    const rel = `${dir}/${entry.name}`;
    if (entry.isDirectory) {
      if (entry.name === "node_modules") continue;
      if (NOT_SCANNED.some((p) => `${rel}/`.startsWith(p))) continue;
      yield* files(rel);
    } else if (TEXT.test(entry.name)) yield rel;
  }
}

Deno.test("the checker flags paths that leave the repository, and only those", () => {
  const root = "/repo";
  assertEquals(
    outsideReferences(
      root,
      "tests/x_test.ts",
      [
        'new URL("../../sibling-checkout/a.json", import.meta.url)',
        'const ok = new URL("./fixtures/real-sidecar/", import.meta.url);',
        'import { x } from "../src/wire/envelopes.ts";',
        'Deno.readTextFile("/work/shared/design.md")',
        'const chromium = "/usr/bin/chromium";',
        'const root = new URL("../..", import.meta.url);',
        'request: { snapshotName: "../../etc/passwd" },',
      ].join("\n"),
    ),
    [
      "tests/x_test.ts:1: ../../sibling-checkout/a.json",
      'tests/x_test.ts:4: Deno.readTextFile("/work/shared/design.md")',
      "tests/x_test.ts:6: ../..",
    ],
  );
  assertEquals(
    outsideReferences(root, "tests/support/run.ts", 'new URL("../..", u)'),
    [],
  );
});

Deno.test("nothing in src, tests, bench, deploy or .ci reaches outside the repository", () => {
  const self = relative(ROOT, fromFileUrl(import.meta.url));
  const found: string[] = [];
  let scanned = 0;
  for (const dir of SCANNED) {
    for (const file of files(dir)) {
      if (file === self) continue; // its examples are meant to be flagged
      scanned++;
      found.push(
        ...outsideReferences(
          ROOT,
          file,
          Deno.readTextFileSync(join(ROOT, file)),
        ),
      );
    }
  }
  assertEquals(found, []);
  // the walk really read the tree (a wrong root would scan nothing)
  assertEquals(scanned > 100, true, `only ${scanned} files scanned`);
});

Deno.test("the recorded fixtures are in the repository", () => {
  for (
    const f of [
      "README.md",
      "errors.json",
      "k8s-requests.jsonl",
      "timing.json",
      "streams/fixed-allocated-max0.json",
    ]
  ) {
    const stat = Deno.statSync(join(ROOT, "tests/fixtures/real-sidecar", f));
    assertEquals(stat.isFile && stat.size > 0, true, f);
  }
});
