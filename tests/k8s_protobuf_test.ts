/**
 * The hand-written Kubernetes protobuf codec against the bodies a real
 * client-go (the snapshot-metadata sidecar) sent, and against an
 * independent wire reader (@bufbuild/protobuf) for the response fields the
 * recordings don't cover.
 */
import {
  deepStrictEqual as assertEquals,
  ok as assert,
  throws,
} from "node:assert/strict";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import {
  decodeEnvelope,
  decodeK8sProtobuf,
  describeK8sProtobuf,
  encodeEnvelope,
  encodeK8sProtobuf,
  K8sProtobufError,
  normalizeK8sJson,
} from "./support/k8s-protobuf.ts";

const VECTORS = new URL(
  "./fixtures/real-sidecar/k8s-requests.jsonl",
  import.meta.url,
);
// deno-lint-ignore no-explicit-any
const recorded: any[] = Deno.readTextFileSync(VECTORS).trim().split("\n").map((
  l,
) => JSON.parse(l));
const withBody = recorded.filter((r) => r.bodyB64);

/** Throws an instance of `cls` whose message contains `includes`. */
function assertThrows(
  fn: () => unknown,
  cls: new (...a: never[]) => Error,
  includes = "",
) {
  throws(fn, (e: unknown) => {
    assert(e instanceof cls, `expected ${cls.name}, got ${e}`);
    assert(e.message.includes(includes), `"${e.message}" lacks "${includes}"`);
    return true;
  });
}

const fromB64 = (s: string) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

Deno.test("recordings hold protobuf bodies to check against", () => {
  assertEquals(withBody.length, 6);
  assertEquals(
    withBody.map((r) => r.protobufEnvelope.typeMeta.kind).sort(),
    [
      "SubjectAccessReview",
      "SubjectAccessReview",
      "SubjectAccessReview",
      "TokenReview",
      "TokenReview",
      "TokenReview",
    ],
  );
});

Deno.test("every recorded body decodes to exactly its bodyJson (key order too)", () => {
  for (const r of withBody) {
    const decoded = decodeK8sProtobuf(fromB64(r.bodyB64));
    assertEquals(decoded, r.bodyJson, `${r.rpc} ${r.variant} seq ${r.seq}`);
    assertEquals(JSON.stringify(decoded), JSON.stringify(r.bodyJson));
  }
});

Deno.test("encoding every recorded bodyJson gives the recorded bytes", () => {
  for (const r of withBody) {
    const bytes = fromB64(r.bodyB64);
    assertEquals(bytes.length, r.bodyLength);
    assertEquals(
      encodeK8sProtobuf(r.bodyJson),
      bytes,
      `${r.variant} seq ${r.seq}`,
    );
  }
});

Deno.test("the envelope matches the recorded runtime.Unknown", () => {
  for (const r of withBody) {
    const env = decodeEnvelope(fromB64(r.bodyB64));
    const want = r.protobufEnvelope;
    assertEquals(
      Array.from(
        fromB64(r.bodyB64).subarray(0, 4),
        (b) => b.toString(16).padStart(2, "0"),
      ).join(""),
      want.magicHex,
    );
    assertEquals(env.apiVersion, want.typeMeta.apiVersion);
    assertEquals(env.kind, want.typeMeta.kind);
    assertEquals(env.contentEncoding, want.contentEncoding);
    assertEquals(env.contentType, want.contentType);
    assertEquals(env.raw.length, want.rawLength);
  }
});

Deno.test("field numbers and names match the recorded field-by-field dump", () => {
  for (const r of withBody) {
    assertEquals(describeK8sProtobuf(fromB64(r.bodyB64)), r.protobufFields);
  }
});

/** Reads one message into [fieldNo, wireType, value] with @bufbuild's reader. */
function wire(bytes: Uint8Array): [number, WireType, Uint8Array | bigint][] {
  const reader = new BinaryReader(bytes);
  const out: [number, WireType, Uint8Array | bigint][] = [];
  while (reader.pos < reader.len) {
    const [no, wt] = reader.tag();
    out.push([
      no,
      wt,
      wt === WireType.LengthDelimited
        ? reader.bytes()
        : reader.uint64() as bigint,
    ]);
  }
  return out;
}
const text = (v: unknown) => new TextDecoder().decode(v as Uint8Array);

