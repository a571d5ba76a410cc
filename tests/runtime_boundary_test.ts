/**
 * Runtime code lives in the adapters: outside `src/adapter/` (and the CLI
 * entry `src/main.ts`) no file of `src/` may touch the Deno namespace or
 * import a Node builtin, so the core runs on any fetch runtime and each
 * runtime's code is in one place. Comments may mention both.
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { join, relative } from "node:path";
import { ROOT } from "./support/run.ts";

/** Where runtime code belongs (repo-relative, `/`-separated). */
export function mayTouchRuntime(file: string): boolean {
  return file.startsWith("src/adapter/") || file === "src/main.ts";
}

/** Code without its comments; `//` after a `:` (a URL) is kept. */
function withoutComments(text: string): string {
  return text
    .replace(/\/\*[\s\S]*?\*\//g, "")
    .replace(/(^|[^:])\/\/.*$/gm, "$1");
}

/** A Node builtin in an import, a dynamic import, a re-export or require. */
const NODE_IMPORT =
  /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+|\brequire\s*\(\s*)["']node:[^"']*["']/g;
const DENO_NAMESPACE = /\bDeno\.\w+/g;

/** Every runtime touch in `text`, as `line: what`. */
export function runtimeTouches(text: string): string[] {
  const found: string[] = [];
  withoutComments(text).split("\n").forEach((line, i) => {
    for (const m of line.matchAll(NODE_IMPORT)) found.push(`${i + 1}: ${m[0]}`);
    for (const m of line.matchAll(DENO_NAMESPACE)) {
      found.push(`${i + 1}: ${m[0]}`);
    }
  });
  return found;
}

async function* sourceFiles(dir: string): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) yield* sourceFiles(path);
    else if (/\.(ts|js|mjs)$/.test(entry.name)) yield path;
  }
}

Deno.test("the checker flags runtime code and passes comments and Web APIs", () => {
  assertEquals(
    runtimeTouches(
      [
        'import { open } from "node:fs/promises";',
        'export { Buffer } from "node:buffer";',
        'const h2 = await import( "node:http2" );',
        'const u = "https://x"; const t = Deno.readTextFileSync(u);',
        "if (err instanceof Deno.errors.NotFound) {}",
      ].join("\n"),
    ),
    [
      '1: from "node:fs/promises"',
      '2: from "node:buffer"',
      '3: import( "node:http2"',
      "4: Deno.readTextFileSync",
      "5: Deno.errors",
    ],
  );
  assertEquals(
    runtimeTouches(
      [
        "/** Served by Deno.serve; node:http2 serves gRPC (see",
        " * adapter/node-http2/). */",
        "// Deno.exit is never called here",
        'const digest = crypto.subtle.digest("SHA-256", bytes); // not node:crypto',
        "const url = `https://${host}`; // Deno.env is not read",
        'const label = "denote.x";',
      ].join("\n"),
    ),
    [],
  );
  assertEquals(mayTouchRuntime("src/adapter/deno/http-server.ts"), true);
  assertEquals(mayTouchRuntime("src/main.ts"), true);
  assertEquals(mayTouchRuntime("src/store/paths.ts"), false);
  assertEquals(mayTouchRuntime("src/adapterish.ts"), false);
});

Deno.test("nothing below the adapters uses Deno.* or node:*", async () => {
  const touches: string[] = [];
  let scanned = 0;
  for await (const path of sourceFiles(join(ROOT, "src"))) {
    const file = relative(ROOT, path).replaceAll("\\", "/");
    if (mayTouchRuntime(file)) continue;
    scanned++;
    for (const t of runtimeTouches(await Deno.readTextFile(path))) {
      touches.push(`${file}:${t}`);
    }
  }
  assertEquals(scanned > 40, true, `scanned ${scanned} files of src/`);
  assertEquals(touches, []);
});
