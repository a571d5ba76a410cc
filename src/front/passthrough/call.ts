/**
 * One pass-through call, independent of the HTTP adapter: negotiate
 * compression and deadline, decode the request, start the gateway's checked
 * stream, and hand out response frames one at a time (pull-based, so the
 * client's pace is the upstream's pace).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Compression } from "@connectrpc/connect/protocol";
import type { Gateway } from "../../gateway/gateway.ts";
import {
  type BinaryProtocol,
  messageFrame,
  negotiate,
  requestMessage,
  RESPONSE_CONTENT_TYPE,
  timeoutOf,
} from "./framing.ts";
import type { StartStream } from "./methods.ts";

export interface PassthroughOptions {
  compression: Compression[];
  readMaxBytes: number;
}

export interface OpenCall {
  /** Response headers to send before the first frame. */
  headers: Record<string, string>;
  /** Enveloped response messages; throws a ConnectError if the stream fails. */
  frames: AsyncIterator<Uint8Array>;
  /** Ends the call early (client gone): cancels the upstream. */
  cancel(): void;
}

/**
 * Opens the call or throws the ConnectError to answer with. `clientSignal`
 * aborts when the client goes away.
 */
export async function openCall(
  gateway: Gateway,
  start: StartStream,
  protocol: BinaryProtocol,
  requestHeaders: Headers,
  readBody: () => Promise<Uint8Array>,
  clientSignal: AbortSignal,
  options: PassthroughOptions,
): Promise<OpenCall> {
  const abort = new AbortController();
  const onClientGone = () => abort.abort(clientSignal.reason);
  if (clientSignal.aborted) onClientGone();
  clientSignal.addEventListener("abort", onClientGone, { once: true });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const done = () => {
    clientSignal.removeEventListener("abort", onClientGone);
    clearTimeout(timer);
  };
  try {
    const timeoutMs = timeoutOf(protocol, requestHeaders);
    if (timeoutMs !== undefined) {
      timer = setTimeout(
        () =>
          abort.abort(
            new ConnectError("the operation timed out", Code.DeadlineExceeded),
          ),
        timeoutMs,
      );
    }
    const compression = negotiate(
      protocol,
      requestHeaders,
      options.compression,
    );
    if (compression.error) throw compression.error;
    const request = await requestMessage(
      await readBody(),
      compression.request,
      options.readMaxBytes,
    );
    const stream = await start(gateway, request, {
      headers: requestHeaders,
      signal: abort.signal,
    });
    const headers: Record<string, string> = {
      "content-type": RESPONSE_CONTENT_TYPE[protocol],
    };
    if (compression.response) {
      headers[compression.encodingHeader.toLowerCase()] =
        compression.response.name;
    }
    const iterator = stream[Symbol.asyncIterator]();
    const frames: AsyncIterator<Uint8Array> = {
      async next() {
        try {
          const r = await iterator.next();
          if (r.done) {
            done();
            return { done: true, value: undefined };
          }
          return {
            done: false,
            value: await messageFrame(r.value.bytes, compression.response),
          };
        } catch (e) {
          done();
          throw asCallError(e, abort.signal);
        }
      },
    };
    return {
      headers,
      frames,
      cancel() {
        done();
        abort.abort(new ConnectError("client went away", Code.Canceled));
        iterator.return?.().catch(() => {});
      },
    };
  } catch (e) {
    done();
    throw asCallError(e, abort.signal);
  }
}

/** A deadline or cancellation wins over whatever error it caused downstream. */
function asCallError(e: unknown, signal: AbortSignal): ConnectError {
  if (signal.aborted && signal.reason instanceof ConnectError) {
    return signal.reason;
  }
  return ConnectError.from(e);
}
