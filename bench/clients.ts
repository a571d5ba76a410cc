/**
 * Lean stream clients, one per protocol, so the client costs the same on
 * every path and the measurement is of what sits in between. Binary clients
 * count tuples with the gateway's own wire scan (no decode); JSON clients
 * parse each record with JSON.parse, as any JSON consumer would.
 */
import * as http2 from "node:http2";
import {
  ALLOCATED_PATH,
  allocatedRequest,
  DELTA_PATH,
  deltaRequest,
  requestFrame,
} from "../tests/support/grpc-request.ts";
import { scanMetadataMessage } from "../src/wire/metadata-message.ts";
import {
  type Envelope,
  EnvelopeSplitter,
} from "../tests/support/envelope-splitter.ts";
import { rawGrpcRuns } from "../src/adapter/node-http2/grpc-call.ts";
import { forEachEnvelope } from "../src/wire/envelopes.ts";

export interface StreamQuery {
  namespace: string;
  snapshot: string;
  maxResults: number;
  /** With a base, the stream is GetMetadataDelta (gRPC client only). */
  baseSnapshotId?: string;
  /** The request's security_token (what a sidecar expects from its caller). */
  securityToken?: string;
}

/**
 * How a paced-bench client connects: a fresh connection per stream (the TLS
 * handshake counts, as for a backup tool that opens one per volume), the CA
 * to trust, and extra request headers (caller auth).
 */
export interface Connection {
  caPem?: string;
  headers?: Record<string, string>;
}

export interface StreamResult {
  tuples: number;
  /** Native gRPC only: messages, and the reads they arrived in (runs). */
  messages?: number;
  runs?: number;
  seconds: number;
  /** Seconds from sending the request to the first tuple. */
  firstBlockSeconds: number;
}

export type Protocol =
  | "grpc"
  | "connect"
  | "grpc-web"
  | "connect-json"
  | "connect-json-lean"
  | "ndjson"
  | "sse";

const noop = () => {};

function requestBytes(q: StreamQuery): Uint8Array {
  return q.baseSnapshotId === undefined
    ? allocatedRequest({
      namespace: q.namespace,
      snapshotName: q.snapshot,
      maxResults: q.maxResults,
      securityToken: q.securityToken,
    })
    : deltaRequest({
      namespace: q.namespace,
      baseSnapshotId: q.baseSnapshotId,
      targetSnapshotName: q.snapshot,
      maxResults: q.maxResults,
      securityToken: q.securityToken,
    });
}

/** Native gRPC over one kept HTTP/2 connection per base URL. */
export class GrpcClient {
  #sessions = new Map<string, http2.ClientHttp2Session>();

  stream(baseUrl: string, q: StreamQuery): Promise<StreamResult> {
    let session = this.#sessions.get(baseUrl);
    if (!session || session.closed || session.destroyed) {
      session = http2.connect(baseUrl);
      session.on("error", () => {});
      this.#sessions.set(baseUrl, session);
    }
    return grpcStream(session, q, performance.now());
  }

