/**
 * One streaming call as the outside world sees it: counted in the metrics
 * and written as one access-log line, whether it was refused before its
 * stream started or its stream ended (completed, failed or abandoned).
 */
import { ConnectError } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { loggable, type LoggedCall, writeAccessLog } from "./access-log.ts";
import { CheckedStream } from "./checked-stream.ts";
import type { GatewayMetrics, RpcName } from "./metrics.ts";

export class ObservedCall {
  readonly #call: LoggedCall;

  constructor(
    private readonly metrics: GatewayMetrics,
    private readonly log: ((line: string) => void) | undefined,
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
    };
  }

  /** The authenticator has said who is calling. */
  admitted(username: string): void {
    this.#call.caller = username;
  }

  /** The call was refused before a stream started; returns the error. */
  refused(error: unknown): unknown {
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
    return new CheckedStream(upstream, startingOffset, signal, (p, error) => {
      const code = error ? codeToString(error.code) : "ok";
      const seconds = (performance.now() - startedAt) / 1000;
      this.metrics.streamFinished(rpc, code, p, seconds);
      if (this.log) writeAccessLog(this.log, this.#call, code, false, p);
    });
  }
}
