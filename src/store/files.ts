/**
 * The file system as the embedded store uses it: the store itself touches no
 * runtime, and `src/adapter/node-fs/` implements this with node:fs. Missing
 * entries are answers (undefined, FileNotFoundError), not runtime-specific
 * error codes.
 */

/** What is at a path. */
export interface FileInfo {
  isFile: boolean;
  isDirectory: boolean;
  size: number;
}

/** An open file for positional reads. */
export interface ReadableFile {
  /** Its size when opened. */
  readonly size: number;
  /** Reads up to `length` bytes into `buf[offset…]` from `position`; 0 at the end. */
  read(
    buf: Uint8Array,
    offset: number,
    length: number,
    position: number,
  ): Promise<number>;
  close(): Promise<void>;
}

export interface StoreFiles {
  /** Joins path segments the platform's way. */
  join(...parts: string[]): string;
  /** The platform's path separator. */
  readonly separator: string;
  /** The real path (symlinks resolved); undefined when nothing is there. */
  realPath(path: string): Promise<string | undefined>;
  /** Entry names of a directory; undefined when it is not there. */
  readDir(path: string): Promise<string[] | undefined>;
  stat(path: string): Promise<FileInfo>;
  /** Throws FileNotFoundError when the file is gone. */
  openRead(path: string): Promise<ReadableFile>;
  /** Creates a directory and its parents. */
  makeDir(path: string): Promise<void>;
  /**
   * Writes a sparse file of `size` bytes with `blocks` (position, bytes) in
   * it: to a temporary file renamed into place when complete.
   */
  writeSparse(
    path: string,
    size: number,
    blocks: Iterable<[number, Uint8Array]>,
  ): Promise<void>;
}

/** A file that was there a moment ago is gone. */
export class FileNotFoundError extends Error {
  override name = "FileNotFoundError";
}
