/** ReviewCache (src/auth/kubernetes-review-cache.ts): bounded, oldest out, expiring. */
import { equal } from "node:assert/strict";
import { ReviewCache } from "../src/auth/kubernetes-review-cache.ts";

Deno.test("ReviewCache: bounded, oldest out, entries expire", () => {
  let now = 0;
  const c = new ReviewCache<number>(100, 2, () => now);
  c.set("a", 1);
  c.set("b", 2);
  c.set("c", 3);
  equal(c.size, 2);
  equal(c.get("a"), undefined);
  equal(c.get("c"), 3);
  now = 100;
  equal(c.get("c"), undefined);
});
