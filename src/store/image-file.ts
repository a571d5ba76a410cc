/**
 * One open volume image: positional reads into caller-owned buffers, and a
 * close that happens exactly once — when the stream ends, when the consumer
 * stops iterating, or as soon as the call's signal aborts (even while the
 * stream sits suspended waiting for its consumer).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { ReadableFile, StoreFiles } from "./files.ts";

export function canceled(): ConnectError {
  return new ConnectError(
    "the call was canceled; reading stopped",
    Code.Canceled,
  );
}

export class ImageFile {
  #closing: Promise<void> | undefined;
  #reading = false;
  #onAbort = () => {
    // A read in flight finishes first; read() then sees the abort and closes.
    if (!this.#reading) this.close().catch(() => {});
  };

  private constructor(
    private readonly file: ReadableFile,
    private readonly signal: AbortSignal,
    private readonly onClose: (image: ImageFile) => void,
  ) {
    signal.addEventListener("abort", this.#onAbort, { once: true });
  }

  /** `onClose` runs once the file is closed, whoever closed it. */
  static async open(
    files: StoreFiles,
    path: string,
    signal: AbortSignal,
    onClose: (image: ImageFile) => void = () => {},
  ): Promise<ImageFile> {
    if (signal.aborted) throw canceled();
    const file = await files.openRead(path);
    if (signal.aborted) {
      await file.close().catch(() => {});
      throw canceled();
    }
    return new ImageFile(file, signal, onClose);
  }

  /** The image's size when opened: the volume's capacity for this stream. */
  get size(): number {
    return this.file.size;
  }

  get closed(): boolean {
    return this.#closing !== undefined;
  }

  /**
   * Fills `buf[0, length)` from `position`. Fewer bytes than the size seen at
   * open means the image shrank under us: that stream can't be trusted.
   */
  async readExactly(
    buf: Uint8Array,
    length: number,
    position: number,
  ): Promise<void> {
    if (this.signal.aborted || this.closed) throw canceled();
    this.#reading = true;
    try {
      let done = 0;
      while (done < length) {
        const bytesRead = await this.file.read(
          buf,
          done,
          length - done,
          position + done,
        );
        if (bytesRead === 0) {
          throw new ConnectError(
            `volume image shrank while being read (expected ${this.size} bytes)`,
            Code.Aborted,
          );
        }
        done += bytesRead;
      }
    } finally {
      this.#reading = false;
    }
    if (this.signal.aborted) {
      await this.close();
      throw canceled();
    }
  }

  /** Idempotent; every caller gets the same promise. */
  close(): Promise<void> {
    this.signal.removeEventListener("abort", this.#onAbort);
    this.#closing ??= this.file.close().finally(() => this.onClose(this));
    return this.#closing;
  }
}
