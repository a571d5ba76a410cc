/**
 * Config → backend, auth and routes → a running gateway, plus the banner the
 * CLI prints (URLs and a ready-to-paste call).
 */
import type { Config } from "../config.ts";
import { NoAuth } from "../auth/authenticator.ts";
import { DEMO, seedDemoIfEmpty } from "../store/demo-seed.ts";
import { FileSnapshotStore } from "../store/file-store.ts";
import { FIXED_LENGTH, VARIABLE_LENGTH } from "../wire/metadata-message.ts";
import { type RunningGateway, startGateway } from "./start.ts";

export interface StartedFromConfig extends RunningGateway {
  /** Lines for people: where it listens and how to call it. */
  banner: string[];
}

export async function startFromConfig(
  config: Config,
): Promise<StartedFromConfig> {
  if (config.backend !== "embedded") {
    throw new Error(`backend ${config.backend} is not available in this build`);
  }
  const seeded = await seedDemoIfEmpty(config.dataDir);
  const backend = new FileSnapshotStore({
    dataDir: config.dataDir,
    blockMetadataType: config.blockMetadataType === "VARIABLE_LENGTH"
      ? VARIABLE_LENGTH
      : FIXED_LENGTH,
  });
  const running = await startGateway(config, { backend, auth: new NoAuth() });
  const banner = [
    `cbt-gateway: ${backend.name} backend on ${config.dataDir}${
      seeded ? " (seeded the demo)" : ""
    }, ` +
    `${config.blockMetadataType}, auth ${config.auth}`,
    `  Connect, gRPC-Web, HTTP/JSON: ${running.httpUrl}`,
    `  native gRPC (HTTP/2):          ${running.grpcUrl}`,
    `Try:`,
    `  npx --yes @bufbuild/buf@1.75.0 curl --protocol connect --schema proto ` +
    `--data '{"namespace":"${DEMO.namespace}","snapshotName":"snap-2"}' ` +
    `${running.httpUrl}/snapshotmetadata.SnapshotMetadata/GetMetadataAllocated`,
  ];
  return { ...running, banner };
}
