/**
 * The fuzzer's case generator: from a seed and a case number, one hostile
 * request for one surface of the gateway, and the answers it may get.
 * Deterministic: `caseFor(seed, i)` is the same case on every run, so a
 * failure replays from its seed and number alone.
 *
 * Surfaces: Connect binary and JSON (streams and the unary ListSnapshots),
 * gRPC-Web, native gRPC (HTTP/2), HTTP/JSON, stream tickets, /ui/, /metrics.
 * Classes: envelopes, protobuf, JSON, names, headers, methods and content
 * types, bodies cut short — each built from a valid request of the demo
 * store (namespace demo, volume vol-1, snapshots snap-1..3), mutated.
 */
import { Rng } from "../images.ts";

export interface FuzzCase {
  /** `<surface>/<class>/<detail>`, for the failure report. */
  name: string;
  /** HTTP/1.1 bytes for the HTTP port, or a native gRPC call. */
  request:
    | { kind: "http1"; bytes: Uint8Array; halfClose?: boolean }
    | {
      kind: "grpc";
      path: string;
      body: Uint8Array;
      headers: Record<string, string>;
    };
  /** Codes (Connect names; "ok" for success) this request may get. */
  codes: string[];
  /** For routes whose errors are plain HTTP (ui, metrics): allowed statuses. */
  statuses?: number[];
  /**
   * The status is Internal where the gRPC and Connect specs prescribe it
   * (a compressed flag without an encoding, a payload that won't
   * decompress): a 5xx is the right answer there.
   */
  internalBySpec?: boolean;
}

const enc = new TextEncoder();

// --- valid requests of the demo store ----------------------------------

type Fields = [no: number, value: string | number | bigint][];

const STREAMS: { path: string; fields: () => Fields; json: () => object }[] = [
  {
    path: "/snapshotmetadata.SnapshotMetadata/GetMetadataAllocated",
    fields: () => [[2, "demo"], [3, "snap-1"], [5, 2048]],
    json: () => ({
      namespace: "demo",
      snapshotName: "snap-1",
      maxResults: 2048,
    }),
  },
  {
    path: "/snapshotmetadata.SnapshotMetadata/GetMetadataDelta",
    fields: () => [[2, "demo"], [3, "vol-1/snap-1"], [4, "snap-2"], [6, 2048]],
    json: () => ({
      namespace: "demo",
      baseSnapshotId: "vol-1/snap-1",
      targetSnapshotName: "snap-2",
      maxResults: 2048,
    }),
  },
  {
    path: "/cbtgateway.v1.GatewayService/GetMetadataDeltaByName",
    fields: () => [[2, "demo"], [3, "snap-1"], [4, "snap-3"], [6, 2048]],
    json: () => ({
      namespace: "demo",
      baseSnapshotName: "snap-1",
      targetSnapshotName: "snap-3",
      maxResults: 2048,
    }),
  },
];
const LIST = {
  path: "/cbtgateway.v1.GatewayService/ListSnapshots",
  fields: (): Fields => [[1, "demo"]],
  json: () => ({ namespace: "demo" }),
};
/** Field numbers holding names, per method (index as STREAMS, then LIST). */
const NAME_FIELDS = [[2, 3], [2, 3, 4], [2, 3, 4], [1]];
const INT_FIELDS = [[4, 5], [5, 6], [5, 6], []];

// --- encoding -----------------------------------------------------------

function varint(v: bigint): number[] {
  let x = BigInt.asUintN(64, v);
  const out: number[] = [];
  while (x >= 0x80n) {
    out.push(Number(x & 0x7fn) | 0x80);
    x >>= 7n;
  }
  out.push(Number(x));
  return out;
}

function encodeFields(fields: Fields): Uint8Array {
  const out: number[] = [];
  for (const [no, value] of fields) {
    if (typeof value === "string") {
      const b = enc.encode(value);
      out.push(...varint(BigInt((no << 3) | 2)), ...varint(BigInt(b.length)));
      for (const x of b) out.push(x);
    } else {
      out.push(...varint(BigInt(no << 3)), ...varint(BigInt(value)));
    }
  }
  return new Uint8Array(out);
}

