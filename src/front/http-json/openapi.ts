/**
 * The OpenAPI 3.1 description of the HTTP/JSON surface, served at
 * /openapi.json. Kept beside the handlers it describes; a test checks that
 * every route it lists answers.
 */
import { DEFAULT_TICKET_TTL_SECONDS } from "./stream-ticket.ts";

const EXACT =
  "JSON number; exact for values up to 2^53 bytes (8 PiB), beyond any real volume.";

const errorSchema = {
  type: "object",
  required: ["code", "message"],
  properties: {
    code: {
      type: "string",
      description: "Connect error code name",
      enum: [
        "canceled",
        "unknown",
        "invalid_argument",
        "deadline_exceeded",
        "not_found",
        "already_exists",
        "permission_denied",
        "resource_exhausted",
        "failed_precondition",
        "aborted",
        "out_of_range",
        "unimplemented",
        "internal",
        "unavailable",
        "data_loss",
        "unauthenticated",
      ],
    },
    message: { type: "string" },
  },
};

const offset = {
  type: "integer",
  minimum: 0,
  maximum: 9007199254740991,
  description: EXACT,
};

const records = {
  Header: {
    type: "object",
    description: "First record of every stream, also when there are no blocks.",
    required: [
      "type",
      "operation",
      "namespace",
      "snapshot",
      "blockMetadataType",
      "volumeCapacityBytes",
      "startingOffset",
    ],
    properties: {
      type: { const: "header" },
      operation: { enum: ["allocated", "delta"] },
      namespace: { type: "string" },
      snapshot: {
        type: "string",
        description: "The snapshot listed (the target of a delta).",
      },
      baseSnapshotId: { type: "string" },
      baseSnapshotName: { type: "string" },
      blockMetadataType: {
        enum: ["FIXED_LENGTH", "VARIABLE_LENGTH", "UNKNOWN"],
        description: "UNKNOWN only when the upstream sent no block at all.",
      },
      volumeCapacityBytes: {
        type: ["integer", "null"],
        description:
          `${EXACT} Taken from the snapshot when the stream has no blocks; null if unknown.`,
      },
      startingOffset: offset,
    },
  },
  Blocks: {
    type: "object",
    description:
      "The tuples of one upstream message, in increasing offset order.",
    required: ["type", "blocks", "nextOffset"],
    properties: {
      type: { const: "blocks" },
      blocks: { type: "array", items: { $ref: "#/components/schemas/Block" } },
      nextOffset: {
        ...offset,
        description: `Where to resume after this record. ${EXACT}`,
      },
    },
  },
  Block: {
    type: "object",
    required: ["offset", "length"],
    properties: { offset, length: offset },
  },
  End: {
    type: "object",
    description:
      "Last record of a complete stream. A stream without it is incomplete.",
    required: ["type", "messages", "tuples", "coveredBytes", "nextOffset"],
    properties: {
      type: { const: "end" },
      messages: { type: "integer" },
      tuples: {
        type: "integer",
        description: "Tuples sent on this connection.",
      },
      coveredBytes: {
        ...offset,
        description: `Sum of the lengths sent on this connection. ${EXACT}`,
      },
      nextOffset: offset,
    },
  },
  StreamError: {
    type: "object",
    description:
      "Last record of a failed stream; resume with startingOffset = nextOffset.",
    required: ["type", "code", "message", "nextOffset"],
    properties: {
      type: { const: "error" },
      code: errorSchema.properties.code,
      message: { type: "string" },
      nextOffset: offset,
      messages: { type: "integer" },
      tuples: { type: "integer" },
      coveredBytes: offset,
    },
  },
  Heartbeat: {
    type: "object",
    description:
      "Sent on a quiet NDJSON stream so proxies keep it open; skip it.",
    properties: { type: { const: "heartbeat" } },
  },
  Record: {
    oneOf: ["Header", "Blocks", "End", "StreamError", "Heartbeat"].map((n) => ({
      $ref: `#/components/schemas/${n}`,
    })),
  },
  Document: {
    type: "object",
    description:
      "application/json: the whole listing in one document (for small results).",
    required: ["header", "blocks"],
    properties: {
      header: { $ref: "#/components/schemas/Header" },
      blocks: { type: "array", items: { $ref: "#/components/schemas/Block" } },
      end: { $ref: "#/components/schemas/End" },
      truncated: {
        type: "object",
        description:
          "Present instead of end when the listing was too long for one document.",
        properties: { nextOffset: offset, message: { type: "string" } },
      },
    },
  },
};

const errors = Object.fromEntries(
  [
    [
      "400",
      "Bad parameter (invalid_argument, out_of_range, failed_precondition)",
    ],
    ["401", "Missing or rejected credential or ticket"],
    ["403", "Caller may not read snapshots in this namespace"],
    ["404", "Unknown snapshot"],
    ["406", "Accept allows none of the offered formats"],
    ["503", "Snapshot or driver not ready (unavailable)"],
  ].map(([status, description]) => [
    status,
    {
      description,
      content: {
        "application/json": { schema: { $ref: "#/components/schemas/Error" } },
      },
    },
  ]),
);

