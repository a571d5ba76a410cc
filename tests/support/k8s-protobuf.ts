/**
 * Kubernetes protobuf codec (`application/vnd.kubernetes.protobuf`) for the
 * types the fake API server speaks in protobuf: TokenReview,
 * SubjectAccessReview and Status. Written by hand from the Kubernetes
 * `generated.proto` field numbers and checked byte-for-byte against the
 * recorded client-go bodies in tests/fixtures/real-sidecar/k8s-requests.jsonl.
 *
 * Objects are the plain JSON that client-go would write for the same Go value
 * (Go field order, `omitempty` rules), so `decode(encode(x))` normalises x.
 *
 * Encoding follows gogo-protobuf as Kubernetes generates it: fields in number
 * order; every non-pointer scalar and embedded message is written even when
 * empty; repeated and map fields only when non-empty; maps in key order.
 */

export const PROTOBUF_CONTENT_TYPE = "application/vnd.kubernetes.protobuf";
/** `k8s\0`: the prefix of every Kubernetes protobuf body. */
export const PROTOBUF_MAGIC = new Uint8Array([0x6b, 0x38, 0x73, 0x00]);

export class K8sProtobufError extends Error {}

// deno-lint-ignore no-explicit-any
export type JsonObject = Record<string, any>;

type Scalar = "string" | "bool" | "int64" | "int32" | "bytes";
/** A value type: a scalar, the metav1.Time message, or a nested message. */
type ValueType = Scalar | "time" | Schema;

interface Field {
  json: string;
  no: number;
  type: ValueType;
  repeated?: boolean;
  /** map<string, string> or map<string, ExtraValue{items=1}> (JSON: array). */
  map?: "string" | "stringList";
  /** A Go pointer: absent unless set, in both encodings. */
  pointer?: boolean;
  /** JSON without `omitempty` (written even when zero). */
  keepZero?: boolean;
}

/** A message's fields in Go declaration order (= JSON order). */
type Schema = Field[];

// ---- schemas (field numbers from the k8s.io/api generated.proto files) ----

const objectMeta: Schema = [
  { json: "name", no: 1, type: "string" },
  { json: "generateName", no: 2, type: "string" },
  { json: "namespace", no: 3, type: "string" },
  { json: "selfLink", no: 4, type: "string" },
  { json: "uid", no: 5, type: "string" },
  { json: "resourceVersion", no: 6, type: "string" },
  { json: "generation", no: 7, type: "int64" },
  { json: "creationTimestamp", no: 8, type: "time" },
  { json: "deletionTimestamp", no: 9, type: "time", pointer: true },
  { json: "deletionGracePeriodSeconds", no: 10, type: "int64", pointer: true },
  { json: "labels", no: 11, type: "string", map: "string" },
  { json: "annotations", no: 12, type: "string", map: "string" },
  { json: "finalizers", no: 14, type: "string", repeated: true },
];

const listMeta: Schema = [
  { json: "selfLink", no: 1, type: "string" },
  { json: "resourceVersion", no: 2, type: "string" },
  { json: "continue", no: 3, type: "string" },
  { json: "remainingItemCount", no: 4, type: "int64", pointer: true },
];

const userInfo: Schema = [
  { json: "username", no: 1, type: "string" },
  { json: "uid", no: 2, type: "string" },
  { json: "groups", no: 3, type: "string", repeated: true },
  { json: "extra", no: 4, type: "string", map: "stringList" },
];

const tokenReview: Schema = [
  { json: "metadata", no: 1, type: objectMeta },
  {
    json: "spec",
    no: 2,
    type: [
      { json: "token", no: 1, type: "string" },
      { json: "audiences", no: 2, type: "string", repeated: true },
    ],
  },
  {
    json: "status",
    no: 3,
    type: [
      { json: "authenticated", no: 1, type: "bool" },
      { json: "user", no: 2, type: userInfo },
      { json: "audiences", no: 4, type: "string", repeated: true },
      { json: "error", no: 3, type: "string" },
    ],
  },
];

const selectorRequirement: Schema = [
  { json: "key", no: 1, type: "string" },
  { json: "operator", no: 2, type: "string" },
  { json: "values", no: 3, type: "string", repeated: true },
];

const selectorAttributes: Schema = [
  { json: "rawSelector", no: 1, type: "string" },
  { json: "requirements", no: 2, type: selectorRequirement, repeated: true },
];

