/**
 * One streaming call as the outside world sees it: counted in the metrics
 * and written as one access-log line, whether it was refused before its
 * stream started or its stream ended (completed, failed or abandoned). It
 * also holds the call's place under the stream limits: a slot from
 * admission to the end, and the maximum duration.
 */
import { ConnectError } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { loggable, type LoggedCall, writeAccessLog } from "./access-log.ts";
import { CheckedStream } from "./checked-stream.ts";
import type { CallContext } from "./call-context.ts";
import type { GatewayMetrics, RpcName } from "./metrics.ts";
import {
  limitReason,
  type StreamLimits,
  type StreamSlot,
} from "./stream-limits.ts";
import type { ResumeReason } from "../backend/backend.ts";

export class ObservedCall {
  readonly #call: LoggedCall;
  #slot?: StreamSlot;
  #durationTimer?: ReturnType<typeof setTimeout>;

  constructor(
    private readonly metrics: GatewayMetrics,
    private readonly log: ((line: string) => void) | undefined,
    private readonly limits: StreamLimits,
    rpc: RpcName,
    namespace: unknown,
    snapshot: unknown,
  ) {
    this.#call = {
      rpc,
      namespace: loggable(namespace),
      snapshot: loggable(snapshot),
      caller: null,
      startedAt: performance.now(),
      resumes: 0,
    };
  }

  /** The backend reopened the call's upstream stream where it broke. */
  resumed(reason: ResumeReason): void {
    this.#call.resumes++;
    this.metrics.resumed(reason);
  }

  /**
   * The call with its signal also aborting at the maximum stream duration:
   * the backend stops reading, the client gets the resumable error.
   */
  limitDuration(call: CallContext): CallContext {
    const ms = this.limits.maxDurationMs;
    if (ms <= 0) return call;
    const cut = new AbortController();
    this.#durationTimer = setTimeout(() => {
      this.metrics.limited("stream_duration");
      cut.abort(this.limits.durationExceeded());
    }, ms);
    return { ...call, signal: AbortSignal.any([call.signal, cut.signal]) };
  }

  /**
   * The authenticator has said who is calling: take the stream's slot
   * (throws ResourceExhausted when the caller or the gateway is at its limit).
   */
  admitted(username: string): void {
    this.#call.caller = username;
    this.#slot = this.limits.admit(username);
  }

  /** The call was refused before a stream started; returns the error. */
  refused(error: unknown): unknown {
    this.#ended();
    const limit = limitReason(error);
    if (limit) this.metrics.limited(limit);
    const code = codeToString(ConnectError.from(error).code);
    this.metrics.refused(this.#call.rpc, code);
    if (this.log) writeAccessLog(this.log, this.#call, code, true);
    return error;
  }

  /** The upstream's stream, checked, reporting its end here. */
  stream(
    upstream: AsyncIterable<Uint8Array>,
    startingOffset: number,
    signal: AbortSignal,
  ): CheckedStream {
    const { rpc, startedAt } = this.#call;
    this.metrics.streamStarted(rpc);
    // An aborted call (client gone, duration reached, shutdown) has stopped
    // its upstream: its slot is free even if nobody reads the stream's end.
    const onAbort = () => this.#ended();
    signal.addEventListener("abort", onAbort, { once: true });
    return new CheckedStream(upstream, startingOffset, signal, (p, error) => {
      signal.removeEventListener("abort", onAbort);
      this.#ended();
      const code = error ? codeToString(error.code) : "ok";
      const seconds = (performance.now() - startedAt) / 1000;
      this.metrics.streamFinished(rpc, code, p, seconds);
      if (this.log) writeAccessLog(this.log, this.#call, code, false, p);
    });
  }

  /** Gives the slot back and stops the duration timer (idempotent). */
  #ended(): void {
    clearTimeout(this.#durationTimer);
    this.#slot?.release();
    this.#slot = undefined;
  }
}
