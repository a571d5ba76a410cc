/**
 * GET/POST /v1/namespaces/{namespace}/snapshots/{snapshot}/{allocated|delta}:
 * parse, negotiate, call the Gateway, wait for the first upstream step (so a
 * failure to start is an HTTP status, not a 200 with an error record), then
 * answer as NDJSON, SSE or one JSON document.
 */
import type { Gateway } from "../../gateway/gateway.ts";
import type { CheckedStream } from "../../gateway/checked-stream.ts";
import {
  blockListBytes,
  endRecord,
  type HeaderFields,
  headerRecord,
  type Operation,
} from "./block-records.ts";
import { errorResponse, invalidArgument } from "./errors.ts";
import { ndjsonFraming, sseFraming } from "./record-framing.ts";
import { CONTENT_TYPES, negotiateFormat } from "./format.ts";
import {
  lastEventOffset,
  paramsFromBody,
  paramsFromQuery,
  type StreamParams,
} from "./params.ts";
import {
  messageEnd,
  recordStream,
  type StartedStream,
} from "./record-stream.ts";
import type { StreamTickets } from "./stream-ticket.ts";
import { TicketAuthenticator } from "./ticket-authenticator.ts";
import { securityTokenFrom } from "./security-token.ts";

export interface StreamEndpointOptions {
  tickets: StreamTickets;
  heartbeatMs: number;
  retryMs: number;
  jsonMaxTuples: number;
}

/** Headers that keep proxies and caches from holding a stream back. */
const STREAM_HEADERS = {
  "cache-control": "no-store, no-transform",
  "x-accel-buffering": "no",
  "x-content-type-options": "nosniff",
};

export async function handleStream(
  gateway: Gateway,
  options: StreamEndpointOptions,
  request: Request,
  route: { namespace: string; snapshot: string; operation: Operation },
): Promise<Response> {
  const format = negotiateFormat(request.headers.get("accept"));
  if (!format) {
    return errorResponse(
      invalidArgument(
        "Accept must allow application/x-ndjson, text/event-stream or application/json",
      ),
      406,
    );
  }
  const abort = new AbortController();
  const signal = AbortSignal.any([request.signal, abort.signal]);
  let started: StartedStream;
  let header: HeaderFields;
  try {
    const params = await readParams(request, route.operation);
    const gw = params.ticket === undefined ? gateway : gateway.withAuth(
      new TicketAuthenticator(
        await options.tickets.redeem(
          params.ticket,
          route.namespace,
          route.snapshot,
        ),
        route.namespace,
        gateway.auth,
      ),
    );
    const call = { headers: request.headers, signal };
    const token = securityTokenFrom(gateway.auth, request.headers);
    const stream = await startCall(gw, route, params, token, call);
    const iterator = stream[Symbol.asyncIterator]();
    started = {
      iterator,
      first: await iterator.next(),
      progress: stream.progress,
      abort: () => abort.abort(),
    };
    header = {
      operation: route.operation,
      namespace: route.namespace,
      snapshot: route.snapshot,
      baseSnapshotId: params.baseSnapshotId,
      baseSnapshotName: params.baseSnapshotName,
      blockMetadataType: stream.progress.blockMetadataType,
      volumeCapacityBytes: stream.progress.volumeCapacityBytes,
      startingOffset: stream.startingOffset,
    };
    if (started.first.done) {
      // No message, so the stream never said the capacity or the block
      // type: ask the backend, which may know them from the snapshot.
      const info = await gw.getSnapshot(
        route.namespace,
        route.snapshot,
        token,
        call,
      )
        .catch(() => undefined);
      header.volumeCapacityBytes = info?.volumeCapacityBytes ?? null;
      header.blockMetadataType = info?.blockMetadataType ?? 0;
    }
  } catch (err) {
    abort.abort();
    return errorResponse(err);
  }
  if (format === "json") {
    return await jsonDocument(
      started,
      headerRecord(header),
      options.jsonMaxTuples,
    );
  }
  const framing = format === "sse"
    ? sseFraming(options.retryMs)
    : ndjsonFraming;
  const body = recordStream(
    started,
    headerRecord(header),
    framing,
    options.heartbeatMs,
  );
  return new Response(body, {
    headers: { "content-type": CONTENT_TYPES[format], ...STREAM_HEADERS },
  });
}

