/**
 * The RPCs whose responses are relayed frame by frame: the request is small
 * and decoded as usual (binary or, for Connect JSON, proto3 JSON); the
 * response messages are the upstream's bytes (or JSON written from them).
 */
import {
  type DescMessage,
  fromBinary,
  fromJsonString,
  type MessageShape,
} from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  GetMetadataAllocatedRequestSchema,
  GetMetadataDeltaRequestSchema,
} from "../../../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import { GetMetadataDeltaByNameRequestSchema } from "../../../gen/cbtgateway/v1/gateway_pb.ts";
import type { CheckedStream } from "../../gateway/checked-stream.ts";
import type { CallContext, Gateway } from "../../gateway/gateway.ts";

export type StartStream = (
  gateway: Gateway,
  request: Uint8Array,
  call: CallContext,
) => Promise<CheckedStream>;

interface Method<T extends DescMessage> {
  request: T;
  start(
    gateway: Gateway,
    request: MessageShape<T>,
    call: CallContext,
  ): Promise<CheckedStream>;
}

const method = <T extends DescMessage>(m: Method<T>) => m;

const METHODS = new Map<string, Method<DescMessage>>([
  [
    "/snapshotmetadata.SnapshotMetadata/GetMetadataAllocated",
    method({
      request: GetMetadataAllocatedRequestSchema,
      start: (g, req, call) => g.getMetadataAllocated(req, call),
    }),
  ],
  [
    "/snapshotmetadata.SnapshotMetadata/GetMetadataDelta",
    method({
      request: GetMetadataDeltaRequestSchema,
      start: (g, req, call) => g.getMetadataDelta(req, call),
    }),
  ],
  [
    "/cbtgateway.v1.GatewayService/GetMetadataDeltaByName",
    method({
      request: GetMetadataDeltaByNameRequestSchema,
      start: (g, req, call) => g.getMetadataDeltaByName(req, call),
    }),
  ],
] as [string, Method<DescMessage>][]);

const textDecoder = new TextDecoder("utf-8", { fatal: true });

function decoder(
  codec: "proto" | "json",
  { request, start }: Method<DescMessage>,
): StartStream {
  return (gateway, bytes, call) => {
    let req;
    try {
      req = codec === "proto"
        ? fromBinary(request, bytes)
        : fromJsonString(request, textDecoder.decode(bytes));
    } catch (e) {
      throw new ConnectError(
        `cannot decode request: ${(e as Error).message}`,
        Code.InvalidArgument,
      );
    }
    return start(gateway, req, call);
  };
}

/** Request path → how to start its stream from a binary request. */
export const RELAYED_METHODS: ReadonlyMap<string, StartStream> = new Map(
  [...METHODS].map(([path, m]) => [path, decoder("proto", m)]),
);

/** Request path → how to start its stream from a proto3 JSON request. */
export const RELAYED_JSON_METHODS: ReadonlyMap<string, StartStream> = new Map(
  [...METHODS].map(([path, m]) => [path, decoder("json", m)]),
);
