/**
 * Request bodies for tests (and benchmarks) that speak the wire themselves:
 * raw HTTP/2, fetch, or a Node.js child. The message is written by the
 * generated schema (gen/), never by hand, so every field encodes as
 * protobuf says (a hand-rolled varint once broke `max_results` > 127), and
 * sent as one uncompressed envelope, the body of a streaming call in gRPC,
 * gRPC-Web and Connect alike.
 */
import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import {
  GetMetadataAllocatedRequestSchema,
  GetMetadataDeltaRequestSchema,
  SnapshotMetadata,
} from "../../gen/snapshotmetadata/snapshotmetadata_pb.ts";

/** The HTTP paths of the two RPCs. */
export const ALLOCATED_PATH =
  `/${SnapshotMetadata.typeName}/${SnapshotMetadata.method.getMetadataAllocated.name}`;
export const DELTA_PATH =
  `/${SnapshotMetadata.typeName}/${SnapshotMetadata.method.getMetadataDelta.name}`;

export type AllocatedRequestInit = MessageInitShape<
  typeof GetMetadataAllocatedRequestSchema
>;
export type DeltaRequestInit = MessageInitShape<
  typeof GetMetadataDeltaRequestSchema
>;

/** A GetMetadataAllocatedRequest in protobuf binary. */
export function allocatedRequest(
  init: AllocatedRequestInit,
): Uint8Array<ArrayBuffer> {
  return toBinary(
    GetMetadataAllocatedRequestSchema,
    create(GetMetadataAllocatedRequestSchema, init),
  );
}

/** A GetMetadataDeltaRequest in protobuf binary. */
export function deltaRequest(init: DeltaRequestInit): Uint8Array<ArrayBuffer> {
  return toBinary(
    GetMetadataDeltaRequestSchema,
    create(GetMetadataDeltaRequestSchema, init),
  );
}

/** `message` in one uncompressed envelope (flags 0, big-endian length). */
export function requestFrame(message: Uint8Array): Uint8Array<ArrayBuffer> {
  return encodeEnvelope(0, message);
}
