/**
 * The embedded store on node:fs, as the CLI and the tests start it: the
 * store with this runtime's file system filled in.
 */
import {
  FileSnapshotStore,
  type FileSnapshotStoreOptions,
} from "../../store/file-store.ts";
import { seedDemoIfEmpty } from "../../store/demo-seed.ts";
import { nodeStoreFiles } from "./store-files.ts";

export class NodeFileSnapshotStore extends FileSnapshotStore {
  constructor(options: Omit<FileSnapshotStoreOptions, "files">) {
    super({ ...options, files: nodeStoreFiles });
  }
}

/** seedDemoIfEmpty on node:fs. */
export function seedNodeDemoIfEmpty(dataDir: string): Promise<boolean> {
  return seedDemoIfEmpty(nodeStoreFiles, dataDir);
}
