/**
 * The house's plan, held against the code: imports in src/ point only down
 * the layers the README's Architecture section lists (never back up, never
 * sideways between folders of one layer), and that section names every
 * folder of src/ and no file that isn't there.
 */
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { dirname, join, normalize, relative } from "node:path";
import { ROOT } from "./support/run.ts";

/** Top to bottom; a folder may import its own layer's folder and lower layers. */
const LAYERS: string[][] = [
  ["src/main.ts", "src/edge.ts"],
  ["src/server"],
  ["src/adapter"],
  ["src/ui"],
  ["src/front"],
  ["src/gateway"],
  ["src/auth", "src/store", "src/relay", "src/kubernetes"],
  ["src/backend", "src/kube"],
  ["src/wire", "src/config.ts"],
  ["gen"],
];

/** The folder (or top file) of LAYERS that holds `file`, and its layer. */
function placeOf(file: string): { part: string; layer: number } | undefined {
  for (const [layer, parts] of LAYERS.entries()) {
    for (const part of parts) {
      if (file === part || file.startsWith(part + "/")) return { part, layer };
    }
  }
  return undefined;
}

/** Why an import from `from` of `to` breaks the layering, or undefined. */
export function layeringError(from: string, to: string): string | undefined {
  const a = placeOf(from), b = placeOf(to);
  if (!a || !b) return `${from} -> ${to}: outside the layers`;
  if (b.layer < a.layer) return `${from} -> ${to}: runs back up`;
  if (b.layer === a.layer && b.part !== a.part) {
    return `${from} -> ${to}: sideways within a layer`;
  }
  return undefined;
}

const IMPORT =
  /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)["'](\.{1,2}\/[^"']+)["']/g;

async function* sourceFiles(dir: string): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) yield* sourceFiles(path);
    else if (entry.name.endsWith(".ts")) yield path;
  }
}

const repoPath = (path: string) => relative(ROOT, path).replaceAll("\\", "/");

Deno.test("the layering check flags arrows back up and sideways", () => {
  assertEquals(
    layeringError("src/server/start.ts", "src/adapter/x.ts"),
    undefined,
  );
  assertEquals(
    layeringError("src/store/paths.ts", "src/store/files.ts"),
    undefined,
  );
  ok(layeringError("src/ui/ui-route.ts", "src/server/fetch-handler.ts"));
  ok(layeringError("src/store/file-store.ts", "src/adapter/node-fs/x.ts"));
  ok(layeringError("src/store/file-store.ts", "src/relay/grpc-relay.ts"));
  ok(layeringError("src/wire/x.ts", "tests/support/y.ts"));
});

Deno.test("imports in src/ point only down the layers", async () => {
  const broken: string[] = [];
  let imports = 0;
  for await (const path of sourceFiles(join(ROOT, "src"))) {
    const text = await Deno.readTextFile(path);
    for (const m of text.matchAll(IMPORT)) {
      imports++;
      const target = repoPath(normalize(join(dirname(path), m[1])));
      const error = layeringError(repoPath(path), target);
      if (error) broken.push(error);
    }
  }
  ok(imports > 100, `read ${imports} imports`);
  assertEquals(broken, []);
});

Deno.test("the README's Architecture section matches the tree", async () => {
  const readme = await Deno.readTextFile(join(ROOT, "README.md"));
  const start = readme.indexOf("## Architecture");
  const section = readme.slice(start, readme.indexOf("\n## ", start + 1));
  ok(start >= 0 && section.length > 500, "README has an Architecture section");
  const folders: string[] = [];
  for await (const path of sourceFiles(join(ROOT, "src"))) {
    const folder = repoPath(dirname(path));
    if (!folders.includes(folder)) folders.push(folder);
  }
  const unnamed = folders.filter((f) => !section.includes(`\`${f}/\``));
  assertEquals(unnamed.filter((f) => f !== "src"), [], "every folder named");
  // `src/x/y.ts`, and `x/y.ts` for a path inside src/.
  const missing: string[] = [];
  for (const m of section.matchAll(/`((?:src\/)?[a-z-]+\/[^`\s]*)`/g)) {
    // Paths of the repository outside src/ are named from its root.
    const outside = /^(tests|proto|gen|bench|docs|deploy)\//.test(m[1]);
    const path = m[1].startsWith("src/") || outside ? m[1] : `src/${m[1]}`;
    try {
      await Deno.stat(join(ROOT, path));
    } catch {
      missing.push(m[1]);
    }
  }
  assertEquals(missing, [], "every path it names exists");
});