const subjectAccessReview: Schema = [
  { json: "metadata", no: 1, type: objectMeta },
  {
    json: "spec",
    no: 2,
    type: [
      {
        json: "resourceAttributes",
        no: 1,
        pointer: true,
        type: [
          { json: "namespace", no: 1, type: "string" },
          { json: "verb", no: 2, type: "string" },
          { json: "group", no: 3, type: "string" },
          { json: "version", no: 4, type: "string" },
          { json: "resource", no: 5, type: "string" },
          { json: "subresource", no: 6, type: "string" },
          { json: "name", no: 7, type: "string" },
          {
            json: "fieldSelector",
            no: 8,
            type: selectorAttributes,
            pointer: true,
          },
          {
            json: "labelSelector",
            no: 9,
            type: selectorAttributes,
            pointer: true,
          },
        ],
      },
      {
        json: "nonResourceAttributes",
        no: 2,
        pointer: true,
        type: [
          { json: "path", no: 1, type: "string" },
          { json: "verb", no: 2, type: "string" },
        ],
      },
      { json: "user", no: 3, type: "string" },
      { json: "groups", no: 4, type: "string", repeated: true },
      { json: "extra", no: 5, type: "string", map: "stringList" },
      { json: "uid", no: 6, type: "string" },
    ],
  },
  {
    json: "status",
    no: 3,
    type: [
      { json: "allowed", no: 1, type: "bool", keepZero: true },
      { json: "denied", no: 4, type: "bool" },
      { json: "reason", no: 2, type: "string" },
      { json: "evaluationError", no: 3, type: "string" },
    ],
  },
];

const status: Schema = [
  { json: "metadata", no: 1, type: listMeta },
  { json: "status", no: 2, type: "string" },
  { json: "message", no: 3, type: "string" },
  { json: "reason", no: 4, type: "string" },
  {
    json: "details",
    no: 5,
    pointer: true,
    type: [
      { json: "name", no: 1, type: "string" },
      { json: "group", no: 2, type: "string" },
      { json: "kind", no: 3, type: "string" },
      { json: "uid", no: 6, type: "string" },
      {
        json: "causes",
        no: 4,
        repeated: true,
        type: [
          { json: "reason", no: 1, type: "string" },
          { json: "message", no: 2, type: "string" },
          { json: "field", no: 3, type: "string" },
        ],
      },
      { json: "retryAfterSeconds", no: 5, type: "int32" },
    ],
  },
  { json: "code", no: 6, type: "int32" },
];

/** Top-level kinds this codec knows, keyed by `apiVersion/kind`. */
const kinds: Record<string, Schema> = {
  "authentication.k8s.io/v1/TokenReview": tokenReview,
  "authorization.k8s.io/v1/SubjectAccessReview": subjectAccessReview,
  "v1/Status": status,
};

/** Whether `apiVersion`/`kind` can be written as protobuf by this codec. */
export function supportsProtobuf(apiVersion: string, kind: string): boolean {
  return `${apiVersion}/${kind}` in kinds;
}

// ---- wire writer ----

class Writer {
  private chunks: Uint8Array[] = [];
  private size = 0;

  private push(bytes: Uint8Array) {
    this.chunks.push(bytes);
    this.size += bytes.length;
  }

  varint(value: bigint) {
    // Negative int32/int64 are written as 10-byte two's complement.
    let v = BigInt.asUintN(64, value);
    const out: number[] = [];
    while (v >= 0x80n) {
      out.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    out.push(Number(v));
    this.push(new Uint8Array(out));
  }

  tag(no: number, wireType: number) {
    this.varint(BigInt((no << 3) | wireType));
  }

  bytes(no: number, value: Uint8Array) {
    this.tag(no, 2);
    this.varint(BigInt(value.length));
    this.push(value);
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.size);
    let at = 0;
    for (const c of this.chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }
}

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder("utf-8", { fatal: true });

function parseTime(value: string, field: string): [bigint, number] {
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) {
    throw new K8sProtobufError(`${field}: not an RFC 3339 time: ${value}`);
  }
  return [BigInt(Math.floor(ms / 1000)), 0];
}

function encodeScalar(w: Writer, f: Field, type: Scalar, value: unknown) {
  switch (type) {
    case "string":
      if (typeof value !== "string") {
        throw new K8sProtobufError(`${f.json}: expected a string`);
      }
      w.bytes(f.no, utf8.encode(value));
      return;
    case "bytes":
      w.bytes(f.no, value as Uint8Array);
      return;
    case "bool":
      w.tag(f.no, 0);
      w.varint(value ? 1n : 0n);
      return;
    case "int64":
    case "int32":
      if (typeof value !== "number" || !Number.isInteger(value)) {
        throw new K8sProtobufError(`${f.json}: expected an integer`);
      }
      w.tag(f.no, 0);
      w.varint(BigInt(value));
      return;
  }
}