function envelope(payload: Uint8Array, flags = 0, length?: number): Uint8Array {
  const out = new Uint8Array(5 + payload.length);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, length ?? payload.length);
  out.set(payload, 5);
  return out;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function http1(
  method: string,
  path: string,
  headers: Record<string, string>,
  body: Uint8Array = new Uint8Array(0),
  options: { contentLength?: number; halfClose?: boolean } = {},
): FuzzCase["request"] {
  let head =
    `${method} ${path} HTTP/1.1\r\nhost: gateway\r\nconnection: close\r\n`;
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
  if (method !== "GET" || body.length > 0) {
    head += `content-length: ${options.contentLength ?? body.length}\r\n`;
  }
  return {
    kind: "http1",
    bytes: concat(enc.encode(head + "\r\n"), body),
    halfClose: options.halfClose,
  };
}

// --- hostile values -----------------------------------------------------

/** Names no namespace, snapshot or volume may have; traversal first. */
const HOSTILE_NAMES = [
  "..",
  "../..",
  "../../../../etc/passwd",
  "..%2f..%2fetc%2fpasswd",
  "/etc/passwd",
  "vol-1/../../outside",
  "demo/../..",
  "snap-1\0",
  "snap-1/..",
  ".",
  "",
  " ",
  "snap\u202e1",
  "😀",
  "a".repeat(300),
  "CON",
  "snap-1.img",
  "..\\..\\windows",
  "%00",
  "\u0000",
  "\ufeffdemo",
  "outside",
  "../outside",
  "vol-1/snap-1/../../../outside",
];
/** Ids as `<volume>/<snapshot>`: the same, and some shapes of their own. */
const HOSTILE_IDS = [
  ...HOSTILE_NAMES,
  "vol-1/",
  "/snap-1",
  "vol-1//snap-1",
  "vol-1/snap-1/extra",
  "../vol-1/snap-1",
];
const INT64_EXTREMES = [
  -1n,
  -(2n ** 63n),
  2n ** 63n - 1n,
  2n ** 62n,
  2n ** 53n + 1n,
  4097n,
  -4096n,
  2n ** 31n,
];
const INT32_EXTREMES = [-1n, -(2n ** 31n), 2n ** 31n - 1n, 0n, 1n, 2n ** 32n];
const BAD_CONNECT_TIMEOUTS = [
  "-1",
  "abc",
  "1.5",
  "99999999999",
  "",
  "0x10",
  "1e3",
  "00000000001",
];
const BAD_GRPC_TIMEOUTS = [
  "1",
  "-1S",
  "1x",
  "123456789S",
  "",
  "S",
  "1.5S",
  "1 S",
  "99999999Z",
];

/** Codes any request may end with when its *values* are hostile. */
const VALUE_CODES = [
  "invalid_argument",
  "not_found",
  "out_of_range",
  "ok",
];

// --- the generator -----------------------------------------------------

type Proto = "connect" | "grpc-web" | "grpc";

function pick<T>(rng: Rng, xs: readonly T[]): T {
  return xs[rng.int(xs.length)];
}

/** A binary request for a method, over one protocol, with a body. */
function binaryCall(
  proto: Proto,
  path: string,
  body: Uint8Array,
  headers: Record<string, string> = {},
  options: { contentLength?: number; halfClose?: boolean; unary?: boolean } =
    {},
): FuzzCase["request"] {
  if (proto === "grpc") return { kind: "grpc", path, body, headers };
  const ct = proto === "connect"
    ? (options.unary ? "application/proto" : "application/connect+proto")
    : "application/grpc-web+proto";
  return http1("POST", path, { "content-type": ct, ...headers }, body, options);
}

