/**
 * Starts real gateways for tests, both ports (HTTP and native gRPC) on
 * ephemeral loopback ports, optional TLS: around any backend
 * (`startLoopbackGateway`), or around the embedded store on a data dir
 * (`startTestGateway`).
 */
import {
  type GatewayParts,
  type RunningGateway,
  startGateway,
} from "../../src/server/start.ts";
import type { Authenticator } from "../../src/auth/authenticator.ts";
import {
  FIXED_LENGTH,
  VARIABLE_LENGTH,
} from "../../src/wire/metadata-message.ts";
import { NodeFileSnapshotStore } from "../../src/adapter/node-fs/file-store.ts";

export interface LoopbackOptions {
  /** Origins allowed by CORS (default none). */
  corsOrigins?: string[];
  tls?: { certPath: string; keyPath: string };
}

/** `parts` (a backend, auth, HTTP/JSON tuning, …) served on ephemeral loopback ports. */
export async function startLoopbackGateway(
  parts: GatewayParts,
  options: LoopbackOptions = {},
): Promise<RunningGateway> {
  return await startGateway({
    host: "127.0.0.1",
    port: 0,
    grpcPort: 0,
    corsOrigins: options.corsOrigins ?? [],
    tlsCert: options.tls?.certPath,
    tlsKey: options.tls?.keyPath,
  }, parts);
}

export interface TestGatewayOptions extends LoopbackOptions {
  dataDir: string;
  blockMetadataType?: "FIXED_LENGTH" | "VARIABLE_LENGTH";
  auth?: Authenticator;
  httpJson?: GatewayParts["httpJson"];
}

export interface TestGateway extends RunningGateway {
  store: NodeFileSnapshotStore;
}

/** The embedded store on `dataDir` behind a loopback gateway. */
export async function startTestGateway(
  options: TestGatewayOptions,
): Promise<TestGateway> {
  const store = new NodeFileSnapshotStore({
    dataDir: options.dataDir,
    blockMetadataType: options.blockMetadataType === "VARIABLE_LENGTH"
      ? VARIABLE_LENGTH
      : FIXED_LENGTH,
  });
  const running = await startLoopbackGateway({
    backend: store,
    auth: options.auth,
    httpJson: options.httpJson,
  }, options);
  return { ...running, store };
}
