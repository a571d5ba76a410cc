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
import type { CallEnvelope, Gateway } from "../gateway/gateway.ts";

function envelope(ctx: HandlerContext): CallEnvelope {
  const timeoutMs = ctx.timeoutMs();
  return {
    headers: ctx.requestHeader,
    signal: ctx.signal,
    deadline: timeoutMs === undefined ? undefined : Date.now() + timeoutMs,
  };
}

/** Registers both services on a router. */
export function registerServices(gateway: Gateway) {
  return (router: ConnectRouter) => {
    router.service(SnapshotMetadata, {
      async *getMetadataAllocated(req, ctx) {
        const stream = await gateway.getMetadataAllocated(req, envelope(ctx));
        for await (const { bytes } of stream) {
          yield fromBinary(GetMetadataAllocatedResponseSchema, bytes);
        }
      },
      async *getMetadataDelta(req, ctx) {
        const stream = await gateway.getMetadataDelta(req, envelope(ctx));
        for await (const { bytes } of stream) {
          yield fromBinary(GetMetadataDeltaResponseSchema, bytes);
        }
      },
    });
    router.service(GatewayService, {
      async *getMetadataDeltaByName(req, ctx) {
        const stream = await gateway.getMetadataDeltaByName(req, envelope(ctx));
        for await (const { bytes } of stream) {
          yield fromBinary(GetMetadataDeltaResponseSchema, bytes);
        }
      },
      async listSnapshots(req, ctx) {
        const snapshots = await gateway.listSnapshots(
          req.namespace,
          "",
          envelope(ctx),
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
