/**
 * The frame relay on the fetch front: Connect and gRPC-Web binary server
 * streams answered with the upstream's envelopes as they are, and Connect
 * JSON streams with proto3 JSON written straight from them. Returns
 * undefined for anything else (unary, other methods), which the connect-es
 * router then serves.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Gateway } from "../../gateway/gateway.ts";
import { concatBytes } from "../../wire/bytes.ts";
import {
  binaryProtocolOf,
  CONNECT_JSON_CONTENT_TYPE,
  isConnectJson,
  RESPONSE_CONTENT_TYPE,
} from "./content-type.ts";
import { endFrame } from "./end-frame.ts";
import {
  RELAYED_JSON_METHODS,
  RELAYED_METHODS,
  type StartStream,
} from "./methods.ts";
import { type FrameRelayOptions, openCall } from "./call.ts";
import type { Codec } from "./run-encoder.ts";

/**
 * The request body, read only up to the limit: a larger one is refused as
 * soon as it passes it, without reading the rest.
 */
async function readBody(request: Request, max: number): Promise<Uint8Array> {
  if (!request.body) return new Uint8Array(0);
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return concatBytes(chunks);
    total += value.length;
    // The envelope header is 5 bytes on top of the message limit.
    if (total > max + 5) {
      reader.cancel().catch(() => {});
      throw new ConnectError(
        `request exceeds ${max} bytes`,
        Code.ResourceExhausted,
      );
    }
    chunks.push(value);
  }
}

export function createFetchFrameRelay(
  gateway: Gateway,
  options: FrameRelayOptions,
): (request: Request) => Promise<Response> | undefined {
  return (request) => {
    if (request.method !== "POST") return undefined;
    const path = new URL(request.url).pathname;
    const contentType = request.headers.get("content-type");
    if (isConnectJson(contentType)) {
      const start = RELAYED_JSON_METHODS.get(path);
      return start && respond("connect", start, "json");
    }
    const start = RELAYED_METHODS.get(path);
    const protocol = binaryProtocolOf(contentType);
    if (!start || (protocol !== "connect" && protocol !== "grpc-web")) {
      return undefined;
    }
    return respond(protocol, start, "proto");

    async function respond(
      protocol: "connect" | "grpc-web",
      start: StartStream,
      codec: Codec,
    ): Promise<Response> {
      let call;
      try {
        call = await openCall(
          gateway,
          start,
          protocol,
          request.headers,
          () => readBody(request, options.readMaxBytes),
          request.signal,
          options,
          codec,
        );
      } catch (e) {
        // Errors before the first message still travel in the end frame.
        return new Response(endFrame(protocol, ConnectError.from(e)), {
          headers: {
            "content-type": codec === "json"
              ? CONNECT_JSON_CONTENT_TYPE
              : RESPONSE_CONTENT_TYPE[protocol],
          },
        });
      }
      const { frames } = call;
      let finished = false;
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (finished) return;
          try {
            const r = await frames.next();
            if (r.done) {
              finished = true;
              controller.enqueue(endFrame(protocol, undefined));
              controller.close();
            } else {
              controller.enqueue(r.value);
            }
          } catch (e) {
            finished = true;
            controller.enqueue(endFrame(protocol, ConnectError.from(e)));
            controller.close();
          }
        },
        cancel() {
          finished = true;
          call.cancel();
        },
      }, { highWaterMark: 1 });
      return new Response(body, { headers: call.headers });
    }
  };
}
