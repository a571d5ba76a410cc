/**
 * The embedded backend: snapshots are raw volume images in a data directory
 * (layout in `paths.ts`), compared block by block (`block-scan.ts`) and
 * streamed as encoded response messages (`message-packer.ts`).
 *
 * Streams are pull-based async generators: a chunk is read only when the
 * consumer wants the next message, and files are closed when the stream ends,
 * the consumer stops iterating, the call's signal aborts, or the store closes.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type {
  AllocatedQuery,
  Backend,
  CallOptions,
  DeltaQuery,
  EncodedMessageStream,
  SnapshotInfo,
} from "../backend/backend.ts";
import {
  requireMaxResults,
  requireStartingOffset,
} from "../backend/validate.ts";
import { FIXED_LENGTH, VARIABLE_LENGTH } from "../wire/metadata-message.ts";
import {
  BLOCK_SIZE,
  type BlockRuns,
  DEFAULT_CHUNK_SIZE,
  scanAllocated,
  scanChanged,
} from "./block-scan.ts";
import { FileNotFoundError, type StoreFiles } from "./files.ts";
import { canceled, ImageFile } from "./image-file.ts";
import { MessagePacker } from "./message-packer.ts";
import {
  DataDir,
  formatSnapshotId,
  type ImageLocation,
  parseSnapshotId,
} from "./paths.ts";

export interface FileSnapshotStoreOptions {
  /** The file system (src/adapter/node-fs/ has one). */
  files: StoreFiles;
  /** Root of the layout `<namespace>/<volume>/<snapshot>.img`. */
  dataDir: string;
  /** FIXED_LENGTH (1, the default) or VARIABLE_LENGTH (2). */
  blockMetadataType?: typeof FIXED_LENGTH | typeof VARIABLE_LENGTH;
  /** Bytes read per step; a positive multiple of 4096. Default 1 MiB. */
  chunkSize?: number;
}

/** The store's view of one image as a SnapshotInfo. */
function toInfo(loc: ImageLocation, blockMetadataType: number): SnapshotInfo {
  return {
    blockMetadataType,
    namespace: loc.namespace,
    name: loc.name,
    snapshotId: formatSnapshotId(loc),
    volume: loc.volume,
    volumeCapacityBytes: loc.size,
    readyToUse: true,
  };
}

/** Turns file-system failures into ConnectErrors; ConnectErrors pass through. */
function fileError(err: unknown, what: string): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof FileNotFoundError) {
    return new ConnectError(`${what} disappeared`, Code.NotFound);
  }
  return new ConnectError(
    `${what} could not be read: ${String((err as Error)?.message ?? err)}`,
    Code.Internal,
  );
}

export class FileSnapshotStore implements Backend {
  readonly name = "embedded";
  readonly blockMetadataType: typeof FIXED_LENGTH | typeof VARIABLE_LENGTH;
  readonly chunkSize: number;
  readonly #files: StoreFiles;
  readonly #dir: DataDir;
  /** Aborts every open stream when the store closes. */
  readonly #closed = new AbortController();
  /** Images open right now, so close() can wait for them. */
  readonly #open = new Set<ImageFile>();

  constructor(options: FileSnapshotStoreOptions) {
    this.#files = options.files;
    this.#dir = new DataDir(options.files, options.dataDir);
    this.blockMetadataType = options.blockMetadataType ?? FIXED_LENGTH;
    if (
      this.blockMetadataType !== FIXED_LENGTH &&
      this.blockMetadataType !== VARIABLE_LENGTH
    ) {
      throw new RangeError(
        `blockMetadataType must be FIXED_LENGTH (1) or VARIABLE_LENGTH (2)`,
      );
    }
    this.chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
    if (this.chunkSize <= 0 || this.chunkSize % BLOCK_SIZE !== 0) {
      throw new RangeError(
        `chunkSize must be a positive multiple of ${BLOCK_SIZE}`,
      );
    }
  }

  /** How many image files are open right now (for tests and metrics). */
  get openFiles(): number {
    return this.#open.size;
  }

