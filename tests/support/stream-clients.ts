/**
 * One GetMetadataAllocated stream over each protocol a gateway serves, read
 * the way a client would — to the end, or abandoned after some bytes — and
 * what came back, decoded independently of the gateway's own codecs
 * (@bufbuild/protobuf for binary, JSON.parse for the JSON surfaces):
 * every tuple's offset, and how the stream ended.
 *
 * For the resource tests (aborted streams, soak, fault runs), which compare
 * the tuples with the synthetic upstream's ground truth.
 */
import * as http2 from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  GetMetadataAllocatedRequestSchema,
  GetMetadataAllocatedResponseSchema,
} from "../../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import { GRPC_CODES, httpRequest, streamExchange } from "./raw-http.ts";

export type StreamProtocol =
  | "connect"
  | "grpc-web"
  | "connect-json"
  | "grpc"
  | "ndjson"
  | "sse";

export const STREAM_PROTOCOLS: StreamProtocol[] = [
  "connect",
  "grpc-web",
  "connect-json",
  "grpc",
  "ndjson",
  "sse",
];

export interface StreamTarget {
  httpUrl: string;
  /** A session to the gRPC port (one per test; many streams share it). */
  grpcSession: () => http2.ClientHttp2Session;
}

export interface StreamRequest {
  namespace: string;
  snapshot: string;
  maxResults: number;
  startingOffset?: number;
  /** Abandon the stream once this many response bytes have arrived. */
  abortAfterBytes?: number;
  /** Give up (abort) after this long. */
  timeoutMs?: number;
}

export interface StreamResult {
  /** Byte offsets of every tuple received, in order. */
  offsets: number[];
  /** "ok", an error code, or "aborted" (we abandoned it). */
  code: string;
  message?: string;
  /** The resume offset an error carried (HTTP/JSON nextOffset, or metadata). */
  nextOffset?: number;
  bytes: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

function requestMessage(r: StreamRequest): Uint8Array {
  return toBinary(
    GetMetadataAllocatedRequestSchema,
    create(GetMetadataAllocatedRequestSchema, {
      namespace: r.namespace,
      snapshotName: r.snapshot,
      maxResults: r.maxResults,
      startingOffset: BigInt(r.startingOffset ?? 0),
    }),
  );
}

function envelope(payload: Uint8Array, flags = 0): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(5 + payload.length);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, payload.length);
  out.set(payload, 5);
  return out;
}

const PATH = "/snapshotmetadata.SnapshotMetadata/GetMetadataAllocated";

export function openStream(
  protocol: StreamProtocol,
  target: StreamTarget,
  request: StreamRequest,
): Promise<StreamResult> {
  return protocol === "grpc"
    ? grpcStream(target.grpcSession(), request)
    : fetchStream(protocol, target.httpUrl, request);
}

