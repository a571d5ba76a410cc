/**
 * The RPC front: SnapshotMetadata (wire-identical to upstream) and the
 * gateway's own GatewayService, as connect-es service implementations. The
 * same router serves Connect, gRPC-Web and (on the HTTP/2 port) native gRPC.
 */
import { create, fromBinary } from "@bufbuild/protobuf";
import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import {
  GetMetadataAllocatedResponseSchema,
  GetMetadataDeltaResponseSchema,
  SnapshotMetadata,
} from "../../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import {
  GatewayService,
  ListSnapshotsResponseSchema,
  SnapshotSchema,
} from "../../gen/cbtgateway/v1/gateway_pb.ts";
import type { CallContext, Gateway } from "../gateway/gateway.ts";

/** Requests are a few hundred bytes; anything near this is an attack. */
export const DEFAULT_READ_MAX_BYTES = 64 * 1024;

function callContext(ctx: HandlerContext): CallContext {
  return { headers: ctx.requestHeader, signal: ctx.signal };
}

/** Registers both services on a router. */
export function registerServices(gateway: Gateway) {
  return (router: ConnectRouter) => {
    router.service(SnapshotMetadata, {
      async *getMetadataAllocated(req, ctx) {
        const stream = await gateway.getMetadataAllocated(
          req,
          callContext(ctx),
        );
        for await (const { bytes } of stream) {
          yield fromBinary(GetMetadataAllocatedResponseSchema, bytes);
        }
      },
      async *getMetadataDelta(req, ctx) {
        const stream = await gateway.getMetadataDelta(req, callContext(ctx));
        for await (const { bytes } of stream) {
          yield fromBinary(GetMetadataDeltaResponseSchema, bytes);
        }
      },
    });
    router.service(GatewayService, {
      async *getMetadataDeltaByName(req, ctx) {
        const stream = await gateway.getMetadataDeltaByName(
          req,
          callContext(ctx),
        );
        for await (const { bytes } of stream) {
          yield fromBinary(GetMetadataDeltaResponseSchema, bytes);
        }
      },
      async listSnapshots(req, ctx) {
        const snapshots = await gateway.listSnapshots(
          req.namespace,
          "",
          callContext(ctx),
        );
        return create(ListSnapshotsResponseSchema, {
          snapshots: snapshots.map((s) =>
            create(SnapshotSchema, {
              name: s.name,
              snapshotId: s.snapshotId,
              volume: s.volume,
              volumeCapacityBytes: BigInt(s.volumeCapacityBytes),
              readyToUse: s.readyToUse,
            })
          ),
        });
      },
    });
  };
}