  close(): void {
    for (const s of this.#sessions.values()) s.close();
    this.#sessions.clear();
  }
}

/** Native gRPC on a new HTTP/2 connection (TLS for https://), closed after. */
export async function grpcStreamFresh(
  baseUrl: string,
  q: StreamQuery,
  c: Connection,
): Promise<StreamResult> {
  const t0 = performance.now();
  const session = http2.connect(baseUrl, c.caPem ? { ca: c.caPem } : {});
  session.on("error", () => {});
  try {
    return await grpcStream(session, q, t0, c.headers);
  } finally {
    session.close();
  }
}

async function grpcStream(
  session: http2.ClientHttp2Session,
  q: StreamQuery,
  t0: number,
  headers?: Record<string, string>,
): Promise<StreamResult> {
  let first = 0, tuples = 0, messages = 0, runs = 0;
  for await (
    const run of rawGrpcRuns(
      session,
      q.baseSnapshotId === undefined ? ALLOCATED_PATH : DELTA_PATH,
      requestBytes(q),
      { signal: new AbortController().signal, headers },
    )
  ) {
    runs++;
    forEachEnvelope(run, (_flags, start, end) => {
      tuples += scanMetadataMessage(run, noop, start, end).tuples;
      messages++;
    });
    if (first === 0) first = performance.now();
  }
  const end = performance.now();
  return {
    tuples,
    messages,
    runs,
    seconds: (end - t0) / 1000,
    firstBlockSeconds: ((first || end) - t0) / 1000,
  };
}

/**
 * fetch on a new HTTP/1.1 connection trusting `caPem` (as connect-node's
 * default Connect transport and browsers' gRPC-Web use HTTP/1.1), closed
 * after the stream.
 */
async function withFreshClient<T>(
  c: Connection | undefined,
  run: (init: { client?: Deno.HttpClient }) => Promise<T>,
): Promise<T> {
  if (!c) return run({});
  const client = Deno.createHttpClient({
    caCerts: c.caPem ? [c.caPem] : [],
    http1: true,
    http2: false,
  });
  try {
    return await run({ client });
  } finally {
    client.close();
  }
}

/** Connect or gRPC-Web over fetch, binary or (Connect) JSON. */
export function fetchRpcStream(
  httpUrl: string,
  protocol: "connect" | "grpc-web" | "connect-json" | "connect-json-lean",
  q: StreamQuery,
  c?: Connection,
): Promise<StreamResult> {
  return withFreshClient(c, (init) => fetchRpc(httpUrl, protocol, q, c, init));
}

async function fetchRpc(
  httpUrl: string,
  protocol: "connect" | "grpc-web" | "connect-json" | "connect-json-lean",
  q: StreamQuery,
  c: Connection | undefined,
  init: { client?: Deno.HttpClient },
): Promise<StreamResult> {
  // "connect-json-lean" counts tuples by their "sizeBytes" keys instead of
  // JSON.parse: V8's JSON.parse is slow on many distinct numeric strings
  // (int64 offsets below 2^32), so with JSON.parse the client, not the
  // gateway, sets the pace.
  const lean = protocol === "connect-json-lean";
  const json = protocol === "connect-json" || lean;
  const body = json
    ? new TextEncoder().encode(JSON.stringify({
      namespace: q.namespace,
      snapshotName: q.snapshot,
      maxResults: q.maxResults,
    }))
    : requestBytes(q);
  const headers: Record<string, string> = protocol === "grpc-web"
    ? { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" }
    : {
      "content-type": json
        ? "application/connect+json"
        : "application/connect+proto",
      "connect-protocol-version": "1",
    };
  const t0 = performance.now();
  const res = await fetch(httpUrl + ALLOCATED_PATH, {
    method: "POST",
    headers: { ...headers, ...c?.headers },
    body: requestFrame(body),
    ...init,
  });
  if (res.status !== 200 || !res.body) {
    throw new Error(`${protocol}: HTTP ${res.status} ${await res.text()}`);
  }
  const splitter = new EnvelopeSplitter();
  const envelopes: Envelope[] = [];
  let first = 0, tuples = 0, ended = false;
  const decoder = new TextDecoder();
  for await (const chunk of res.body) {
    splitter.push(chunk, envelopes);
    for (const e of envelopes) {
      if (e.flags === 0) {
        tuples += lean
          ? countOf(decoder.decode(e.data), '"sizeBytes"')
          : json
          ? (JSON.parse(decoder.decode(e.data)).blockMetadata?.length ?? 0)
          : scanMetadataMessage(e.data, noop).tuples;
        if (first === 0) first = performance.now();
      } else {
        // Connect end-stream (0x02) is JSON; gRPC-Web trailers (0x80) are headers.
        const text = decoder.decode(e.data);
        const failed = protocol === "grpc-web"
          ? !/grpc-status:\s*0\r?\n/i.test(text)
          : JSON.parse(text).error !== undefined;
        if (failed) throw new Error(`${protocol}: stream failed: ${text}`);
        ended = true;
      }
    }
    envelopes.length = 0;
  }
  if (!ended) {
    throw new Error(`${protocol}: stream ended without its end frame`);
  }
  const end = performance.now();
  return {
    tuples,
    seconds: (end - t0) / 1000,
    firstBlockSeconds: ((first || end) - t0) / 1000,
  };
}

function countOf(text: string, key: string): number {
  let n = 0;
  for (let i = text.indexOf(key); i >= 0; i = text.indexOf(key, i + 1)) n++;
  return n;
}

/** The HTTP/JSON surface: NDJSON lines or SSE `data:` lines, one JSON record each. */
export function httpJsonStream(
  httpUrl: string,
  format: "ndjson" | "sse",
  q: StreamQuery,
  c?: Connection,
): Promise<StreamResult> {
  return withFreshClient(c, (init) => httpJson(httpUrl, format, q, c, init));
}

async function httpJson(
  httpUrl: string,
  format: "ndjson" | "sse",
  q: StreamQuery,
  c: Connection | undefined,
  init: { client?: Deno.HttpClient },
): Promise<StreamResult> {
  const url =
    `${httpUrl}/v1/namespaces/${q.namespace}/snapshots/${q.snapshot}` +
    `/allocated?maxResults=${q.maxResults}`;
  const t0 = performance.now();
  const res = await fetch(url, {
    headers: {
      accept: format === "sse" ? "text/event-stream" : "application/x-ndjson",
      ...c?.headers,
    },
    ...init,
  });
  if (res.status !== 200 || !res.body) {
    throw new Error(`${format}: HTTP ${res.status} ${await res.text()}`);
  }
  let first = 0, tuples = 0, ended = false, rest = "";
  const prefix = format === "sse" ? "data: " : "";
  for await (const text of res.body.pipeThrough(new TextDecoderStream())) {
    const lines = (rest + text).split("\n");
    rest = lines.pop()!;
    for (const line of lines) {
      if (!line.startsWith(prefix) || line.length === prefix.length) continue;
      const record = JSON.parse(line.slice(prefix.length));
      if (record.type === "blocks") {
        tuples += record.blocks.length;
        if (first === 0) first = performance.now();
      } else if (record.type === "end") ended = true;
      else if (record.type === "error") {
        throw new Error(`${format}: stream failed: ${line}`);
      }
    }
  }
  if (!ended) throw new Error(`${format}: stream ended without an end record`);
  const end = performance.now();
  return {
    tuples,
    seconds: (end - t0) / 1000,
    firstBlockSeconds: ((first || end) - t0) / 1000,
  };
}