Deno.test("a TokenReview answer's status uses the proto field numbers (independent reader)", () => {
  const review = {
    kind: "TokenReview",
    apiVersion: "authentication.k8s.io/v1",
    metadata: {},
    spec: { token: "t", audiences: ["a1", "a2"] },
    status: {
      authenticated: true,
      user: {
        username: "system:serviceaccount:ns:sa",
        uid: "u-1",
        groups: ["g1", "g2"],
        extra: { "b/key": ["x"], "a/key": ["y", "z"] },
      },
      audiences: ["a2"],
      error: "",
    },
  };
  const env = decodeEnvelope(encodeK8sProtobuf(review));
  const top = wire(env.raw);
  assertEquals(top.map(([no]) => no), [1, 2, 3]);
  const status = wire(top[2][2] as Uint8Array);
  // TokenReviewStatus: authenticated=1, user=2, error=3, audiences=4.
  assertEquals(status.map(([no]) => no), [1, 2, 3, 4]);
  assertEquals(status[0][2], 1n);
  assertEquals(text(status[3][2]), "a2");
  const user = wire(status[1][2] as Uint8Array);
  // UserInfo: username=1, uid=2, groups=3 (repeated), extra=4 (map, sorted keys).
  assertEquals(user.map(([no]) => no), [1, 2, 3, 3, 4, 4]);
  assertEquals(text(user[0][2]), "system:serviceaccount:ns:sa");
  const firstExtra = wire(user[4][2] as Uint8Array);
  assertEquals(text(firstExtra[0][2]), "a/key");
  assertEquals(wire(firstExtra[1][2] as Uint8Array).map(([, , v]) => text(v)), [
    "y",
    "z",
  ]);
  // And back: the decoder gives the JSON the API server would write.
  const { error: _e, ...statusWithoutError } = review.status;
  assertEquals(decodeK8sProtobuf(encodeK8sProtobuf(review)), {
    ...review,
    status: statusWithoutError,
  });
});

Deno.test("SubjectAccessReview status and a Status body round-trip with their field numbers", () => {
  const sar = {
    kind: "SubjectAccessReview",
    apiVersion: "authorization.k8s.io/v1",
    metadata: {},
    spec: {
      nonResourceAttributes: { path: "/version", verb: "get" },
      user: "u",
    },
    status: {
      allowed: false,
      denied: true,
      reason: "no",
      evaluationError: "boom",
    },
  };
  const status = wire(
    wire(decodeEnvelope(encodeK8sProtobuf(sar)).raw)[2][2] as Uint8Array,
  );
  // allowed=1, reason=2, evaluationError=3, denied=4.
  assertEquals(
    status.map(([no, , v]) => [no, typeof v === "bigint" ? v : text(v)]),
    [
      [1, 0n],
      [2, "no"],
      [3, "boom"],
      [4, 1n],
    ],
  );
  assertEquals(decodeK8sProtobuf(encodeK8sProtobuf(sar)), sar);

  const st = {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message: 'volumesnapshots.snapshot.storage.k8s.io "x" not found',
    reason: "NotFound",
    details: {
      name: "x",
      group: "snapshot.storage.k8s.io",
      kind: "volumesnapshots",
    },
    code: 404,
  };
  const fields = wire(decodeEnvelope(encodeK8sProtobuf(st)).raw);
  // metadata=1, status=2, message=3, reason=4, details=5, code=6.
  assertEquals(fields.map(([no]) => no), [1, 2, 3, 4, 5, 6]);
  assertEquals(fields[5][2], 404n);
  assertEquals(
    JSON.stringify(decodeK8sProtobuf(encodeK8sProtobuf(st))),
    JSON.stringify(st),
  );
});

Deno.test("normalizeK8sJson applies client-go's field order and omitempty", () => {
  const n = normalizeK8sJson({
    apiVersion: "authorization.k8s.io/v1",
    kind: "SubjectAccessReview",
    status: { reason: "", allowed: false },
    spec: { uid: "", user: "u", groups: [] },
  });
  assertEquals(
    JSON.stringify(n),
    JSON.stringify({
      kind: "SubjectAccessReview",
      apiVersion: "authorization.k8s.io/v1",
      metadata: {},
      spec: { user: "u" },
      status: { allowed: false },
    }),
  );
});

Deno.test("bad input gets a clear K8sProtobufError", () => {
  const good = fromB64(withBody[0].bodyB64);
  assertThrows(
    () => decodeK8sProtobuf(new TextEncoder().encode("{}")),
    K8sProtobufError,
    "magic",
  );
  assertThrows(
    () => decodeK8sProtobuf(good.subarray(0, good.length - 10)),
    K8sProtobufError,
  );
  assertThrows(
    () => encodeK8sProtobuf({ apiVersion: "v1", kind: "Pod" }),
    K8sProtobufError,
    "no protobuf codec for v1, Kind=Pod",
  );
  assertThrows(
    () =>
      encodeK8sProtobuf({
        apiVersion: "authentication.k8s.io/v1",
        kind: "TokenReview",
        spec: { token: 7 },
      }),
    K8sProtobufError,
    "token",
  );
  // Compressed envelopes (contentEncoding) are not something client-go sends.
  const env = decodeEnvelope(good);
  assertThrows(
    () =>
      decodeK8sProtobuf(encodeEnvelope({ ...env, contentEncoding: "gzip" })),
    K8sProtobufError,
    "unsupported content encoding gzip",
  );
});
