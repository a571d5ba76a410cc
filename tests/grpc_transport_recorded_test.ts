/**
 * The upstream native-gRPC transport (tests/support/grpc-transport.ts)
 * against the real sidecar's recorded answers (tests/fixtures/real-sidecar),
 * replayed byte for byte by a node:http2 server after it checks the request
 * bytes: messages decode to what the sidecar sent, errors (Trailers-Only
 * included) keep their code and message.
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { ConnectError, createClient } from "@connectrpc/connect";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import {
  type DescMessage,
  fromBinary,
  type JsonValue,
  toJson,
} from "@bufbuild/protobuf";
import {
  GetMetadataAllocatedRequestSchema,
  GetMetadataAllocatedResponseSchema,
  GetMetadataDeltaRequestSchema,
  GetMetadataDeltaResponseSchema,
  SnapshotMetadata,
} from "../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import { createUpstreamGrpcTransport } from "./support/grpc-transport.ts";
import { requestFrame } from "./support/grpc-request.ts";

const VECTORS = new URL("./fixtures/real-sidecar/", import.meta.url);

/** One response of the real sidecar as recorded (vectors/real-sidecar/README.md). */
interface Recording {
  name: string;
  rpc: "GetMetadataAllocated" | "GetMetadataDelta";
  request: Uint8Array;
  responseHeaders: http2.OutgoingHttpHeaders;
  body: Uint8Array;
  /** null: Trailers-Only (the status is in `responseHeaders`). */
  trailers: Record<string, string> | null;
  /** The outcome as buf curl saw it. */
  grpcStatus: number;
  grpcMessage: string;
  messages: JsonValue[];
}

function base64(text: string | undefined): Uint8Array {
  return Uint8Array.from(atob(text ?? ""), (c) => c.charCodeAt(0));
}

/** The fields of errors.json cases and streams/*.json this test reads. */
interface RecordedCase {
  case: string;
  rpc: Recording["rpc"];
  requestMessageB64: string;
  grpcStatus: string | number | null;
  grpcMessage: string;
  trailersOnly: boolean;
  responseHeaders: http2.OutgoingHttpHeaders;
  responseBodyB64?: string;
  trailers: Record<string, string>;
  messages?: JsonValue[];
}
interface RecordedStream extends
  Omit<
    RecordedCase,
    "case" | "requestMessageB64" | "grpcStatus" | "grpcMessage"
  > {
  request: { messageB64: string };
}

async function loadRecordings(): Promise<Recording[]> {
  const out: Recording[] = [];
  const errors: RecordedCase[] = JSON.parse(
    await Deno.readTextFile(new URL("errors.json", VECTORS)),
  ).cases;
  for (const c of errors) {
    if (c.grpcStatus === null) continue; // the stream that never ended
    out.push({
      name: `${c.case} (${c.rpc})`,
      rpc: c.rpc,
      request: base64(c.requestMessageB64),
      responseHeaders: c.responseHeaders,
      body: base64(c.responseBodyB64),
      trailers: c.trailersOnly ? null : c.trailers,
      grpcStatus: Number(c.grpcStatus),
      grpcMessage: c.grpcMessage,
      messages: c.messages ?? [],
    });
  }
  for await (const entry of Deno.readDir(new URL("streams/", VECTORS))) {
    if (entry.name.startsWith("expected-")) continue;
    const r: RecordedStream = JSON.parse(
      await Deno.readTextFile(new URL(`streams/${entry.name}`, VECTORS)),
    );
    out.push({
      name: entry.name,
      rpc: r.rpc,
      request: base64(r.request.messageB64),
      responseHeaders: r.responseHeaders,
      body: base64(r.responseBodyB64),
      trailers: r.trailersOnly ? null : r.trailers,
      grpcStatus: Number(r.trailers["grpc-status"]),
      grpcMessage: r.trailers["grpc-message"],
      messages: r.messages ?? [],
    });
  }
  return out;
}

/**
 * Answers each request with a recorded sidecar response, byte for byte (the
 * `x-recording` header picks it), after checking the request bytes match
 * the recorded request.
 */
async function startReplay(
  recordings: Recording[],
): Promise<{ url: string; close(): Promise<void> }> {
  const server = http2.createServer();
  server.on("stream", (stream, headers) => {
    const rec = recordings[Number(headers["x-recording"])];
    const chunks: Uint8Array[] = [];
    stream.on("data", (c: Uint8Array) => chunks.push(c));
    stream.on("end", () => {
      const got = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
      chunks.reduce((at, c) => (got.set(c, at), at + c.byteLength), 0);
      const same = rec &&
        headers[":path"] === `/snapshotmetadata.SnapshotMetadata/${rec.rpc}` &&
        got.join() === requestFrame(rec.request).join();
      if (!same) {
        stream.respond({
          ":status": 200,
          "content-type": "application/grpc",
          "grpc-status": "13",
          "grpc-message": "not the recorded request",
        }, { endStream: true });
      } else if (rec.trailers === null) {
        stream.respond(rec.responseHeaders, { endStream: true });
      } else {
        const trailers = rec.trailers;
        stream.respond(rec.responseHeaders, { waitForTrailers: true });
        stream.on("wantTrailers", () => stream.sendTrailers(trailers));
        stream.end(rec.body);
      }
    });
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on(
    "session",
    (s) => (sessions.add(s), s.on("close", () => sessions.delete(s))),
  );
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        for (const s of sessions) s.close();
      }),
  };
}

Deno.test("upstream gRPC transport: the real sidecar's recorded answers, Trailers-Only included", async () => {
  const recordings = await loadRecordings();
  ok(
    recordings.filter((r) => r.trailers === null).length >= 25,
    "Trailers-Only recordings",
  );
  ok(
    recordings.filter((r) => r.messages.length > 0).length >= 8,
    "recordings with messages",
  );
  const replay = await startReplay(recordings);
  const transport = createUpstreamGrpcTransport({ baseUrl: replay.url });
  const client = createClient(SnapshotMetadata, transport);
  try {
    for (const [i, rec] of recordings.entries()) {
      const options = { headers: { "x-recording": String(i) } };
      const schema: DescMessage = rec.rpc === "GetMetadataAllocated"
        ? GetMetadataAllocatedResponseSchema
        : GetMetadataDeltaResponseSchema;
      const stream = rec.rpc === "GetMetadataAllocated"
        ? client.getMetadataAllocated(
          fromBinary(GetMetadataAllocatedRequestSchema, rec.request),
          options,
        )
        : client.getMetadataDelta(
          fromBinary(GetMetadataDeltaRequestSchema, rec.request),
          options,
        );
      const messages: JsonValue[] = [];
      let error: unknown;
      try {
        for await (const m of stream) messages.push(toJson(schema, m as never));
      } catch (e) {
        error = e;
      }
      if (rec.grpcStatus === 0) {
        equal(error, undefined, `${rec.name}: ${error}`);
      } else {
        ok(error instanceof ConnectError, `${rec.name}: ${error}`);
        equal(error.code, rec.grpcStatus, rec.name);
        equal(error.rawMessage, rec.grpcMessage, rec.name);
      }
      deepStrictEqual(messages, rec.messages, rec.name);
    }
  } finally {
    transport.close();
    await replay.close();
  }
});

/**
 * A backend whose one snapshot is `messages` × `perMessage` allocated blocks,
 * encoded lazily, so a stream far larger than any image on disk costs no
 * memory on the server. It counts what it produced and sees aborts.
 */