/** Mutations of a valid protobuf message that make it malformed or odd. */
function mutateProtobuf(
  rng: Rng,
  fields: Fields,
  method: number,
): { bytes: Uint8Array; detail: string; codes: string[] } {
  const valid = encodeFields(fields);
  const malformed = ["invalid_argument"];
  switch (rng.int(9)) {
    case 0: { // truncated somewhere inside
      const cut = 1 + rng.int(Math.max(1, valid.length - 1));
      return {
        bytes: valid.subarray(0, cut),
        detail: "truncated",
        codes: [...malformed, ...VALUE_CODES],
      };
    }
    case 1: // a varint that never ends
      return {
        bytes: concat(valid, new Uint8Array([0x28, 0xff, 0xff, 0xff])),
        detail: "unterminated varint",
        codes: malformed,
      };
    case 2: // a varint of 11 bytes
      return {
        bytes: concat(
          valid,
          new Uint8Array([0x28, ...new Array(10).fill(0xff), 0x01]),
        ),
        detail: "overlong varint",
        codes: malformed,
      };
    case 3: { // a known string field sent as a varint (wrong wire type)
      const no = pick(rng, NAME_FIELDS[method]);
      return {
        bytes: concat(valid, new Uint8Array([(no << 3) | 0, 1])),
        detail: `field ${no} wrong wire type`,
        codes: malformed,
      };
    }
    case 4: { // unknown field, well-formed: ignored
      const no = 100 + rng.int(1000);
      return {
        bytes: concat(valid, encodeFields([[no, "x".repeat(rng.int(50))]])),
        detail: "unknown field",
        codes: ["ok"],
      };
    }
    case 5: { // unknown field with an absurd length prefix
      const len = pick(rng, [
        2n ** 32n,
        2n ** 31n,
        2n ** 40n,
        65536n,
        2n ** 63n,
      ]);
      return {
        bytes: concat(
          valid,
          new Uint8Array([...varint(BigInt((15 << 3) | 2)), ...varint(len)]),
        ),
        detail: `absurd length ${len}`,
        codes: malformed,
      };
    }
    case 6: // wire types 6 and 7 do not exist; 3/4 unmatched groups
      return {
        bytes: concat(
          valid,
          new Uint8Array([pick(rng, [0x7e, 0x7f, 0x7b, 0x7c])]),
        ),
        detail: "bad wire type",
        codes: malformed,
      };
    case 7: { // a huge length-delimited field that is really there
      const size = 20_000 + rng.int(40_000);
      return {
        bytes: concat(valid, encodeFields([[99, "z".repeat(size)]])),
        detail: `huge unknown field ${size}`,
        codes: ["ok"],
      };
    }
    default: { // random bytes
      return {
        bytes: new Rng(rng.next()).bytes(1 + rng.int(64)),
        detail: "random bytes",
        codes: [...malformed, ...VALUE_CODES, "unauthenticated"],
      };
    }
  }
}

export function caseFor(seed: number, index: number): FuzzCase {
  const rng = new Rng((seed * 2654435761 + index * 40503 + 1) >>> 0);
  rng.next();
  const surface = index % 12;
  switch (surface) {
    case 0:
    case 1:
    case 2:
      return binaryCase(
        rng,
        pick(rng, ["connect", "grpc-web", "grpc"] as const),
      );
    case 3:
      return binaryCase(rng, "grpc");
    case 4:
      return connectJsonCase(rng);
    case 5:
    case 6:
      return httpJsonCase(rng);
    case 7:
      return ticketCase(rng);
    case 8:
      return uiCase(rng);
    case 9:
      return metricsAndOtherCase(rng);
    case 10:
      return headerCase(rng);
    default:
      return nameCase(rng);
  }
}

