/**
 * The repository's own hygiene as tests, so CI fails on drift: formatting,
 * lint, type checks, buf lint, and gen/ being exactly what buf generates.
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { pathWithNodeBin, ROOT, run } from "./support/run.ts";

const deno = Deno.execPath();

async function expectClean(args: string[]) {
  const r = await run(deno, args, { cwd: ROOT });
  assertEquals(
    r.code,
    0,
    `deno ${args.join(" ")} failed:\n${r.stdout}\n${r.stderr}`,
  );
}

Deno.test("deno fmt --check is clean", () => expectClean(["fmt", "--check"]));
Deno.test("deno lint is clean", () => expectClean(["lint"]));
Deno.test("deno check passes for src, tests, bench", () =>
  expectClean(["check", "src/", "tests/", "bench/"]));

const buf = ["run", "-A", "npm:@bufbuild/buf@1.75.0"];

Deno.test("buf lint passes (exceptions only for upstream names)", async () => {
  const r = await run(deno, [...buf, "lint"], {
    cwd: ROOT,
    env: { PATH: pathWithNodeBin() },
  });
  assertEquals(r.code, 0, r.stdout + r.stderr);
});

async function listFiles(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isDirectory) {
      out.push(...await listFiles(`${dir}/${e.name}`, `${prefix}${e.name}/`));
    } else out.push(`${prefix}${e.name}`);
  }
  return out.sort();
}

Deno.test("gen/ is exactly what buf generate writes", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "cbt-gen-" });
  try {
    const r = await run(deno, [...buf, "generate", "--output", tmp], {
      cwd: ROOT,
      env: { PATH: pathWithNodeBin() },
    });
    assertEquals(r.code, 0, r.stdout + r.stderr);
    const fresh = await listFiles(`${tmp}/gen`);
    const committed = await listFiles(`${ROOT}/gen`);
    assertEquals(
      committed,
      fresh,
      "gen/ has different files than buf generates",
    );
    for (const f of fresh) {
      assertEquals(
        await Deno.readTextFile(`${ROOT}/gen/${f}`),
        await Deno.readTextFile(`${tmp}/gen/${f}`),
        `gen/${f} differs from buf generate's output`,
      );
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
