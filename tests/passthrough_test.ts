/**
 * Frame pass-through on Connect, gRPC-Web and native gRPC, with a relay
 * gateway in front of a synthetic upstream: messages arrive byte-identical to
 * what the upstream sent, a failure mid-stream arrives after the messages
 * before it with the upstream's code (Connect end-stream, gRPC-Web trailer
 * frame, gRPC trailers), broken invariants become Internal, and a client that
 * goes away stops the upstream.
 */
import * as http2 from "node:http2";
import { gunzipSync } from "node:zlib";
import { fromBinary, fromJson, toBinary, toJson } from "@bufbuild/protobuf";
import { GetMetadataAllocatedResponseSchema } from "../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { endStreamFromJson } from "@connectrpc/connect/protocol-connect";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import { trailerParse } from "@connectrpc/connect/protocol-grpc-web";
import { decodeMetadataMessage } from "../src/wire/metadata-message.ts";
import {
  type Envelope,
  EnvelopeSplitter,
} from "./support/envelope-splitter.ts";
import { rawGrpcCall } from "../src/adapter/node-http2/grpc-call.ts";
import { NodeGrpcRelayBackend } from "../src/adapter/node-http2/relay-backend.ts";
import { startGateway } from "../src/server/start.ts";
import { startSyntheticUpstream } from "./support/synthetic-upstream.ts";

const ALLOCATED = "/snapshotmetadata.SnapshotMetadata/GetMetadataAllocated";

function request(snapshot: string, maxResults: number): Uint8Array {
  const name = new TextEncoder().encode(snapshot);
  return new Uint8Array([
    0x12,
    2,
    0x6e,
    0x73,
    0x1a,
    name.length,
    ...name,
    0x28,
    maxResults,
  ]);
}

interface Outcome {
  messages: Uint8Array[];
  /** How many messages came gzip-compressed. */
  compressed?: number;
  error?: ConnectError;
  contentType: string | null;
}

