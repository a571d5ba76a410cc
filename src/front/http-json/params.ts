/**
 * Reads a stream request from the URL (GET) or a JSON body (POST). Only the
 * shape is checked here — numbers are numbers, no unknown or repeated fields;
 * ranges, names and auth are the Gateway's job, so every surface answers the
 * same way.
 */
import type { Operation } from "./block-records.ts";
import { invalidArgument } from "./errors.ts";
import { Code, ConnectError } from "@connectrpc/connect";
import { readRequestBody } from "../request-body.ts";

export interface StreamParams {
  startingOffset: bigint;
  maxResults: number;
  baseSnapshotId?: string;
  baseSnapshotName?: string;
  /** A stream ticket (for EventSource, which can't send headers). */
  ticket?: string;
}

const FIELDS: Record<Operation, string[]> = {
  allocated: ["startingOffset", "maxResults"],
  delta: ["startingOffset", "maxResults", "baseSnapshotId", "baseSnapshotName"],
};

/** Request bodies are a few hundred bytes. */
const MAX_BODY_BYTES = 16 * 1024;

const INT32_MAX = 2 ** 31 - 1;

/** Parses a decimal integer; the Gateway decides which values are in range. */
export function parseInteger(name: string, value: unknown): bigint {
  if (typeof value === "number") {
    if (Number.isSafeInteger(value)) return BigInt(value);
    throw invalidArgument(`${name} must be an integer, got ${value}`);
  }
  if (typeof value === "string" && /^-?[0-9]{1,30}$/.test(value)) {
    return BigInt(value);
  }
  throw invalidArgument(
    `${name} must be a decimal integer, got ${
      JSON.stringify(String(value).slice(0, 40))
    }`,
  );
}

function parseMaxResults(value: unknown): number {
  const n = parseInteger("maxResults", value);
  // Negative values are the Gateway's to refuse; int32 overflow is a shape error.
  if (n > BigInt(INT32_MAX) || n < -BigInt(INT32_MAX) - 1n) {
    throw invalidArgument(`maxResults ${n} does not fit in an int32`);
  }
  return Number(n);
}

function fromFields(
  op: Operation,
  fields: Map<string, unknown>,
  ticket?: string,
): StreamParams {
  const params: StreamParams = { startingOffset: 0n, maxResults: 0, ticket };
  for (const [name, value] of fields) {
    if (!FIELDS[op].includes(name)) {
      throw invalidArgument(
        `unknown parameter ${JSON.stringify(name.slice(0, 40))}; ${op} takes ${
          FIELDS[op].join(", ")
        }`,
      );
    }
    if (name === "startingOffset") {
      params.startingOffset = parseInteger(name, value);
    } else if (name === "maxResults") {
      params.maxResults = parseMaxResults(value);
    } else if (typeof value !== "string") {
      throw invalidArgument(`${name} must be a string`);
    } else if (name === "baseSnapshotId") params.baseSnapshotId = value;
    else params.baseSnapshotName = value;
  }
  if (op === "delta") {
    const given = Number(params.baseSnapshotId !== undefined) +
      Number(params.baseSnapshotName !== undefined);
    if (given !== 1) {
      throw invalidArgument(
        "delta needs exactly one of baseSnapshotId or baseSnapshotName",
      );
    }
  }
  return params;
}

/** Parameters from the query string; `ticket` is not a listing parameter. */
export function paramsFromQuery(
  op: Operation,
  query: URLSearchParams,
): StreamParams {
  const fields = new Map<string, unknown>();
  let ticket: string | undefined;
  for (const [name, value] of query) {
    if (fields.has(name) || (name === "ticket" && ticket !== undefined)) {
      throw invalidArgument(
        `parameter ${JSON.stringify(name.slice(0, 40))} is repeated`,
      );
    }
    if (name === "ticket") ticket = value;
    else fields.set(name, value);
  }
  return fromFields(op, fields, ticket);
}

/** Parameters from a JSON object body (an empty body means all defaults). */
export async function paramsFromBody(
  op: Operation,
  request: Request,
): Promise<StreamParams> {
  const text = await readText(request);
  if (text.trim() === "") return fromFields(op, new Map());
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw invalidArgument("request body is not valid JSON");
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw invalidArgument("request body must be a JSON object");
  }
  return fromFields(op, new Map(Object.entries(body)));
}

/** `Last-Event-ID` (SSE resume): the offset to continue from, or undefined. */
export function lastEventOffset(headers: Headers): bigint | undefined {
  const value = headers.get("last-event-id");
  if (value === null || value === "") return undefined;
  return parseInteger("Last-Event-ID", value);
}

/** The body as text, refusing bodies larger than any real request. */
async function readText(request: Request): Promise<string> {
  const all = await readRequestBody(request.body, {
    maxBytes: MAX_BODY_BYTES,
    signal: request.signal,
  }).catch((e) => {
    const error = ConnectError.from(e);
    // This surface has always answered an oversized body with a 400.
    throw error.code === Code.ResourceExhausted
      ? invalidArgument(`request body is larger than ${MAX_BODY_BYTES} bytes`)
      : error;
  });
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(all);
  } catch {
    throw invalidArgument("request body is not UTF-8");
  }
}