const streamResponses = {
  "200": {
    description:
      "A stream of records: header, blocks…, then end (complete) or error (resume at nextOffset).",
    content: {
      "application/x-ndjson": {
        schema: { $ref: "#/components/schemas/Record" },
        description: "One record per line (the default).",
      },
      "text/event-stream": {
        schema: { type: "string" },
        description:
          "One unnamed event per record (data: the record's JSON); id: is the resume offset; comment heartbeats.",
      },
      "application/json": { schema: { $ref: "#/components/schemas/Document" } },
    },
  },
  ...errors,
  "429": {
    description:
      "Too many streams open at once, for this caller or in total (resource_exhausted); nothing was started",
    headers: {
      "Retry-After": {
        description: "Seconds to wait before trying again",
        schema: { type: "integer" },
      },
    },
    content: {
      "application/json": { schema: { $ref: "#/components/schemas/Error" } },
    },
  },
};

const pathParams = [
  { name: "namespace", in: "path", required: true, schema: { type: "string" } },
  { name: "snapshot", in: "path", required: true, schema: { type: "string" } },
];

const listingParams = [
  {
    name: "startingOffset",
    in: "query",
    schema: { ...offset, default: 0 },
    description:
      "Byte offset to start at; the first block returned ends after it.",
  },
  {
    name: "maxResults",
    in: "query",
    schema: { type: "integer", minimum: 0, maximum: 2147483647, default: 0 },
    description: "Most tuples per blocks record; 0 lets the server choose.",
  },
  {
    name: "ticket",
    in: "query",
    schema: { type: "string" },
    description:
      "A stream ticket, instead of the Authorization header (for EventSource).",
  },
  {
    name: "Last-Event-ID",
    in: "header",
    schema: { type: "string" },
    description: "SSE resume: overrides startingOffset.",
  },
];

const baseParams = [
  {
    name: "baseSnapshotId",
    in: "query",
    schema: { type: "string" },
    description: "The base's snapshot id (CSI handle).",
  },
  {
    name: "baseSnapshotName",
    in: "query",
    schema: { type: "string" },
    description:
      "The base's VolumeSnapshot name, resolved by the gateway. Give exactly one of the two.",
  },
];

function bodySchema(delta: boolean) {
  return {
    type: "object",
    additionalProperties: false,
    properties: {
      startingOffset: {
        oneOf: [offset, { type: "string", pattern: "^[0-9]+$" }],
      },
      maxResults: { type: "integer", minimum: 0 },
      ...(delta
        ? {
          baseSnapshotId: { type: "string" },
          baseSnapshotName: { type: "string" },
        }
        : {}),
    },
  };
}

function listing(delta: boolean) {
  const summary = delta
    ? "Blocks changed between a base snapshot and this one"
    : "Allocated blocks of a snapshot";
  return {
    parameters: pathParams,
    get: {
      summary,
      operationId: delta ? "getDelta" : "getAllocated",
      parameters: delta ? [...baseParams, ...listingParams] : listingParams,
      responses: streamResponses,
    },
    post: {
      summary: `${summary} (parameters in a JSON body)`,
      operationId: delta ? "postDelta" : "postAllocated",
      requestBody: {
        content: { "application/json": { schema: bodySchema(delta) } },
      },
      responses: streamResponses,
    },
  };
}

export function openApiDocument(): Record<string, unknown> {
  return {
    openapi: "3.1.0",
    info: {
      title: "cbt-gateway HTTP/JSON",
      version: "1",
      description:
        "Changed block tracking (Kubernetes snapshot metadata) as NDJSON, Server-Sent Events or JSON. " +
        "Offsets and lengths are JSON numbers, exact up to 2^53 bytes.",
    },
    security: [{ bearer: [] }],
    paths: {
      "/v1/namespaces/{namespace}/snapshots": {
        parameters: [pathParams[0]],
        get: {
          summary: "Snapshots in a namespace, with their ids",
          operationId: "listSnapshots",
          responses: {
            "200": {
              description: "The snapshots",
              content: {
                "application/json": {
                  schema: {
                    type: "object",
                    properties: {
                      snapshots: {
                        type: "array",
                        items: { $ref: "#/components/schemas/Snapshot" },
                      },
                    },
                  },
                },
              },
            },
            ...errors,
          },
        },
      },
      "/v1/namespaces/{namespace}/snapshots/{snapshot}/allocated": listing(
        false,
      ),
      "/v1/namespaces/{namespace}/snapshots/{snapshot}/delta": listing(true),
      "/v1/namespaces/{namespace}/snapshots/{snapshot}/stream-tickets": {
        parameters: pathParams,
        post: {
          summary:
            `A ticket for one stream URL of this snapshot, valid ${DEFAULT_TICKET_TTL_SECONDS} s by default`,
          description:
            "For EventSource, which cannot send headers: append ?ticket=… to the stream URL.",
          operationId: "createStreamTicket",
          responses: {
            "201": {
              description: "The ticket",
              content: {
                "application/json": {
                  schema: { $ref: "#/components/schemas/Ticket" },
                },
              },
            },
            ...errors,
          },
        },
      },
    },
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer" } },
      schemas: {
        ...records,
        Error: errorSchema,
        Snapshot: {
          type: "object",
          properties: {
            name: { type: "string" },
            snapshotId: { type: "string" },
            volume: { type: "string" },
            volumeCapacityBytes: offset,
            readyToUse: { type: "boolean" },
          },
        },
        Ticket: {
          type: "object",
          required: ["ticket", "expiresAt", "expiresInSeconds"],
          properties: {
            ticket: { type: "string" },
            expiresAt: { type: "string", format: "date-time" },
            expiresInSeconds: { type: "integer" },
          },
        },
      },
    },
  };
}