function zeroOf(type: Scalar): unknown {
  return type === "string" ? "" : type === "bool" ? false : 0;
}

function encodeMessage(
  schema: Schema,
  obj: JsonObject | undefined,
): Uint8Array {
  if (obj !== undefined && (typeof obj !== "object" || obj === null)) {
    throw new K8sProtobufError("expected an object");
  }
  const w = new Writer();
  const o = obj ?? {};
  for (const f of [...schema].sort((a, b) => a.no - b.no)) {
    const value = o[f.json];
    if (f.map) {
      const entries = Object.entries((value ?? {}) as Record<string, unknown>)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      for (const [k, v] of entries) {
        const entry = new Writer();
        entry.bytes(1, utf8.encode(k));
        if (f.map === "string") entry.bytes(2, utf8.encode(String(v)));
        else {
          const items = new Writer();
          for (const item of v as string[]) items.bytes(1, utf8.encode(item));
          entry.bytes(2, items.finish());
        }
        w.bytes(f.no, entry.finish());
      }
      continue;
    }
    if (f.repeated) {
      if (value !== undefined && value !== null && !Array.isArray(value)) {
        throw new K8sProtobufError(`${f.json}: expected an array`);
      }
      for (const item of (value ?? []) as unknown[]) {
        if (Array.isArray(f.type)) {
          w.bytes(f.no, encodeMessage(f.type, item as JsonObject));
        } else encodeScalar(w, f, f.type as Scalar, item);
      }
      continue;
    }
    if (f.pointer && (value === undefined || value === null)) continue;
    if (f.type === "time") {
      const t = new Writer();
      if (value) {
        const [seconds, nanos] = parseTime(String(value), f.json);
        t.tag(1, 0);
        t.varint(seconds);
        t.tag(2, 0);
        t.varint(BigInt(nanos));
      }
      w.bytes(f.no, t.finish());
    } else if (Array.isArray(f.type)) {
      w.bytes(f.no, encodeMessage(f.type, value as JsonObject | undefined));
    } else {
      encodeScalar(w, f, f.type, value ?? zeroOf(f.type));
    }
  }
  return w.finish();
}

// ---- wire reader ----

interface RawField {
  no: number;
  wireType: number;
  varint?: bigint;
  bytes?: Uint8Array;
}

function readFields(buf: Uint8Array): RawField[] {
  const fields: RawField[] = [];
  let at = 0;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (at >= buf.length) throw new K8sProtobufError("truncated varint");
      const b = buf[at++];
      result |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return result;
      shift += 7n;
      if (shift > 63n) throw new K8sProtobufError("varint too long");
    }
  };
  while (at < buf.length) {
    const key = Number(varint());
    const no = key >>> 3;
    const wireType = key & 7;
    if (no === 0) throw new K8sProtobufError("field number 0");
    switch (wireType) {
      case 0:
        fields.push({ no, wireType, varint: varint() });
        break;
      case 1:
      case 5: {
        const n = wireType === 1 ? 8 : 4;
        if (at + n > buf.length) throw new K8sProtobufError("truncated");
        at += n; // fixed-width: no such field in these types; skipped
        break;
      }
      case 2: {
        const len = Number(varint());
        if (at + len > buf.length) {
          throw new K8sProtobufError("length-delimited field overruns");
        }
        fields.push({ no, wireType, bytes: buf.subarray(at, at + len) });
        at += len;
        break;
      }
      default:
        throw new K8sProtobufError(`unsupported wire type ${wireType}`);
    }
  }
  return fields;
}

function expectBytes(raw: RawField, name: string): Uint8Array {
  if (raw.bytes === undefined) {
    throw new K8sProtobufError(`${name}: wrong wire type ${raw.wireType}`);
  }
  return raw.bytes;
}

function decodeScalar(raw: RawField, f: Field, type: Scalar): unknown {
  if (type === "string") return fromUtf8.decode(expectBytes(raw, f.json));
  if (type === "bytes") return expectBytes(raw, f.json);
  if (raw.varint === undefined) {
    throw new K8sProtobufError(`${f.json}: wrong wire type ${raw.wireType}`);
  }
  if (type === "bool") return raw.varint !== 0n;
  const n = type === "int32"
    ? BigInt.asIntN(32, raw.varint)
    : BigInt.asIntN(64, raw.varint);
  return Number(n);
}

