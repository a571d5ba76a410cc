/**
 * One frame-relay call, independent of the HTTP adapter: negotiate
 * compression and deadline, decode the request, start the gateway's checked
 * stream, and hand out response frames — a run of whole messages per pull
 * (pull-based, so the client's pace is the upstream's pace).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Compression } from "@connectrpc/connect/protocol";
import type { Gateway } from "../../gateway/gateway.ts";
import { negotiateCompression } from "./compression.ts";
import {
  type BinaryProtocol,
  CONNECT_JSON_CONTENT_TYPE,
  RESPONSE_CONTENT_TYPE,
} from "./content-type.ts";
import { requestMessage } from "./request-message.ts";
import { timeoutOf } from "./timeout.ts";
import type { StartStream } from "./methods.ts";
import { type Codec, runEncoder } from "./run-encoder.ts";

export interface FrameRelayOptions {
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
  options: FrameRelayOptions,
  /** "json": Connect JSON (the request is proto3 JSON; `start` decodes it). */
  codec: Codec = "proto",
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
    const compression = negotiateCompression(
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
      "content-type": codec === "json"
        ? CONNECT_JSON_CONTENT_TYPE
        : RESPONSE_CONTENT_TYPE[protocol],
    };
    if (compression.response) {
      headers[compression.encodingHeader.toLowerCase()] =
        compression.response.name;
    }
    // Runs of checked envelopes: each pull hands out every whole message
    // that has arrived, so one write carries many messages.
    const runs = stream.envelopeRuns();
    const encode = runEncoder(codec, compression.response);
    const frames: AsyncIterator<Uint8Array> = {
      async next() {
        try {
          const r = await runs.next();
          if (r.done) {
            done();
            // Ended because the call was cancelled (e.g. runs.return() on
            // shutdown): that is not a complete stream.
            if (abort.signal.aborted) {
              throw asCallError(undefined, abort.signal);
            }
            return { done: true, value: undefined };
          }
          return { done: false, value: await encode(r.value) };
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
        runs.return(undefined).catch(() => {});
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
  if (signal.aborted && e === undefined) {
    return new ConnectError("the call was cancelled", Code.Canceled);
  }
  return ConnectError.from(e);
}
