/**
 * The embedded store's file system on node:fs (Deno, Node and Bun all run
 * it): positional reads into the store's own buffers, and ENOENT/ENOTDIR
 * turned into the store's "not there" answers.
 */
import {
  mkdir,
  open,
  readdir,
  realpath,
  rename,
  rm,
  stat,
} from "node:fs/promises";
import { join, sep } from "node:path";
import {
  FileNotFoundError,
  type ReadableFile,
  type StoreFiles,
} from "../../store/files.ts";

function isNoEntry(err: unknown): boolean {
  const code = (err as { code?: string })?.code;
  return code === "ENOENT" || code === "ENOTDIR";
}

export const nodeStoreFiles: StoreFiles = {
  join,
  separator: sep,

  async realPath(path) {
    try {
      return await realpath(path);
    } catch (err) {
      if (isNoEntry(err)) return undefined;
      throw err;
    }
  },

  async readDir(path) {
    try {
      return await readdir(path);
    } catch (err) {
      if (isNoEntry(err)) return undefined;
      throw err;
    }
  },

  async stat(path) {
    const info = await stat(path);
    return {
      isFile: info.isFile(),
      isDirectory: info.isDirectory(),
      size: info.size,
    };
  },

  async openRead(path): Promise<ReadableFile> {
    let handle;
    try {
      handle = await open(path, "r");
    } catch (err) {
      if (isNoEntry(err)) throw new FileNotFoundError(path);
      throw err;
    }
    try {
      const { size } = await handle.stat();
      return {
        size,
        read: async (buf, offset, length, position) =>
          (await handle.read(buf, offset, length, position)).bytesRead,
        close: () => handle.close(),
      };
    } catch (err) {
      await handle.close().catch(() => {});
      throw err;
    }
  },

  async makeDir(path) {
    await mkdir(path, { recursive: true });
  },

  async writeSparse(path, size, blocks) {
    const tmp = path + ".tmp";
    const file = await open(tmp, "w");
    try {
      await file.truncate(size);
      for (const [position, bytes] of blocks) {
        await file.write(bytes, 0, bytes.length, position);
      }
    } catch (err) {
      await file.close();
      await rm(tmp, { force: true });
      throw err;
    }
    await file.close();
    await rename(tmp, path);
  },
};