async function overFetch(
  url: string,
  protocol: "connect" | "grpc-web" | "connect-json",
  snapshot: string,
  maxResults: number,
  gzip = false,
): Promise<Outcome> {
  const json = protocol === "connect-json";
  const res = await fetch(url + ALLOCATED, {
    method: "POST",
    headers: {
      ...(protocol === "grpc-web"
        ? { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" }
        : {
          "content-type": json
            ? "application/connect+json"
            : "application/connect+proto",
          "connect-protocol-version": "1",
        }),
      ...(gzip
        ? {
          [
            protocol === "grpc-web"
              ? "grpc-accept-encoding"
              : "connect-accept-encoding"
          ]: "gzip",
        }
        : {}),
    },
    body: encodeEnvelope(
      0,
      json
        ? new TextEncoder().encode(
          JSON.stringify({
            namespace: "ns",
            snapshotName: snapshot,
            maxResults,
          }),
        )
        : request(snapshot, maxResults),
    ),
  });
  equal(res.status, 200);
  const splitter = new EnvelopeSplitter();
  const envelopes: Envelope[] = [];
  for await (const chunk of res.body!) splitter.push(chunk, envelopes);
  equal(splitter.buffered, 0, "body ends inside a frame");
  const out: Outcome = {
    messages: [],
    contentType: res.headers.get("content-type"),
  };
  let ends = 0;
  for (const e of envelopes) {
    if ((e.flags & 0x80) === 0 && (e.flags & 0x02) === 0) {
      equal(ends, 0, "message after the end frame");
      out.messages.push(
        new Uint8Array(e.flags === 1 ? gunzipSync(e.data) : e.data),
      );
      if (e.flags === 1) out.compressed = (out.compressed ?? 0) + 1;
    } else {
      ends++;
      out.error = protocol !== "grpc-web"
        ? endStreamFromJson(e.data).error
        : findTrailerError(trailerParse(e.data));
    }
  }
  equal(ends, 1, "exactly one end frame");
  return out;
}

async function overGrpc(
  session: http2.ClientHttp2Session,
  snapshot: string,
  maxResults: number,
): Promise<Outcome> {
  const out: Outcome = { messages: [], contentType: "application/grpc+proto" };
  try {
    for await (
      const m of rawGrpcCall(
        session,
        ALLOCATED,
        request(snapshot, maxResults),
        {
          signal: new AbortController().signal,
        },
      )
    ) out.messages.push(new Uint8Array(m));
  } catch (e) {
    out.error = ConnectError.from(e);
  }
  return out;
}

Deno.test("pass-through relays bytes, errors and cancellation on every binary protocol", async (t) => {
  const upstream = await startSyntheticUpstream();
  const gw = await startGateway(
    { host: "127.0.0.1", port: 0, grpcPort: 0, corsOrigins: [] },
    { backend: new NodeGrpcRelayBackend({ url: upstream.url }) },
  );
  const session = http2.connect(gw.grpcUrl);
  const direct = http2.connect(upstream.url);
  try {
    const protocols = {
      connect: (s: string, n: number) => overFetch(gw.httpUrl, "connect", s, n),
      "grpc-web": (s: string, n: number) =>
        overFetch(gw.httpUrl, "grpc-web", s, n),
      grpc: (s: string, n: number) => overGrpc(session, s, n),
      // Connect JSON: proto3 JSON written from the upstream's bytes.
      "connect-json": (s: string, n: number) =>
        overFetch(gw.httpUrl, "connect-json", s, n),
    };
    const truth = await overGrpc(direct, "t1000", 100);
    equal(truth.error, undefined);
    equal(truth.messages.length, 10);
    const asJson = (m: Uint8Array) =>
      new TextEncoder().encode(
        JSON.stringify(
          toJson(
            GetMetadataAllocatedResponseSchema,
            fromBinary(GetMetadataAllocatedResponseSchema, m),
          ),
        ),
      );
    const decodeAny = (m: Uint8Array) =>
      m[0] === 0x7b // "{": a Connect JSON message
        ? decodeMetadataMessage(
          toBinary(
            GetMetadataAllocatedResponseSchema,
            fromJson(
              GetMetadataAllocatedResponseSchema,
              JSON.parse(new TextDecoder().decode(m)),
            ),
          ),
        )
        : decodeMetadataMessage(m);

    for (const [name, call] of Object.entries(protocols)) {
      const json = name === "connect-json";
      await t.step(
        `${name}: messages are the upstream's ${
          json ? "messages as connect-es writes them" : "bytes"
        }`,
        async () => {
          const got = await call("t1000", 100);
          equal(got.error, undefined, String(got.error));
          ok(
            got.contentType?.endsWith(json ? "+json" : "+proto"),
            got.contentType ?? "",
          );
          deepStrictEqual(
            got.messages,
            json ? truth.messages.map(asJson) : truth.messages,
          );
        },
      );

      await t.step(
        `${name}: a mid-stream failure keeps its code and position`,
        async () => {
          const got = await call("fail300", 100);
          equal(got.messages.length, 3);
          equal(got.error?.code, Code.Unavailable, String(got.error));
          equal(got.error?.rawMessage, "upstream lost");
          const last = decodeAny(got.messages[2]);
          equal(last.offsets.at(-1), 299 * 4096);
        },
      );

      await t.step(`${name}: broken invariants become Internal`, async () => {
        const got = await call("disorder", 1);
        equal(got.messages.length, 1, "the good first message is relayed");
        equal(got.error?.code, Code.Internal, String(got.error));
        ok(
          got.error?.rawMessage.includes("out of order"),
          got.error?.rawMessage,
        );
      });

      await t.step(`${name}: errors before the first message`, async () => {
        const got = await call("no-such-snapshot", 1);
        equal(got.messages.length, 0);
        equal(got.error?.code, Code.NotFound, String(got.error));
      });
    }

    await t.step("gzip: large messages compressed, same content", async () => {
      const big = await overGrpc(direct, "t1200", 120);
      for (const protocol of ["connect", "grpc-web", "connect-json"] as const) {
        const got = await overFetch(gw.httpUrl, protocol, "t1200", 120, true);
        equal(got.error, undefined, String(got.error));
        equal(got.compressed, 10, `${protocol}: every message is over 1 KiB`);
        deepStrictEqual(
          got.messages,
          protocol === "connect-json" ? big.messages.map(asJson) : big.messages,
        );
      }
    });

    await t.step("a client that goes away stops the upstream", async () => {
      for (const protocol of ["connect", "grpc"] as const) {
        const before = upstream.sent.length;
        const abort = new AbortController();
        const total = 50_000_000; // far more than any buffer holds
        if (protocol === "connect") {
          const res = await fetch(gw.httpUrl + ALLOCATED, {
            method: "POST",
            headers: {
              "content-type": "application/connect+proto",
              "connect-protocol-version": "1",
            },
            body: encodeEnvelope(0, request(`t${total}`, 100)),
            signal: abort.signal,
          });
          const reader = res.body!.getReader();
          await reader.read();
          abort.abort();
          await reader.cancel().catch(() => {});
        } else {
          const it = rawGrpcCall(
            session,
            ALLOCATED,
            request(`t${total}`, 100),
            {
              signal: abort.signal,
            },
          );
          await it.next();
          abort.abort();
          await it.return(undefined);
        }
        // The upstream stops writing: its count stops growing, far short of the total.
        let last = -1;
        for (let i = 0; i < 100; i++) {
          await new Promise((r) => setTimeout(r, 50));
          if (upstream.sent[before] === last) break;
          last = upstream.sent[before];
        }
        ok(
          upstream.sent[before] < total * 11 / 100,
          `${protocol}: upstream wrote ${
            upstream.sent[before]
          } bytes after the client left`,
        );
        await new Promise((r) => setTimeout(r, 200));
        equal(
          upstream.sent[before],
          last,
          `${protocol}: upstream still writing`,
        );
      }
    });
  } finally {
    session.close();
    direct.close();
    await gw.close();
    await upstream.close();
  }
});
