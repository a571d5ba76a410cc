/**
 * The frame relay for native gRPC on the node:http2 port: the upstream's message
 * bytes in fresh envelopes, status in HTTP trailers (Trailers-Only when the
 * call fails before its first message). Writes wait for 'drain', so a slow
 * client slows the upstream. Returns false for requests it doesn't own,
 * which connectNodeAdapter then serves.
 *
 * Each stream gets one 'close' listener for its whole life; the per-write
 * waits listen on an AbortSignal instead, so a stream that drains thousands
 * of times never piles up listeners. (`res.closed` doesn't exist at run time
 * on an Http2ServerResponse, whatever the types say: closure is tracked here.)
 */
import type * as http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Gateway } from "../../gateway/gateway.ts";
import { concatBytes } from "../../wire/bytes.ts";
import { webHeaders } from "./headers.ts";
import { binaryProtocolOf } from "../../front/frame-relay/content-type.ts";
import { grpcStatusHeaders } from "../../front/frame-relay/end-frame.ts";
import {
  RELAYED_METHODS,
  type StartStream,
} from "../../front/frame-relay/methods.ts";
import {
  type FrameRelayOptions,
  openCall,
} from "../../front/frame-relay/call.ts";

type Request = http2.Http2ServerRequest;
type Response = http2.Http2ServerResponse;

function readBody(req: Request, max: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    let total = 0;
    req.on("data", (c: Uint8Array) => {
      total += c.length;
      if (total > max + 5) {
        reject(
          new ConnectError(
            `request exceeds ${max} bytes`,
            Code.ResourceExhausted,
          ),
        );
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(concatBytes(chunks)));
    req.on("error", reject);
  });
}

export function createNodeFrameRelay(
  gateway: Gateway,
  options: FrameRelayOptions,
  /**
   * Aborting it ends running calls (server shutdown) with its reason when
   * that is a ConnectError, else with Unavailable.
   */
  shutdownSignal?: AbortSignal,
): (req: Request, res: Response) => boolean {
  return (req, res) => {
    const start = RELAYED_METHODS.get(req.url.split("?")[0]);
    if (
      !start || req.method !== "POST" ||
      binaryProtocolOf(req.headers["content-type"] ?? null) !== "grpc"
    ) {
      return false;
    }
    serve(req, res, start).catch(() => {
      // Only a broken socket gets here; the call is over either way.
      if (!res.stream.closed) res.stream.close();
    });
    return true;
  };

  async function serve(
    req: Request,
    res: Response,
    start: StartStream,
  ): Promise<void> {
    // Aborts when the client goes (Canceled) or the server shuts down
    // (Unavailable); the reason is the status the call ends with.
    const ended = new AbortController();
    let clientGone = false;
    const onClose = () => {
      clientGone = true;
      ended.abort(new ConnectError("client went away", Code.Canceled));
    };
    const onShutdown = () =>
      ended.abort(
        shutdownSignal?.reason instanceof ConnectError
          ? shutdownSignal.reason
          : new ConnectError("the server is shutting down", Code.Unavailable),
      );
    res.stream.once("close", onClose);
    if (res.stream.closed || res.stream.destroyed) onClose();
    else if (shutdownSignal?.aborted) onShutdown();
    shutdownSignal?.addEventListener("abort", onShutdown, { once: true });
    try {
      await respond(req, res, start, ended.signal, () => clientGone);
    } finally {
      res.stream.off("close", onClose);
      shutdownSignal?.removeEventListener("abort", onShutdown);
    }
  }

  async function respond(
    req: Request,
    res: Response,
    start: StartStream,
    ended: AbortSignal,
    clientGone: () => boolean,
  ): Promise<void> {
    let call;
    try {
      call = await openCall(
        gateway,
        start,
        "grpc",
        webHeaders(req.headers),
        () => readBody(req, options.readMaxBytes),
        ended,
        options,
      );
    } catch (e) {
      if (!clientGone()) {
        // Trailers-Only: the status rides in the headers.
        res.writeHead(200, {
          "content-type": "application/grpc+proto",
          ...grpcStatusHeaders(ConnectError.from(e)),
        });
        res.end();
      }
      return;
    }
    res.writeHead(200, call.headers);
    let error: ConnectError | undefined;
    try {
      for (;;) {
        const r = await call.frames.next();
        if (r.done) break;
        if (clientGone()) break;
        if (!res.write(r.value)) await drained(res, ended);
      }
    } catch (e) {
      error = ConnectError.from(e);
    }
    if (clientGone()) {
      call.cancel();
      return;
    }
    if (ended.aborted && !error) {
      // A backend may end quietly when its signal aborts: a stream cut short
      // by shutdown must not end with status OK.
      call.cancel();
      error = ended.reason as ConnectError;
    }
    res.addTrailers(grpcStatusHeaders(error));
    res.end();
  }
}

/** Resolves when the response can take more, or the call has ended. */
function drained(res: Response, ended: AbortSignal): Promise<void> {
  if (ended.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      ended.removeEventListener("abort", done);
      resolve();
    };
    res.on("drain", done);
    ended.addEventListener("abort", done);
  });
}
