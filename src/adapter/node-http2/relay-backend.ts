/**
 * The static relay on node:http2, as the CLI and the tests start it: the
 * relay with its own upstream pool (closed with it).
 */
import {
  GrpcRelayBackend,
  type GrpcRelayOptions,
} from "../../relay/grpc-relay.ts";
import { UpstreamPool } from "./upstream-pool.ts";

export class NodeGrpcRelayBackend extends GrpcRelayBackend {
  constructor(options: Omit<GrpcRelayOptions, "channel">) {
    super({ ...options, channel: new UpstreamPool() });
  }
}