async function readParams(
  request: Request,
  op: Operation,
): Promise<StreamParams> {
  const url = new URL(request.url);
  let params: StreamParams;
  if (request.method === "POST") {
    if (url.search !== "") {
      throw invalidArgument(
        "POST takes its parameters in the JSON body, not the URL",
      );
    }
    params = await paramsFromBody(op, request);
  } else {
    params = paramsFromQuery(op, url.searchParams);
  }
  // An EventSource reconnecting says where it got to; that wins over the URL.
  const resume = lastEventOffset(request.headers);
  if (resume !== undefined) params.startingOffset = resume;
  return params;
}

function startCall(
  gw: Gateway,
  route: { namespace: string; snapshot: string; operation: Operation },
  params: StreamParams,
  securityToken: string,
  call: { headers: Headers; signal: AbortSignal },
): Promise<CheckedStream> {
  const common = {
    securityToken,
    namespace: route.namespace,
    startingOffset: params.startingOffset,
    maxResults: params.maxResults,
  };
  if (route.operation === "allocated") {
    return gw.getMetadataAllocated(
      { ...common, snapshotName: route.snapshot },
      call,
    );
  }
  if (params.baseSnapshotName !== undefined) {
    return gw.getMetadataDeltaByName(
      {
        ...common,
        baseSnapshotName: params.baseSnapshotName,
        targetSnapshotName: route.snapshot,
      },
      call,
    );
  }
  return gw.getMetadataDelta(
    {
      ...common,
      baseSnapshotId: params.baseSnapshotId!,
      targetSnapshotName: route.snapshot,
    },
    call,
  );
}

/**
 * The whole listing as one document: `{"header", "blocks": [...], "end"}`.
 * Past `maxTuples` it stops after the current message and says where to go
 * on in `"truncated"` instead of `"end"`; a failure is an HTTP error.
 */
async function jsonDocument(
  started: StartedStream,
  header: string,
  maxTuples: number,
): Promise<Response> {
  const { iterator, progress } = started;
  const lists: Uint8Array[] = [];
  let truncated: string | undefined;
  try {
    for (let step = started.first; !step.done; step = await iterator.next()) {
      lists.push(blockListBytes(step.value.message));
      if (progress.tuples >= maxTuples) {
        const next = messageEnd(step.value);
        truncated = `{"nextOffset":${next},"message":${
          JSON.stringify(
            `more than ${maxTuples} tuples: continue with startingOffset=${next}, ` +
              "or ask for application/x-ndjson to get everything in one stream",
          )
        }}`;
        started.abort();
        iterator.return?.().catch(() => {});
        break;
      }
    }
  } catch (err) {
    started.abort();
    return errorResponse(err);
  }
  const tail = truncated === undefined
    ? `"end":${endRecord(progress)}`
    : `"truncated":${truncated}`;
  const body = joinBytes(
    `{"header":${header},"blocks":[`,
    lists,
    `],${tail}}\n`,
  );
  return new Response(
    body,
    {
      headers: {
        "content-type": CONTENT_TYPES.json,
        "cache-control": "no-store",
      },
    },
  );
}

/** head + lists joined with commas + tail, as one buffer. */
function joinBytes(
  head: string,
  lists: Uint8Array[],
  tail: string,
): Uint8Array<ArrayBuffer> {
  const encoder = new TextEncoder();
  const [h, t] = [encoder.encode(head), encoder.encode(tail)];
  let size = h.length + t.length + Math.max(0, lists.length - 1);
  for (const l of lists) size += l.length;
  const out = new Uint8Array(size);
  out.set(h, 0);
  let pos = h.length;
  lists.forEach((l, i) => {
    if (i > 0) out[pos++] = 0x2c;
    out.set(l, pos);
    pos += l.length;
  });
  out.set(t, pos);
  return out;
}
