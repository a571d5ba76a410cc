/** JSON helpers shared by the fake's handlers. */
import type { JsonObject } from "../k8s-protobuf.ts";

/**
 * A copy with object keys sorted at every level: how the API server writes
 * custom resources (unstructured maps go through Go's encoding/json).
 */
export function sortKeys<T>(value: T): T {
  if (Array.isArray(value)) return value.map(sortKeys) as T;
  if (typeof value !== "object" || value === null) return value;
  const out: JsonObject = {};
  for (const k of Object.keys(value).sort()) {
    out[k] = sortKeys((value as JsonObject)[k]);
  }
  return out as T;
}

/** JSON text that does not depend on key order (for comparisons). */
export function stableJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}