function binaryCase(rng: Rng, proto: Proto): FuzzCase {
  const method = rng.int(4);
  const m = method < 3 ? STREAMS[method] : LIST;
  const unary = method === 3;
  const name = (cls: string) => `${proto}/${m.path.split("/")[2]}/${cls}`;
  const message = encodeFields(m.fields());
  // Connect unary has no envelope: its classes are the protobuf ones.
  const enveloped = !(proto === "connect" && unary);
  const kind = rng.int(enveloped ? 10 : 4);
  if (kind >= 4 && enveloped) {
    switch (kind) {
      case 4: // envelope header cut short
        return {
          name: name("envelope/truncated-header"),
          request: binaryCall(
            proto,
            m.path,
            envelope(message).subarray(0, rng.int(5)),
          ),
          codes: ["invalid_argument", "unknown"].slice(0, 1),
        };
      case 5: { // length prefix larger than what follows, or than any limit
        const length = pick(rng, [
          message.length + 1 + rng.int(100),
          0xffffffff,
          2 ** 31,
          65 * 1024,
        ]);
        return {
          name: name(`envelope/giant-length-${length}`),
          request: binaryCall(proto, m.path, envelope(message, 0, length)),
          codes: ["invalid_argument", "resource_exhausted"],
        };
      }
      case 6: // compressed flag without an encoding: Internal by spec
        return {
          name: name("envelope/compressed-without-encoding"),
          request: binaryCall(proto, m.path, envelope(message, 1)),
          codes: ["internal"],
          internalBySpec: true,
        };
      case 7: // trailing bytes, or a second message
        return {
          name: name("envelope/trailing"),
          request: binaryCall(
            proto,
            m.path,
            concat(
              envelope(message),
              rng.int(2)
                ? envelope(message)
                : new Rng(rng.next()).bytes(1 + rng.int(4)),
            ),
          ),
          codes: ["invalid_argument", "unimplemented"],
        };
      case 8: // zero-length message: all defaults, so a missing name
        return {
          name: name("envelope/zero-length"),
          request: binaryCall(proto, m.path, envelope(new Uint8Array(0))),
          codes: ["invalid_argument"],
        };
      default: // gzip flagged with gzip declared, but not gzip inside
        return {
          name: name("envelope/not-gzip"),
          request: binaryCall(proto, m.path, envelope(message, 1), {
            [
              proto === "connect" ? "connect-content-encoding" : "grpc-encoding"
            ]: "gzip",
          }),
          codes: ["internal", "invalid_argument"],
          internalBySpec: true,
        };
    }
  }
  if (kind === 3 && proto !== "grpc") {
    // body cut short: Content-Length promises more, then a half-close
    const body = enveloped ? envelope(message) : message;
    const cut = rng.int(body.length);
    return {
      name: name("body/cut"),
      request: binaryCall(proto, m.path, body.subarray(0, cut), {}, {
        contentLength: body.length,
        halfClose: true,
        unary,
      }),
      codes: ["invalid_argument"],
    };
  }
  if (kind === 2) {
    // int64/int32 extremes in the offset and max_results fields
    const fields = m.fields().filter(([no]) =>
      !INT_FIELDS[method].includes(no)
    );
    for (const no of INT_FIELDS[method]) {
      fields.push([
        no,
        pick(
          rng,
          no === INT_FIELDS[method][0] ? INT64_EXTREMES : INT32_EXTREMES,
        ),
      ]);
    }
    const bytes = encodeFields(fields);
    return {
      name: name("protobuf/int-extremes"),
      request: binaryCall(
        proto,
        m.path,
        enveloped ? envelope(bytes) : bytes,
        {},
        {
          unary,
        },
      ),
      codes: VALUE_CODES,
    };
  }
  const mutated = mutateProtobuf(rng, m.fields(), method);
  return {
    name: name(`protobuf/${mutated.detail}`),
    request: binaryCall(
      proto,
      m.path,
      enveloped ? envelope(mutated.bytes) : mutated.bytes,
      {},
      { unary },
    ),
    codes: mutated.codes,
  };
}