function decodeTime(bytes: Uint8Array): string | undefined {
  let seconds = 0n;
  for (const raw of readFields(bytes)) {
    if (raw.no === 1 && raw.varint !== undefined) {
      seconds = BigInt.asIntN(64, raw.varint);
    }
  }
  // metav1.Time writes nothing for the zero time, and JSON has whole seconds.
  if (bytes.length === 0) return undefined;
  return new Date(Number(seconds) * 1000).toISOString().replace(
    /\.\d{3}Z$/,
    "Z",
  );
}

function decodeMessage(schema: Schema, bytes: Uint8Array): JsonObject {
  const byNo = new Map(schema.map((f) => [f.no, f]));
  const values = new Map<string, unknown>();
  for (const raw of readFields(bytes)) {
    const f = byNo.get(raw.no);
    if (!f) continue; // unknown fields are skipped, as gogo does
    if (f.map) {
      const entry = readFields(expectBytes(raw, f.json));
      let key = "";
      let value: unknown = f.map === "string" ? "" : [];
      for (const e of entry) {
        if (e.no === 1) key = fromUtf8.decode(expectBytes(e, f.json));
        if (e.no === 2) {
          const b = expectBytes(e, f.json);
          value = f.map === "string" ? fromUtf8.decode(b) : readFields(b)
            .filter((i) => i.no === 1)
            .map((i) => fromUtf8.decode(expectBytes(i, f.json)));
        }
      }
      const m = (values.get(f.json) ?? {}) as Record<string, unknown>;
      m[key] = value;
      values.set(f.json, m);
    } else if (f.repeated) {
      const list = (values.get(f.json) ?? []) as unknown[];
      list.push(
        Array.isArray(f.type)
          ? decodeMessage(f.type, expectBytes(raw, f.json))
          : decodeScalar(raw, f, f.type as Scalar),
      );
      values.set(f.json, list);
    } else if (f.type === "time") {
      values.set(f.json, decodeTime(expectBytes(raw, f.json)));
    } else if (Array.isArray(f.type)) {
      values.set(f.json, decodeMessage(f.type, expectBytes(raw, f.json)));
    } else {
      values.set(f.json, decodeScalar(raw, f, f.type));
    }
  }
  // Build the JSON in Go field order with client-go's omitempty rules:
  // embedded structs always, pointers when set, zero scalars never.
  const out: JsonObject = {};
  for (const f of schema) {
    let v = values.get(f.json);
    const embedded = Array.isArray(f.type) && !f.repeated && !f.pointer;
    if (v === undefined && embedded) {
      v = decodeMessage(f.type as Schema, new Uint8Array());
    }
    if (v === undefined && f.keepZero) v = zeroOf(f.type as Scalar);
    if (v === undefined) continue;
    const scalar = typeof f.type === "string" && f.type !== "time" &&
      !f.repeated && !f.map;
    const zero = v === "" || v === false || v === 0;
    if (scalar && zero && !f.pointer && !f.keepZero) continue;
    out[f.json] = v;
  }
  return out;
}

// ---- runtime.Unknown envelope ----

export interface Envelope {
  apiVersion: string;
  kind: string;
  raw: Uint8Array;
  contentEncoding: string;
  contentType: string;
}

/** Unwraps `k8s\0` + runtime.Unknown{typeMeta=1, raw=2, contentEncoding=3, contentType=4}. */
export function decodeEnvelope(body: Uint8Array): Envelope {
  if (
    body.length < 4 || PROTOBUF_MAGIC.some((b, i) => body[i] !== b)
  ) {
    throw new K8sProtobufError(
      "body does not start with the Kubernetes protobuf magic k8s\\0",
    );
  }
  const env: Envelope = {
    apiVersion: "",
    kind: "",
    raw: new Uint8Array(),
    contentEncoding: "",
    contentType: "",
  };
  for (const f of readFields(body.subarray(4))) {
    const b = expectBytes(f, `runtime.Unknown field ${f.no}`);
    if (f.no === 1) {
      for (const t of readFields(b)) {
        const s = fromUtf8.decode(expectBytes(t, "typeMeta"));
        if (t.no === 1) env.apiVersion = s;
        if (t.no === 2) env.kind = s;
      }
    } else if (f.no === 2) env.raw = b;
    else if (f.no === 3) env.contentEncoding = fromUtf8.decode(b);
    else if (f.no === 4) env.contentType = fromUtf8.decode(b);
  }
  return env;
}

