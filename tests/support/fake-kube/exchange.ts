/**
 * One request/response as the handlers see it, with the API server's
 * content negotiation: JSON or Kubernetes protobuf bodies in, the format
 * the Accept header prefers out.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import {
  decodeK8sProtobuf,
  encodeK8sProtobuf,
  type JsonObject,
  K8sProtobufError,
  PROTOBUF_CONTENT_TYPE,
  supportsProtobuf,
} from "../k8s-protobuf.ts";
import type { RequestInfo } from "./request-info.ts";
import type { UserInfo } from "./tokens.ts";
import {
  badRequest,
  notAcceptable,
  StatusError,
  unsupportedMediaType,
} from "./status.ts";

export const JSON_CONTENT_TYPE = "application/json";

/** One request as the fake received it, for tests to assert on. */
export interface RecordedRequest {
  /** 1, 2, 3, … in arrival order. */
  seq: number;
  /** Epoch ms (fake clock). */
  time: number;
  method: string;
  /** Path without the query string. */
  path: string;
  /** The raw query string without "?" ("" when none). */
  query: string;
  params: Record<string, string>;
  /** Every header in arrival order, as [name, value]. */
  headers: [string, string][];
  contentType: string | null;
  accept: string | null;
  /** The authenticated user's name (undefined when authentication failed). */
  user?: string;
  /** The API server's view: verb, group, resource, namespace, name, … */
  info: RequestInfo;
  /** The decoded body: JSON or decoded protobuf (undefined when empty). */
  body?: unknown;
  bodyBytes: Uint8Array;
  /** The HTTP status answered (for watches: 200 when the stream starts). */
  status?: number;
  /** The answer, decoded (not set for watch streams). */
  response?: unknown;
}

export interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  info: RequestInfo;
  query: URLSearchParams;
  user: UserInfo;
  body: Uint8Array;
  /** Media type of the body, lower case, without parameters ("" if none). */
  contentType: string;
  record: RecordedRequest;
}

function mediaTypes(header: string | undefined): string[] {
  return (header ?? "").split(",")
    .map((t) => t.split(";")[0].trim().toLowerCase())
    .filter((t) => t !== "");
}

/** The answer format for `accept`; 406 when nothing acceptable is on offer. */
export function negotiate(
  accept: string | undefined,
  protobufOffered: boolean,
): "json" | "protobuf" {
  const wanted = mediaTypes(accept);
  if (!wanted.length) return "json";
  for (const t of wanted) {
    if (t === PROTOBUF_CONTENT_TYPE && protobufOffered) return "protobuf";
    if (t === JSON_CONTENT_TYPE || t === "*/*" || t === "application/*") {
      return "json";
    }
  }
  throw notAcceptable(
    protobufOffered
      ? [JSON_CONTENT_TYPE, "application/yaml", PROTOBUF_CONTENT_TYPE]
      : [JSON_CONTENT_TYPE, "application/yaml"],
  );
}

/** Writes `obj` with `code`, in protobuf when asked for and possible. */
export function respond(
  ex: Exchange,
  code: number,
  obj: JsonObject,
  opts: { protobuf?: boolean } = {},
) {
  const protobufOk = (opts.protobuf ?? false) &&
    supportsProtobuf(obj.apiVersion, obj.kind);
  let format: "json" | "protobuf";
  try {
    format = negotiate(ex.req.headers.accept, protobufOk);
  } catch (e) {
    if (!(e instanceof StatusError)) throw e;
    // Nothing acceptable: the real server answers 406, in JSON.
    [format, code, obj] = ["json", e.code, e.body];
  }
  const body = format === "protobuf"
    ? encodeK8sProtobuf(obj)
    : new TextEncoder().encode(JSON.stringify(obj));
  ex.record.status = code;
  ex.record.response = obj;
  ex.res.writeHead(code, {
    "Content-Type": format === "protobuf"
      ? PROTOBUF_CONTENT_TYPE
      : JSON_CONTENT_TYPE,
    "Content-Length": String(body.length),
    "Cache-Control": "no-cache, private",
  });
  ex.res.end(body);
}

/** Parses the request body (JSON, or protobuf where `protobuf` is set). */
export function readObject(
  ex: Exchange,
  opts: { protobuf?: boolean; json?: string[] } = {},
): JsonObject {
  const jsonTypes = opts.json ?? [JSON_CONTENT_TYPE];
  const accepted = [
    ...jsonTypes,
    ...(opts.protobuf ? [PROTOBUF_CONTENT_TYPE] : []),
  ];
  if (ex.contentType === PROTOBUF_CONTENT_TYPE && opts.protobuf) {
    try {
      return decodeK8sProtobuf(ex.body);
    } catch (e) {
      if (e instanceof K8sProtobufError) throw badRequest(e.message);
      throw e;
    }
  }
  if (ex.contentType !== "" && !jsonTypes.includes(ex.contentType)) {
    throw unsupportedMediaType(accepted);
  }
  let obj: unknown;
  try {
    obj = JSON.parse(new TextDecoder().decode(ex.body));
  } catch (e) {
    throw badRequest(
      `couldn't get version/kind; json parse error: ${(e as Error).message}`,
    );
  }
  if (typeof obj !== "object" || obj === null) {
    throw badRequest("the body of the request is not a JSON object");
  }
  return obj as JsonObject;
}
