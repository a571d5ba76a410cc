/**
 * gzip for Connect and gRPC-Web through the Web-standard CompressionStream,
 * so the fetch front needs no Node or Deno API (connect-node's gzip uses zlib).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Compression } from "@connectrpc/connect/protocol";

async function pump(
  bytes: Uint8Array,
  transform: GenericTransformStream,
  readMaxBytes: number,
): Promise<Uint8Array<ArrayBuffer>> {
  const writer = transform.writable.getWriter();
  writer.write(bytes as Uint8Array<ArrayBuffer>).catch(() => {});
  writer.close().catch(() => {});
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = transform.readable.getReader();
  for (;;) {
    let result: ReadableStreamReadResult<Uint8Array>;
    try {
      result = await reader.read();
    } catch (e) {
      throw new ConnectError(`gzip: ${String(e)}`, Code.InvalidArgument);
    }
    if (result.done) break;
    total += result.value.byteLength;
    if (total > readMaxBytes) {
      await reader.cancel().catch(() => {});
      throw new ConnectError(
        `message is larger than configured readMaxBytes ${readMaxBytes} after decompression`,
        Code.ResourceExhausted,
      );
    }
    chunks.push(result.value);
  }
  const out = new Uint8Array(new ArrayBuffer(total));
  let pos = 0;
  for (const c of chunks) {
    out.set(c, pos);
    pos += c.byteLength;
  }
  return out;
}

export const webGzip: Compression = {
  name: "gzip",
  compress(bytes) {
    return pump(bytes, new CompressionStream("gzip"), Number.MAX_SAFE_INTEGER);
  },
  decompress(bytes, readMaxBytes) {
    return pump(bytes, new DecompressionStream("gzip"), readMaxBytes);
  },
};
