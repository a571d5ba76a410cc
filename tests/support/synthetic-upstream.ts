/**
 * A synthetic snapshot-metadata gRPC server (node:http2) for tests that need
 * streams no file-backed volume could give cheaply: arbitrarily long
 * FIXED_LENGTH streams, failures mid-stream, and broken invariants. It
 * honours HTTP/2 flow control and counts the bytes it has written per stream,
 * so tests can see how far it ran ahead of the consumer.
 *
 * Snapshot names choose the stream (from the tuple that ends after
 * starting_offset, as a driver does):
 *   t<N>        N tuples of 4 KiB, then grpc-status 0
 *   fail<N>     N tuples, then grpc-status 14 (Unavailable) "upstream lost"
 *   disorder    two messages, the second going backwards (invariant broken)
 */
import * as http2 from "node:http2";
import * as net from "node:net";
import * as tlsNet from "node:tls";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { shieldGoaway } from "../../src/adapter/node-http2/goaway-shield.ts";
import { fromBinary } from "@bufbuild/protobuf";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { GetMetadataAllocatedRequestSchema } from "../../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import {
  encodeMetadataMessage,
  FIXED_LENGTH,
} from "../../src/wire/metadata-message.ts";
import { ALLOCATED_PATH } from "./grpc-request.ts";

const BLOCK = 4096;

function plan(
  name: string,
): { tuples: number; status: string; disorder?: boolean } {
  const m = /^(t|fail)(\d+)$/.exec(name);
  if (m) return { tuples: Number(m[2]), status: m[1] === "t" ? "0" : "14" };
  if (name === "disorder") return { tuples: 2, status: "0", disorder: true };
  return { tuples: 0, status: "5" };
}

export interface SyntheticUpstream {
  url: string;
  /** Bytes written to each stream so far, by request order. */
  sent: number[];
  /** Each stream's request headers, by request order. */
  requestHeaders: http2.IncomingHttpHeaders[];
  /** Streams open right now (counted here, at the upstream). */
  openStreams(): number;
  close(): Promise<void>;
}

/** PEM key and certificate: the upstream then speaks TLS (ALPN h2). */
export interface SyntheticUpstreamTls {
  cert: string;
  key: string;
}

export async function startSyntheticUpstream(
  tls?: SyntheticUpstreamTls,
): Promise<SyntheticUpstream> {
  const sent: number[] = [];
  // Connections come through the GOAWAY shield, as in the gateway's own
  // server: a gateway closing its session (shutdown) sends GOAWAY, which
  // would abort this process inside Deno's nghttp2 (denoland/deno#36788).
  const requestHeaders: http2.IncomingHttpHeaders[] = [];
  let open = 0;
  const server = http2.createServer();
  const listener = tls
    ? tlsNet.createServer({
      cert: tls.cert,
      key: tls.key,
      ALPNProtocols: ["h2"],
    })
    : net.createServer();
  const sockets = new Set<Duplex>();
  listener.on(tls ? "secureConnection" : "connection", (raw: Duplex) => {
    sockets.add(raw);
    raw.once("close", () => sockets.delete(raw));
    // The peer's GOAWAY only means it is leaving: it closes the connection.
    server.emit(
      "connection",
      shieldGoaway(raw, { server: true, onGoaway() {} }),
    );
  });
  server.on("stream", (stream, headers) => {
    const id = sent.push(0) - 1;
    requestHeaders.push(headers);
    open++;
    stream.once("close", () => open--);
    const chunks: Uint8Array<ArrayBuffer>[] = [];
    stream.on("data", (c: Uint8Array<ArrayBuffer>) => chunks.push(c));
    stream.on("error", () => {});
    stream.on("end", async () => {
      if (headers[":path"] !== ALLOCATED_PATH) {
        stream.respond({ ":status": 200, "grpc-status": "12" });
        stream.end();
        return;
      }
      const body = new Uint8Array(await new Blob(chunks).arrayBuffer());
      const req = fromBinary(
        GetMetadataAllocatedRequestSchema,
        body.subarray(5),
      );
      // The caller may have gone (cancelled) while the request was read.
      if (stream.closed || stream.destroyed) return;
      const { tuples: total, status, disorder } = plan(req.snapshotName);
      const per = disorder ? 1 : req.maxResults || 256;
      const capacity = total * BLOCK;
      stream.respond({
        ":status": 200,
        "content-type": "application/grpc+proto",
      }, { waitForTrailers: true });
      stream.on(
        "wantTrailers",
        () =>
          stream.sendTrailers(
            status === "0" ? { "grpc-status": "0" } : {
              "grpc-status": status,
              "grpc-message": status === "14" ? "upstream lost" : "not found",
            },
          ),
      );
      const offsets: number[] = [], sizes: number[] = [];
      const first = Math.floor(Number(req.startingOffset) / BLOCK);
      for (let done = first; done < total && !stream.closed; done += per) {
        const n = Math.min(per, total - done);
        offsets.length = sizes.length = n;
        for (let i = 0; i < n; i++) {
          offsets[i] = (disorder ? 1 - done : done + i) * BLOCK;
          sizes[i] = BLOCK;
        }
        const frame = encodeEnvelope(
          0,
          encodeMetadataMessage({
            blockMetadataType: FIXED_LENGTH,
            volumeCapacityBytes: capacity,
            offsets,
            sizes,
          }),
        );
        sent[id] += frame.length;
        if (!stream.write(frame)) {
          // Both listeners go once either fires: a stream drains thousands
          // of times, and a 'close' left per wait trips MaxListeners.
          await new Promise<void>((resolve) => {
            const done = () => {
              stream.off("drain", done).off("close", done);
              resolve();
            };
            stream.on("drain", done).on("close", done);
          });
        }
      }
      if (!stream.closed) stream.end();
    });
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
  });
  await new Promise<void>((r) => listener.listen(0, "127.0.0.1", r));
  const port = (listener.address() as AddressInfo).port;
  return {
    url: `${tls ? "https" : "http"}://127.0.0.1:${port}`,
    sent,
    requestHeaders,
    openStreams: () => open,
    close: () =>
      new Promise((resolve) => {
        for (const s of sessions) s.destroy();
        for (const raw of sockets) raw.destroy();
        listener.close(() => resolve());
      }),
  };
}
