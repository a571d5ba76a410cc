/**
 * The static relay on node:http2, as the CLI and the tests start it: the
 * relay with its own upstream pool (closed with it), its HTTP/2 windows
 * sized by the read-ahead bound.
 */
import {
  GrpcRelayBackend,
  type GrpcRelayOptions,
} from "../../relay/grpc-relay.ts";
import { UpstreamPool } from "./upstream-pool.ts";

export class NodeGrpcRelayBackend extends GrpcRelayBackend {
  constructor(
    options: Omit<GrpcRelayOptions, "channel"> & {
      readAheadBytes?: number;
      /** Longest grpc-timeout sent upstream (ms); 0 or absent: no limit. */
      maxTimeoutMs?: number;
    },
  ) {
    const { readAheadBytes, maxTimeoutMs, ...relay } = options;
    super({
      ...relay,
      channel: new UpstreamPool({ readAheadBytes, maxTimeoutMs }),
    });
  }
}