  getMetadataAllocated(
    query: AllocatedQuery,
    options: CallOptions,
  ): EncodedMessageStream {
    return this.#stream(
      options,
      query.maxResults,
      query.startingOffset,
      async (open) => {
        const target = await this.#dir.byName(
          query.namespace,
          "snapshot_name",
          query.snapshotName,
        );
        const image = await open(target);
        return {
          capacity: image.size,
          scan: (from) => scanAllocated(image, from, this.chunkSize),
        };
      },
    );
  }

  getMetadataDelta(
    query: DeltaQuery,
    options: CallOptions,
  ): EncodedMessageStream {
    return this.#stream(
      options,
      query.maxResults,
      query.startingOffset,
      async (open) => {
        const baseRef = parseSnapshotId(
          "base_snapshot_id",
          query.baseSnapshotId,
        );
        const target = await this.#dir.byName(
          query.namespace,
          "target_snapshot_name",
          query.targetSnapshotName,
        );
        if (baseRef.volume !== target.volume) {
          const baseId = JSON.stringify(query.baseSnapshotId);
          const name = JSON.stringify(query.targetSnapshotName);
          throw new ConnectError(
            `base_snapshot_id ${baseId} is a snapshot of volume ${baseRef.volume}, ` +
              `but target ${name} is of volume ${target.volume}`,
            Code.InvalidArgument,
          );
        }
        const base = await this.#dir.byId(
          query.namespace,
          "base_snapshot_id",
          query.baseSnapshotId,
        );
        const targetImage = await open(target);
        const baseImage = await open(base);
        return {
          capacity: targetImage.size,
          scan: (from) =>
            scanChanged(baseImage, targetImage, from, this.chunkSize),
        };
      },
    );
  }

  /**
   * The shared stream: validate, resolve and open (through `open`, which
   * tracks every file), then scan from the block holding the starting
   * offset, yielding each message as soon as it is full.
   */
  async *#stream(
    options: CallOptions,
    maxResults: number,
    startingOffset: number,
    prepare: (
      open: (loc: ImageLocation) => Promise<ImageFile>,
    ) => Promise<
      {
        capacity: number;
        scan: (fromBlock: number) => AsyncGenerator<BlockRuns>;
      }
    >,
  ): AsyncGenerator<Uint8Array> {
    // The block holding startingOffset: the first tuple then ends after it,
    // even for unaligned offsets.
    const fromBlock = Math.floor(
      requireStartingOffset(startingOffset) / BLOCK_SIZE,
    );
    maxResults = requireMaxResults(maxResults);
    const signal = AbortSignal.any([options.signal, this.#closed.signal]);
    const opened: ImageFile[] = [];
    const open = async (loc: ImageLocation) => {
      const what = `snapshot ${formatSnapshotId(loc)}`;
      try {
        const image = await ImageFile.open(
          this.#files,
          loc.path,
          signal,
          (closed) => this.#open.delete(closed),
        );
        opened.push(image);
        if (!image.closed) this.#open.add(image);
        return image;
      } catch (err) {
        throw fileError(err, what);
      }
    };
    try {
      if (this.#closed.signal.aborted) {
        throw new ConnectError(
          "the snapshot store is closed",
          Code.Unavailable,
        );
      }
      if (signal.aborted) throw canceled();
      const { capacity, scan } = await prepare(open);
      if (startingOffset >= capacity) return; // past the end: OK, no messages
      const packer = new MessagePacker(
        this.blockMetadataType,
        capacity,
        maxResults,
      );
      for await (const runs of scan(fromBlock)) {
        packer.add(runs);
        for (const message of packer.take()) yield message;
      }
      packer.finish();
      for (const message of packer.take()) yield message;
    } catch (err) {
      throw fileError(err, "volume image");
    } finally {
      await Promise.all(opened.map((image) => image.close()));
    }
  }

  async getSnapshot(
    namespace: string,
    name: string,
    _options: CallOptions,
  ): Promise<SnapshotInfo> {
    const location = await this.#dir.byName(namespace, "snapshot_name", name);
    return toInfo(location, this.blockMetadataType);
  }

  async listSnapshots(
    namespace: string,
    _options: CallOptions,
  ): Promise<SnapshotInfo[]> {
    return (await this.#dir.list(namespace)).map((loc) =>
      toInfo(loc, this.blockMetadataType)
    );
  }

  /** Aborts open streams and waits until their files are closed. */
  async close(): Promise<void> {
    this.#closed.abort();
    await Promise.all([...this.#open].map((image) => image.close()));
  }
}
