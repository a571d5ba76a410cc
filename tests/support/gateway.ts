/**
 * Starts real gateways for tests: the embedded store on a temp data dir,
 * both ports on ephemeral loopback ports, optional TLS.
 */
import { NodeFileSnapshotStore } from "../../src/adapter/node-fs/file-store.ts";
import { type RunningGateway, startGateway } from "../../src/server/start.ts";
import type { Authenticator } from "../../src/auth/authenticator.ts";
import {
  FIXED_LENGTH,
  VARIABLE_LENGTH,
} from "../../src/wire/metadata-message.ts";

export interface TestGatewayOptions {
  dataDir: string;
  blockMetadataType?: "FIXED_LENGTH" | "VARIABLE_LENGTH";
  tls?: { certPath: string; keyPath: string };
  auth?: Authenticator;
  corsOrigins?: string[];
}

export interface TestGateway extends RunningGateway {
  store: NodeFileSnapshotStore;
}

export async function startTestGateway(
  options: TestGatewayOptions,
): Promise<TestGateway> {
  const store = new NodeFileSnapshotStore({
    dataDir: options.dataDir,
    blockMetadataType: options.blockMetadataType === "VARIABLE_LENGTH"
      ? VARIABLE_LENGTH
      : FIXED_LENGTH,
  });
  const running = await startGateway({
    host: "127.0.0.1",
    port: 0,
    grpcPort: 0,
    corsOrigins: options.corsOrigins ?? [],
    tlsCert: options.tls?.certPath,
    tlsKey: options.tls?.keyPath,
  }, { backend: store, auth: options.auth });
  return { ...running, store };
}

/** Writes `<dataDir>/<namespace>/<volume>/<snapshot>.img`. */
export async function writeImage(
  dataDir: string,
  namespace: string,
  volume: string,
  snapshot: string,
  bytes: Uint8Array,
): Promise<void> {
  const dir = `${dataDir}/${namespace}/${volume}`;
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeFile(`${dir}/${snapshot}.img`, bytes);
}
