/**
 * The access log: one JSON line per streaming call, its outcome and how far
 * its stream got. Names come from callers, so they are cut short; tokens
 * never appear.
 */
import type { StreamProgress } from "./checked-stream.ts";
import type { RpcName } from "./metrics.ts";

/** One access-log line: a call, its outcome and how far its stream got. */
export interface AccessLogRecord {
  time: string;
  rpc: RpcName;
  namespace: string;
  /** The target snapshot's name, as requested. */
  snapshot: string;
  /** Who the authenticator said the caller is; null if it never got to say. */
  caller: string | null;
  /** "ok" or a Connect code name. */
  code: string;
  /** True when the call was refused before a stream started. */
  refused: boolean;
  messages: number;
  tuples: number;
  nextOffset: number | null;
  durationMs: number;
}

/** What a call is, as far as the log is concerned, before it ends. */
export interface LoggedCall {
  rpc: RpcName;
  /** As requested (unvalidated); cut to 256 characters. */
  namespace: string;
  snapshot: string;
  caller: string | null;
  /** performance.now() when the call arrived. */
  startedAt: number;
}

/** Request strings go into the log as given, but not without limit. */
export function loggable(value: unknown): string {
  return typeof value === "string" ? value.slice(0, 256) : "";
}

/** Writes the line for a call that ended (refused, or its stream ended). */
export function writeAccessLog(
  sink: (line: string) => void,
  call: LoggedCall,
  code: string,
  refused: boolean,
  progress?: StreamProgress,
): void {
  const line: AccessLogRecord = {
    time: new Date().toISOString(),
    rpc: call.rpc,
    namespace: call.namespace,
    snapshot: call.snapshot,
    caller: call.caller,
    code,
    refused,
    messages: progress?.messages ?? 0,
    tuples: progress?.tuples ?? 0,
    nextOffset: progress?.nextOffset ?? null,
    durationMs: Math.round((performance.now() - call.startedAt) * 1000) / 1000,
  };
  try {
    sink(JSON.stringify(line));
  } catch {
    // A broken log sink must not break the data path.
  }
}
