/**
 * Pass-through for native gRPC on the node:http2 port: the upstream's message
 * bytes in fresh envelopes, status in HTTP trailers (Trailers-Only when the
 * call fails before its first message). Writes wait for 'drain', so a slow
 * client slows the upstream. Returns false for requests it doesn't own,
 * which connectNodeAdapter then serves.
 */
import type * as http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Gateway } from "../../gateway/gateway.ts";
import { binaryProtocolOf, grpcStatusHeaders } from "./framing.ts";
import { PASSTHROUGH_METHODS, type StartStream } from "./methods.ts";
import { openCall, type PassthroughOptions } from "./call.ts";

type Request = http2.Http2ServerRequest;
type Response = http2.Http2ServerResponse;

function headersOf(req: Request): Headers {
  const out = new Headers();
  for (const [k, v] of Object.entries(req.headers)) {
    if (k.startsWith(":") || v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) out.append(k, one);
  }
  return out;
}

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
    req.on("end", () => {
      const out = new Uint8Array(total);
      let pos = 0;
      for (const c of chunks) {
        out.set(c, pos);
        pos += c.length;
      }
      resolve(out);
    });
    req.on("error", reject);
  });
}

export function createNodePassthrough(
  gateway: Gateway,
  options: PassthroughOptions,
): (req: Request, res: Response) => boolean {
  return (req, res) => {
    const start = PASSTHROUGH_METHODS.get(req.url.split("?")[0]);
    if (
      !start || req.method !== "POST" ||
      binaryProtocolOf(req.headers["content-type"] ?? null) !== "grpc"
    ) {
      return false;
    }
    serve(req, res, start).catch((e) => {
      // Only a broken socket gets here; the call is over either way.
      if (!res.closed) res.stream.close();
      void e;
    });
    return true;
  };

  async function serve(
    req: Request,
    res: Response,
    start: StartStream,
  ): Promise<void> {
    const gone = new AbortController();
    const onClose = () => gone.abort();
    res.on("close", onClose);
    let call;
    try {
      call = await openCall(
        gateway,
        start,
        "grpc",
        headersOf(req),
        () => readBody(req, options.readMaxBytes),
        gone.signal,
        options,
      );
    } catch (e) {
      if (!res.closed) {
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
        if (res.closed) break;
        if (!res.write(r.value)) await drained(res);
      }
    } catch (e) {
      error = ConnectError.from(e);
    }
    if (res.closed || gone.signal.aborted) {
      call.cancel();
      return;
    }
    res.off("close", onClose);
    res.addTrailers(grpcStatusHeaders(error));
    res.end();
  }
}

/** Resolves when the response can take more, or is gone. */
function drained(res: Response): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}