/** Splits enveloped messages out of a growing buffer. */
class Envelopes {
  #buf = new Uint8Array(0);
  push(chunk: Uint8Array, out: { flags: number; data: Uint8Array }[]) {
    const all = new Uint8Array(this.#buf.length + chunk.length);
    all.set(this.#buf);
    all.set(chunk, this.#buf.length);
    let pos = 0;
    while (pos + 5 <= all.length) {
      const len = new DataView(all.buffer, pos + 1, 4).getUint32(0);
      if (pos + 5 + len > all.length) break;
      out.push({ flags: all[pos], data: all.slice(pos + 5, pos + 5 + len) });
      pos += 5 + len;
    }
    this.#buf = all.slice(pos);
  }
}

function offsetsOfMessage(data: Uint8Array, into: number[]): void {
  const m = fromBinary(GetMetadataAllocatedResponseSchema, data);
  for (const b of m.blockMetadata) into.push(Number(b.byteOffset));
}

/**
 * The HTTP-port protocols over a raw HTTP/1.1 connection of their own, so
 * abandoning a stream closes its socket there and then (fetch may keep a
 * connection it was told to abort).
 */
async function fetchStream(
  protocol: Exclude<StreamProtocol, "grpc">,
  httpUrl: string,
  r: StreamRequest,
): Promise<StreamResult> {
  const result: StreamResult = { offsets: [], code: "ok", bytes: 0 };
  let request: Uint8Array;
  if (protocol === "ndjson" || protocol === "sse") {
    const q = new URLSearchParams({ maxResults: String(r.maxResults) });
    if (r.startingOffset) q.set("startingOffset", String(r.startingOffset));
    request = httpRequest(
      "GET",
      `/v1/namespaces/${r.namespace}/snapshots/${r.snapshot}/allocated?${q}`,
      {
        accept: protocol === "sse"
          ? "text/event-stream"
          : "application/x-ndjson",
      },
    );
  } else {
    const body = protocol === "connect-json"
      ? envelope(enc.encode(JSON.stringify({
        namespace: r.namespace,
        snapshotName: r.snapshot,
        maxResults: r.maxResults,
        startingOffset: String(r.startingOffset ?? 0),
      })))
      : envelope(requestMessage(r));
    request = httpRequest("POST", PATH, {
      "content-type": protocol === "connect"
        ? "application/connect+proto"
        : protocol === "grpc-web"
        ? "application/grpc-web+proto"
        : "application/connect+json",
    }, body);
  }
  const parse = protocol === "ndjson" || protocol === "sse"
    ? jsonRecords(protocol, result)
    : envelopeMessages(protocol, result);
  let endSeen = false;
  let status = 0, errorBody = "";
  const exchange = await streamExchange(
    Number(new URL(httpUrl).port),
    request,
    (chunk, httpStatus) => {
      result.bytes += chunk.length;
      status = httpStatus;
      // Refused before the stream: one JSON error document.
      if (status !== 200) {
        errorBody += dec.decode(chunk);
        return true;
      }
      endSeen = parse(chunk) || endSeen;
      return r.abortAfterBytes === undefined ||
        result.bytes < r.abortAfterBytes;
    },
    r.timeoutMs ?? 600_000,
  );
  if (exchange.abandoned) return { ...result, code: "aborted" };
  if (exchange.status !== 200 && result.code === "ok") {
    try {
      const e = JSON.parse(errorBody);
      return { ...result, code: e.code, message: e.message };
    } catch {
      return { ...result, code: `http-${exchange.status}` };
    }
  }
  if (!endSeen && result.code === "ok") result.code = "no-end";
  return result;
}

/** Returns a chunk parser; it reports (true) once the end frame was seen. */
function envelopeMessages(
  protocol: "connect" | "grpc-web" | "connect-json",
  result: StreamResult,
): (chunk: Uint8Array) => boolean {
  const envelopes = new Envelopes();
  return (chunk) => {
    const out: { flags: number; data: Uint8Array }[] = [];
    envelopes.push(chunk, out);
    let ended = false;
    for (const { flags, data } of out) {
      if (protocol === "grpc-web" && flags & 0x80) {
        const trailer = dec.decode(data);
        const status = Number(/grpc-status:\s*(\d+)/i.exec(trailer)?.[1]);
        result.code = GRPC_CODES[status] ?? `grpc-${status}`;
        result.message = /grpc-message:\s*(.*)/i.exec(trailer)?.[1]?.trim();
        const next = /cbt-next-offset:\s*(\d+)/i.exec(trailer)?.[1];
        if (next !== undefined) result.nextOffset = Number(next);
        ended = true;
      } else if (protocol !== "grpc-web" && flags & 0x02) {
        const end = JSON.parse(dec.decode(data));
        result.code = end.error?.code ?? "ok";
        result.message = end.error?.message;
        const next = end.metadata?.["cbt-next-offset"]?.[0];
        if (next !== undefined) result.nextOffset = Number(next);
        ended = true;
      } else if (protocol === "connect-json") {
        const m = JSON.parse(dec.decode(data));
        for (const b of m.blockMetadata ?? []) {
          // proto3 JSON leaves out a zero value
          result.offsets.push(Number(b.byteOffset ?? 0));
        }
      } else {
        offsetsOfMessage(data, result.offsets);
      }
    }
    return ended;
  };
}

function jsonRecords(
  protocol: "ndjson" | "sse",
  result: StreamResult,
): (chunk: Uint8Array) => boolean {
  let text = "";
  return (chunk) => {
    text += dec.decode(chunk, { stream: true });
    let ended = false;
    const sep = protocol === "sse" ? "\n\n" : "\n";
    let at;
    while ((at = text.indexOf(sep)) >= 0) {
      const block = text.slice(0, at);
      text = text.slice(at + sep.length);
      const json = protocol === "sse"
        ? block.split("\n").filter((l) => l.startsWith("data:")).map((l) =>
          l.slice(5).trim()
        ).join("")
        : block;
      if (!json) continue;
      const rec = JSON.parse(json);
      if (rec.type === "blocks") {
        for (const b of rec.blocks) result.offsets.push(Number(b.offset));
      } else if (rec.type === "end") {
        ended = true;
      } else if (rec.type === "error") {
        result.code = rec.code;
        result.message = rec.message;
        if (rec.nextOffset !== undefined && rec.nextOffset !== null) {
          result.nextOffset = Number(rec.nextOffset);
        }
        ended = true;
      }
    }
    return ended;
  };
}

function grpcStream(
  session: http2.ClientHttp2Session,
  r: StreamRequest,
): Promise<StreamResult> {
  const result: StreamResult = { offsets: [], code: "ok", bytes: 0 };
  return new Promise((resolve) => {
    const stream = session.request({
      ":method": "POST",
      ":path": PATH,
      "content-type": "application/grpc+proto",
      te: "trailers",
    });
    const envelopes = new Envelopes();
    let status: string | undefined;
    let aborted = false;
    const timer = r.timeoutMs
      ? setTimeout(() => {
        aborted = true;
        stream.close(http2.constants.NGHTTP2_CANCEL);
      }, r.timeoutMs)
      : undefined;
    const take = (h: http2.IncomingHttpHeaders) => {
      if (h["grpc-status"] === undefined) return;
      status = String(h["grpc-status"]);
      result.message = decodeURIComponent(String(h["grpc-message"] ?? ""));
      const next = h["cbt-next-offset"];
      if (next !== undefined) result.nextOffset = Number(next);
    };
    stream.on("response", take);
    stream.on("trailers", take);
    stream.on("data", (chunk: Uint8Array) => {
      if (aborted) return;
      result.bytes += chunk.length;
      const out: { flags: number; data: Uint8Array }[] = [];
      envelopes.push(chunk, out);
      for (const { data } of out) offsetsOfMessage(data, result.offsets);
      if (
        r.abortAfterBytes !== undefined && result.bytes >= r.abortAfterBytes
      ) {
        aborted = true;
        stream.close(http2.constants.NGHTTP2_CANCEL);
      }
    });
    stream.on("error", () => {});
    stream.on("close", () => {
      clearTimeout(timer);
      result.code = aborted
        ? "aborted"
        : status === undefined
        ? "transport"
        : GRPC_CODES[Number(status)] ?? `grpc-${status}`;
      resolve(result);
    });
    stream.end(envelope(requestMessage(r)));
  });
}
