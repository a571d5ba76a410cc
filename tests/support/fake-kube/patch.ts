/**
 * PATCH bodies: JSON merge patch (RFC 7386) and JSON patch (RFC 6902), the
 * two kinds the API server accepts for custom resources.
 */
import { badRequest, statusBody, StatusError } from "./status.ts";

type Json = unknown;

const isObject = (v: Json): v is Record<string, Json> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

export function mergePatch(target: Json, patch: Json): Json {
  if (!isObject(patch)) return structuredClone(patch);
  const out: Record<string, Json> = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function unprocessable(message: string): StatusError {
  return new StatusError(422, statusBody(422, "Invalid", message));
}

function pointer(path: string): string[] {
  if (path === "") return [];
  if (!path.startsWith("/")) throw badRequest(`invalid JSON pointer: ${path}`);
  return path.slice(1).split("/").map((t) =>
    t.replaceAll("~1", "/").replaceAll("~0", "~")
  );
}

function parentOf(doc: Json, tokens: string[], op: string): Json {
  let cur = doc;
  for (const t of tokens.slice(0, -1)) {
    cur = Array.isArray(cur)
      ? cur[Number(t)]
      : isObject(cur)
      ? cur[t]
      : undefined;
    if (cur === undefined) {
      throw unprocessable(
        `${op} operation does not apply: doc is missing path: ${
          tokens.join("/")
        }`,
      );
    }
  }
  return cur;
}

function getAt(doc: Json, path: string): Json {
  let cur = doc;
  for (const t of pointer(path)) {
    cur = Array.isArray(cur)
      ? cur[Number(t)]
      : isObject(cur)
      ? cur[t]
      : undefined;
    if (cur === undefined) {
      throw unprocessable(`doc is missing path: "${path}"`);
    }
  }
  return cur;
}

function removeAt(doc: Json, path: string): Json {
  const tokens = pointer(path);
  const parent = parentOf(doc, tokens, "remove");
  const last = tokens[tokens.length - 1];
  if (Array.isArray(parent)) {
    const i = Number(last);
    if (!(i >= 0 && i < parent.length)) {
      throw unprocessable(
        `remove operation does not apply: doc is missing path: "${path}"`,
      );
    }
    return parent.splice(i, 1)[0];
  }
  if (!isObject(parent) || !(last in parent)) {
    throw unprocessable(
      `remove operation does not apply: doc is missing path: "${path}"`,
    );
  }
  const v = parent[last];
  delete parent[last];
  return v;
}

function addAt(doc: Json, path: string, value: Json, replace: boolean): Json {
  const tokens = pointer(path);
  if (tokens.length === 0) return structuredClone(value);
  const parent = parentOf(doc, tokens, replace ? "replace" : "add");
  const last = tokens[tokens.length - 1];
  if (Array.isArray(parent)) {
    const i = last === "-" ? parent.length : Number(last);
    if (!(i >= 0 && i <= parent.length)) {
      throw unprocessable(
        `add operation does not apply: index out of range: "${path}"`,
      );
    }
    if (replace) parent[i] = structuredClone(value);
    else parent.splice(i, 0, structuredClone(value));
  } else if (isObject(parent)) {
    if (replace && !(last in parent)) {
      throw unprocessable(
        `replace operation does not apply: doc is missing key: ${path}`,
      );
    }
    parent[last] = structuredClone(value);
  } else {
    throw unprocessable(
      `add operation does not apply: doc is missing path: "${path}"`,
    );
  }
  return doc;
}

export function jsonPatch(target: Json, ops: Json): Json {
  if (!Array.isArray(ops)) {
    throw badRequest("json patch must be an array of operations");
  }
  let doc = structuredClone(target);
  for (const op of ops as Record<string, Json>[]) {
    const path = String(op.path ?? "");
    switch (op.op) {
      case "add":
        doc = addAt(doc, path, op.value, false);
        break;
      case "replace":
        doc = addAt(doc, path, op.value, true);
        break;
      case "remove":
        removeAt(doc, path);
        break;
      case "move":
      case "copy": {
        const from = String(op.from ?? "");
        const v = op.op === "move"
          ? removeAt(doc, from)
          : structuredClone(getAt(doc, from));
        doc = addAt(doc, path, v, false);
        break;
      }
      case "test":
        if (JSON.stringify(getAt(doc, path)) !== JSON.stringify(op.value)) {
          throw unprocessable(`testing value ${path} failed: test failed`);
        }
        break;
      default:
        throw badRequest(`Unexpected kind: ${String(op.op)}`);
    }
  }
  return doc;
}