export function encodeEnvelope(env: Envelope): Uint8Array {
  const typeMeta = new Writer();
  typeMeta.bytes(1, utf8.encode(env.apiVersion));
  typeMeta.bytes(2, utf8.encode(env.kind));
  const w = new Writer();
  w.bytes(1, typeMeta.finish());
  w.bytes(2, env.raw);
  w.bytes(3, utf8.encode(env.contentEncoding));
  w.bytes(4, utf8.encode(env.contentType));
  const inner = w.finish();
  const out = new Uint8Array(4 + inner.length);
  out.set(PROTOBUF_MAGIC);
  out.set(inner, 4);
  return out;
}

function schemaFor(apiVersion: string, kind: string): Schema {
  const schema = kinds[`${apiVersion}/${kind}`];
  if (!schema) {
    throw new K8sProtobufError(
      `no protobuf codec for ${apiVersion}, Kind=${kind}`,
    );
  }
  return schema;
}

/** Decodes a whole `k8s\0` body to client-go's JSON for the object. */
export function decodeK8sProtobuf(body: Uint8Array): JsonObject {
  const env = decodeEnvelope(body);
  if (env.contentEncoding !== "") {
    throw new K8sProtobufError(
      `unsupported content encoding ${env.contentEncoding}`,
    );
  }
  const schema = schemaFor(env.apiVersion, env.kind);
  return {
    kind: env.kind,
    apiVersion: env.apiVersion,
    ...decodeMessage(schema, env.raw),
  };
}

/** Encodes a JSON object (with apiVersion and kind) as a `k8s\0` body. */
export function encodeK8sProtobuf(obj: JsonObject): Uint8Array {
  const { apiVersion, kind } = obj;
  if (typeof apiVersion !== "string" || typeof kind !== "string") {
    throw new K8sProtobufError("object has no apiVersion/kind");
  }
  const schema = schemaFor(apiVersion, kind);
  return encodeEnvelope({
    apiVersion,
    kind,
    raw: encodeMessage(schema, obj),
    contentEncoding: "",
    contentType: "",
  });
}

/**
 * The JSON client-go (or the API server) would write for `obj`: Go field
 * order, empty fields dropped. Only for kinds this codec knows.
 */
export function normalizeK8sJson(obj: JsonObject): JsonObject {
  return decodeK8sProtobuf(encodeK8sProtobuf(obj));
}

/** One wire field as [number, schema name, value] (see describeK8sProtobuf). */
export type FieldDump = [number, string, unknown];

function describeMessage(schema: Schema, bytes: Uint8Array): FieldDump[] {
  const byNo = new Map(schema.map((f) => [f.no, f]));
  return readFields(bytes).map((raw): FieldDump => {
    const f = byNo.get(raw.no);
    if (!f) return [raw.no, "?", raw.bytes ?? raw.varint];
    if (f.map) {
      const entry: JsonObject = {};
      for (const e of readFields(expectBytes(raw, f.json))) {
        const b = expectBytes(e, f.json);
        if (e.no === 1) entry.key = fromUtf8.decode(b);
        if (e.no === 2) {
          entry.value = f.map === "string" ? fromUtf8.decode(b) : readFields(b)
            .map((i) => fromUtf8.decode(expectBytes(i, f.json)));
        }
      }
      return [raw.no, f.json, entry];
    }
    if (f.type === "time") {
      const t: Schema = [
        { json: "seconds", no: 1, type: "int64" },
        { json: "nanos", no: 2, type: "int32" },
      ];
      return [raw.no, f.json, describeMessage(t, expectBytes(raw, f.json))];
    }
    if (Array.isArray(f.type)) {
      return [
        raw.no,
        f.json,
        describeMessage(f.type, expectBytes(raw, f.json)),
      ];
    }
    return [raw.no, f.json, decodeScalar(raw, f, f.type)];
  });
}

/**
 * The wrapped object field by field in wire order, named by this codec's
 * schema: the same format as `protobufFields` in the recorded vectors, so
 * the field numbers can be checked against a real client's bytes.
 */
export function describeK8sProtobuf(body: Uint8Array): FieldDump[] {
  const env = decodeEnvelope(body);
  return describeMessage(schemaFor(env.apiVersion, env.kind), env.raw);
}
