/**
 * The RPCs whose responses are relayed frame by frame: the request is small
 * and decoded as usual; the response messages are the upstream's bytes.
 */
import { type DescMessage, fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  GetMetadataAllocatedRequestSchema,
  GetMetadataDeltaRequestSchema,
} from "../../../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import { GetMetadataDeltaByNameRequestSchema } from "../../../gen/cbtgateway/v1/gateway_pb.ts";
import type { CheckedStream } from "../../gateway/checked-stream.ts";
import type { CallEnvelope, Gateway } from "../../gateway/gateway.ts";

export type StartStream = (
  gateway: Gateway,
  request: Uint8Array,
  call: CallEnvelope,
) => Promise<CheckedStream>;

function decode<T extends DescMessage>(schema: T, bytes: Uint8Array) {
  try {
    return fromBinary(schema, bytes);
  } catch (e) {
    throw new ConnectError(
      `cannot decode request: ${(e as Error).message}`,
      Code.InvalidArgument,
    );
  }
}

/** Request path → how to start its stream. */
export const PASSTHROUGH_METHODS: ReadonlyMap<string, StartStream> = new Map<
  string,
  StartStream
>([
  [
    "/snapshotmetadata.SnapshotMetadata/GetMetadataAllocated",
    (g, bytes, call) =>
      g.getMetadataAllocated(
        decode(GetMetadataAllocatedRequestSchema, bytes),
        call,
      ),
  ],
  [
    "/snapshotmetadata.SnapshotMetadata/GetMetadataDelta",
    (g, bytes, call) =>
      g.getMetadataDelta(decode(GetMetadataDeltaRequestSchema, bytes), call),
  ],
  [
    "/cbtgateway.v1.GatewayService/GetMetadataDeltaByName",
    (g, bytes, call) =>
      g.getMetadataDeltaByName(
        decode(GetMetadataDeltaByNameRequestSchema, bytes),
        call,
      ),
  ],
]);