function connectJsonCase(rng: Rng): FuzzCase {
  const method = rng.int(4);
  const m = method < 3 ? STREAMS[method] : LIST;
  const unary = method === 3;
  const json = m.json() as Record<string, unknown>;
  let body: Uint8Array;
  let detail: string;
  let codes = ["invalid_argument"];
  switch (rng.int(8)) {
    case 0:
      body = enc.encode(JSON.stringify(json).slice(0, rng.int(20)));
      detail = "invalid json";
      break;
    case 1:
      body = concat(
        enc.encode('{"namespace":"'),
        new Uint8Array([0xc3, 0x28, 0xff]),
        enc.encode('"}'),
      );
      detail = "invalid utf-8";
      break;
    case 2: {
      const depth = 100 + rng.int(20_000);
      body = enc.encode("[".repeat(depth) + "]".repeat(depth));
      detail = `nesting ${depth}`;
      break;
    }
    case 3: {
      const key = pick(rng, Object.keys(json));
      const v = json[key];
      json[key] = typeof v === "number" ? String(v) : 12345;
      body = enc.encode(JSON.stringify(json));
      detail = `type swap ${key}`;
      // proto3 JSON takes an int64/int32 as a string; a name as a number is refused
      codes = typeof v === "number"
        ? ["ok", ...VALUE_CODES]
        : ["invalid_argument"];
      break;
    }
    case 4: {
      const v = pick(rng, [
        "9223372036854775808",
        "-9223372036854775809",
        "1e400",
        "NaN",
        "-1",
        "4.5",
        "18446744073709551615",
        "-9223372036854775808",
      ]);
      body = enc.encode(
        `{"namespace":"demo","snapshotName":"snap-1","baseSnapshotName":"snap-1","targetSnapshotName":"snap-2","startingOffset":${v}}`,
      );
      detail = `int64 ${v}`;
      codes = VALUE_CODES;
      break;
    }
    case 5:
      body = enc.encode(JSON.stringify({ ...json, unknownField: 1 }));
      detail = "unknown field";
      // connect-es ignores unknown JSON fields (unary); the streams refuse them
      codes = ["ok", "invalid_argument"];
      break;
    case 6:
      body = enc.encode(pick(rng, ["null", "[]", '"x"', "1", "true", "{}"]));
      detail = "not an object";
      break;
    default:
      body = enc.encode(
        JSON.stringify({ ...json, namespace: pick(rng, HOSTILE_NAMES) }),
      );
      detail = "hostile namespace";
      codes = ["invalid_argument", "not_found"];
  }
  const payload = unary ? body : envelope(body);
  return {
    name: `connect-json/${m.path.split("/")[2]}/${detail}`,
    request: http1("POST", m.path, {
      "content-type": unary ? "application/json" : "application/connect+json",
    }, payload),
    codes,
  };
}

function encodePath(s: string): string {
  return encodeURIComponent(s);
}

function httpJsonCase(rng: Rng): FuzzCase {
  const op = pick(rng, ["allocated", "delta"] as const);
  const ns = "demo", snap = op === "delta" ? "snap-2" : "snap-1";
  const base = op === "delta" ? "&baseSnapshotName=snap-1" : "";
  const path = (q: string) =>
    `/v1/namespaces/${ns}/snapshots/${snap}/${op}?${q}${base}`;
  const accept = pick(rng, [
    "application/x-ndjson",
    "text/event-stream",
    "application/json",
  ]);
  switch (rng.int(7)) {
    case 0: {
      const key = pick(rng, ["startingOffset", "maxResults"]);
      const v = pick(rng, [
        "-1",
        "abc",
        "1e3",
        "9223372036854775808",
        "",
        "0x10",
        "1.5",
        "%00",
        "99999999999999999999",
        " 1",
        "+1",
      ]);
      return {
        name: `http-json/query ${key}=${v}`,
        request: http1("GET", path(`${key}=${encodePath(v)}`), { accept }),
        codes: ["invalid_argument", "out_of_range", "ok"],
      };
    }
    case 1: {
      const v = pick(rng, [
        "-5",
        "abc",
        "1e9999",
        "",
        "18446744073709551616",
        "4096x",
      ]);
      return {
        name: `http-json/last-event-id ${v}`,
        request: http1("GET", path(""), {
          accept: "text/event-stream",
          "last-event-id": v,
        }),
        codes: ["invalid_argument", "out_of_range", "ok"],
      };
    }
    case 2: { // JSON body, hostile
      const body = pick(rng, [
        "{",
        '{"startingOffset":"x"}',
        '{"maxResults":-1}',
        "[".repeat(5000),
        '{"startingOffset":1e400}',
        '{"maxResults":"9223372036854775808"}',
        "\u0000",
        '{"baseSnapshotName":"../snap-1"}',
        "null",
      ]);
      return {
        name: `http-json/body ${body.slice(0, 24)}`,
        request: http1("POST", path(""), {
          accept,
          "content-type": "application/json",
        }, enc.encode(body)),
        codes: ["invalid_argument", "out_of_range", "ok"],
      };
    }
    case 3: { // body cut short
      const body = enc.encode('{"maxResults":64}');
      return {
        name: "http-json/body cut",
        request: http1(
          "POST",
          path(""),
          { "content-type": "application/json" },
          body.subarray(0, rng.int(body.length)),
          { contentLength: body.length, halfClose: true },
        ),
        codes: ["invalid_argument"],
      };
    }
    case 4: { // big body
      const size = 16 * 1024 + 1 + rng.int(200_000);
      return {
        name: `http-json/body ${size} bytes`,
        request: http1("POST", path(""), {
          "content-type": "application/json",
        }, new Uint8Array(size).fill(0x20)),
        codes: ["invalid_argument", "resource_exhausted"],
      };
    }
    case 5: // wrong method
      return {
        name: "http-json/method",
        request: http1(pick(rng, ["PUT", "DELETE", "PATCH"]), path(""), {}),
        codes: ["unimplemented", "invalid_argument", "not_found"],
        statuses: [405],
      };
    default: { // the list, with a hostile namespace
      const n = pick(rng, HOSTILE_NAMES);
      return {
        name: `http-json/list ${JSON.stringify(n).slice(0, 30)}`,
        request: http1("GET", `/v1/namespaces/${encodePath(n)}/snapshots`, {}),
        codes: ["invalid_argument", "not_found", "ok"],
        statuses: [404, 400],
      };
    }
  }
}

