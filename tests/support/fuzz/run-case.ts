/**
 * Runs one fuzz case against a gateway and says what, if anything, is wrong
 * with the answer: no answer in time (a hang), a dropped connection, a 5xx
 * or Internal/Unknown for bad input, a code the case doesn't allow, a
 * stack trace, or bytes from outside the data directory.
 */
import type * as http2 from "node:http2";
import type { FuzzCase } from "./cases.ts";
import { rawExchange, replyCode } from "../raw-http.ts";
import { grpcExchange } from "../raw-grpc.ts";

export interface Target {
  httpPort: number;
  grpc: () => http2.ClientHttp2Session;
  /** Strings that must never appear in an answer (files outside the data dir). */
  secrets: string[];
  /** Longest a case may take before it counts as a hang (ms). */
  caseTimeoutMs: number;
}

/** Stack frames, as V8 and Deno print them. */
const STACK = /\bat [^\n]*(\.(ts|js|mjs):\d+:\d+|<anonymous>)|file:\/\/\//;

export async function runCase(c: FuzzCase, target: Target): Promise<string[]> {
  const problems: string[] = [];
  let code: string | undefined, status = 200, text: string;
  if (c.request.kind === "grpc") {
    const r = await grpcExchange(
      target.grpc(),
      c.request.path,
      c.request.body,
      {
        headers: c.request.headers,
        waitMs: target.caseTimeoutMs,
      },
    );
    code = r.code === "no-status" ? undefined : r.code;
    text = r.message;
    if (r.reset) problems.push("gRPC stream reset without a status");
  } else {
    const r = await rawExchange(target.httpPort, c.request.bytes, {
      halfClose: c.request.halfClose,
      waitMs: target.caseTimeoutMs,
    });
    if (r.status === 0) {
      problems.push(
        r.empty
          ? (r.closed
            ? "connection closed without a response"
            : "no response in time (hang)")
          : "unparseable response",
      );
      return problems;
    }
    status = r.status;
    text = new TextDecoder().decode(r.body);
    const allowedStatus = c.statuses?.includes(r.status) ?? false;
    code = allowedStatus ? "(status)" : replyCode(r);
  }
  if (code === undefined) {
    problems.push(`no status in the answer (HTTP ${status})`);
  } else if (code !== "(status)" && !c.codes.includes(code)) {
    problems.push(
      `code ${code} (HTTP ${status}), expected ${c.codes.join("|")}`,
    );
  }
  if (code === "unknown") problems.push("unknown error for bad input");
  if (code === "internal" && !c.internalBySpec) {
    problems.push("internal error for bad input");
  }
  if (status >= 500 && !(c.internalBySpec && code === "internal")) {
    problems.push(`HTTP ${status} for bad input`);
  }
  if (STACK.test(text)) problems.push("stack trace in the answer");
  for (const s of target.secrets) {
    if (text.includes(s)) {
      problems.push("bytes from outside the data directory");
    }
  }
  return problems;
}
