/**
 * Label and field selectors as list and watch requests give them
 * (`labelSelector=app=x,tier!=db,env in (a,b),!legacy`,
 * `fieldSelector=metadata.name=x`). Parse errors are 400s.
 */
import { badRequest } from "./status.ts";
import type { JsonObject } from "../k8s-protobuf.ts";

export type Selector = (obj: JsonObject) => boolean;

const matchAll: Selector = () => true;

/** Splits on commas that are not inside parentheses. */
function requirements(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    if (text[i] === "(") depth++;
    if (text[i] === ")") depth--;
    if (text[i] === "," && depth === 0) {
      out.push(text.slice(start, i).trim());
      start = i + 1;
    }
  }
  out.push(text.slice(start).trim());
  return out.filter((r) => r !== "");
}

export function parseLabelSelector(text: string | null): Selector {
  if (!text) return matchAll;
  const tests = requirements(text).map((req): Selector => {
    const labels = (o: JsonObject): Record<string, string> =>
      o.metadata?.labels ?? {};
    let m = /^!\s*([\w./-]+)$/.exec(req);
    if (m) {
      const key = m[1];
      return (o) => !(key in labels(o));
    }
    m = /^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(req);
    if (m) {
      const [, key, op, list] = m;
      const values = list.split(",").map((v) => v.trim());
      return op === "in"
        ? (o) => values.includes(labels(o)[key])
        : (o) => !values.includes(labels(o)[key]);
    }
    m = /^([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)$/.exec(req);
    if (m) {
      const [, key, op, value] = m;
      return op === "!="
        ? (o) => labels(o)[key] !== value
        : (o) => labels(o)[key] === value;
    }
    m = /^([\w./-]+)$/.exec(req);
    if (m) {
      const key = m[1];
      return (o) => key in labels(o);
    }
    throw badRequest(`unable to parse requirement: ${req}`);
  });
  return (o) => tests.every((t) => t(o));
}

/** Custom resources support only metadata.name and metadata.namespace. */
export function parseFieldSelector(text: string | null): Selector {
  if (!text) return matchAll;
  const tests = requirements(text).map((req): Selector => {
    const m = /^([\w.]+)\s*(==|=|!=)\s*(.*)$/.exec(req);
    if (!m) {
      throw badRequest(
        `invalid selector: '${text}'; can't understand '${req}'`,
      );
    }
    const [, field, op, value] = m;
    if (field !== "metadata.name" && field !== "metadata.namespace") {
      throw badRequest(`field label not supported: ${field}`);
    }
    const key = field.slice("metadata.".length);
    return op === "!="
      ? (o) => (o.metadata?.[key] ?? "") !== value
      : (o) => (o.metadata?.[key] ?? "") === value;
  });
  return (o) => tests.every((t) => t(o));
}