function ticketCase(rng: Rng): FuzzCase {
  const forged = pick(rng, [
    "x",
    "",
    "a".repeat(5000),
    "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
    "v1.AAAA.BBBB",
    new Rng(rng.next()).bytes(32).reduce((s, b) => s + b.toString(16), ""),
    "%00",
    "../../etc/passwd",
  ]);
  if (rng.int(3) === 0) {
    return {
      name: "ticket/issue hostile names",
      request: http1(
        "POST",
        `/v1/namespaces/${
          encodePath(pick(rng, HOSTILE_NAMES))
        }/snapshots/snap-1/stream-tickets`,
        {},
      ),
      codes: ["invalid_argument", "not_found"],
      statuses: [404],
    };
  }
  return {
    name: `ticket/forged ${forged.slice(0, 20)}`,
    request: http1(
      "GET",
      `/v1/namespaces/demo/snapshots/snap-1/allocated?ticket=${
        encodePath(forged)
      }`,
      { accept: "text/event-stream" },
    ),
    codes: ["unauthenticated", "invalid_argument", "permission_denied"],
  };
}

function uiCase(rng: Rng): FuzzCase {
  const path = pick(rng, [
    "/ui/../../../../etc/passwd",
    "/ui/..%2f..%2f..%2fetc%2fpasswd",
    "/ui/%2e%2e/%2e%2e/outside.img",
    "/ui/viewer.js%00.png",
    "/ui//etc/passwd",
    "/ui/index.html/..",
    "/ui/" + "a".repeat(2000),
    "/ui/..\\..\\outside.img",
    "/ui/demo/vol-1/snap-1.img",
    "/ui/../data/demo/vol-1/snap-1.img",
    "/../outside.img",
    "/%2e%2e/outside.img",
    "/demo/vol-1/snap-1.img",
    "/ui/%c0%ae%c0%ae/outside.img",
  ]);
  return {
    name: `ui/${path.slice(0, 40)}`,
    request: http1(pick(rng, ["GET", "GET", "HEAD", "POST"]), path, {}),
    codes: [],
    // 200: a path the URL parser normalises back into /ui/ (the viewer)
    statuses: [200, 400, 404, 405],
  };
}

function metricsAndOtherCase(rng: Rng): FuzzCase {
  switch (rng.int(4)) {
    case 0:
      return {
        name: "metrics/get with query",
        request: http1("GET", `/metrics?x=${"%".repeat(rng.int(5))}1`, {}),
        codes: [],
        statuses: [200],
      };
    case 1:
      return {
        name: "metrics/wrong method",
        request: http1(pick(rng, ["POST", "PUT", "DELETE"]), "/metrics", {
          "content-type": "text/plain",
        }, enc.encode("x")),
        codes: ["not_found", "unimplemented"],
        statuses: [404, 405],
      };
    case 2:
      return {
        name: "other/unknown rpc path",
        request: http1(
          "POST",
          pick(rng, [
            "/snapshotmetadata.SnapshotMetadata/Nope",
            "/x.Y/Z",
            "/snapshotmetadata.SnapshotMetadata/",
          ]),
          { "content-type": "application/connect+proto" },
          envelope(new Uint8Array(0)),
        ),
        codes: ["not_found", "unimplemented"],
        statuses: [404],
      };
    default:
      return {
        name: "other/openapi wrong method",
        request: http1("DELETE", "/openapi.json", {}),
        codes: ["unimplemented", "invalid_argument"],
        statuses: [405],
      };
  }
}

function headerCase(rng: Rng): FuzzCase {
  const m = pick(rng, STREAMS);
  const message = envelope(encodeFields(m.fields()));
  switch (rng.int(6)) {
    case 0: {
      const v = pick(rng, BAD_CONNECT_TIMEOUTS);
      return {
        name: `headers/connect-timeout-ms ${v}`,
        request: http1("POST", m.path, {
          "content-type": "application/connect+proto",
          "connect-timeout-ms": v,
        }, message),
        codes: ["invalid_argument"],
      };
    }
    case 1: {
      const v = pick(rng, BAD_GRPC_TIMEOUTS);
      const proto = pick(rng, ["grpc-web", "grpc"] as const);
      return {
        name: `headers/${proto} grpc-timeout ${v}`,
        request: binaryCall(proto, m.path, message, { "grpc-timeout": v }),
        codes: ["invalid_argument"],
      };
    }
    case 2: { // wrong content type
      const ct = pick(rng, [
        "text/plain",
        "application/xml",
        "application/connect+thrift",
        "application/grpc-web-text",
        "multipart/form-data",
        "",
      ]);
      return {
        name: `headers/content-type ${ct}`,
        request: http1("POST", m.path, { "content-type": ct }, message),
        codes: ["unimplemented", "invalid_argument", "not_found", "internal"],
        statuses: [415, 404, 400, 405],
      };
    }
    case 3: { // wrong method on an RPC path
      return {
        name: "headers/method",
        request: http1(pick(rng, ["GET", "PUT", "DELETE"]), m.path, {
          "content-type": "application/connect+proto",
        }),
        codes: ["unimplemented", "invalid_argument", "not_found"],
        statuses: [405, 415, 404, 400],
      };
    }
    case 4: { // a huge header
      const size = 8 * 1024 + rng.int(200 * 1024);
      return {
        name: `headers/huge ${size}`,
        request: http1("POST", m.path, {
          "content-type": "application/connect+proto",
          "x-filler": "a".repeat(size),
        }, message),
        codes: ["ok", "invalid_argument"],
        statuses: [431, 400, 413],
      };
    }
    default: { // a huge body
      const size = 64 * 1024 + 6 + rng.int(300 * 1024);
      return {
        name: `headers/huge body ${size}`,
        request: http1("POST", m.path, {
          "content-type": pick(rng, [
            "application/connect+proto",
            "application/grpc-web+proto",
          ]),
        }, envelope(new Uint8Array(size - 5))),
        codes: ["resource_exhausted", "invalid_argument"],
      };
    }
  }
}

function nameCase(rng: Rng): FuzzCase {
  const method = rng.int(4);
  const m = method < 3 ? STREAMS[method] : LIST;
  const no = pick(rng, NAME_FIELDS[method]);
  const isId = method === 1 && no === 3;
  const value = pick(rng, isId ? HOSTILE_IDS : HOSTILE_NAMES);
  const fields = m.fields().map(([n, v]) =>
    [n, n === no ? value : v] as [number, string | number]
  );
  const bytes = encodeFields(fields);
  const proto = pick(rng, ["connect", "grpc-web", "grpc"] as const);
  const unary = method === 3;
  const enveloped = !(proto === "connect" && unary);
  return {
    name: `names/${proto}/${m.path.split("/")[2]}/field ${no}=${
      JSON.stringify(value).slice(0, 30)
    }`,
    request: binaryCall(
      proto,
      m.path,
      enveloped ? envelope(bytes) : bytes,
      {},
      {
        unary,
      },
    ),
    // proto3 strings must be UTF-8: a NUL is fine for the codec, not for us
    codes: ["invalid_argument", "not_found"],
  };
}
