/** The one enveloped request message of a server stream. */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Compression } from "@connectrpc/connect/protocol";
import { FLAG_COMPRESSED } from "./compression.ts";

/** Reads the one enveloped request message, decompressing it if flagged. */
export async function requestMessage(
  body: Uint8Array,
  compression: Compression | null,
  readMaxBytes: number,
): Promise<Uint8Array> {
  if (body.length < 5) {
    throw new ConnectError(
      "protocol error: missing request message",
      Code.InvalidArgument,
    );
  }
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const flags = body[0], length = view.getUint32(1);
  if (body.length !== 5 + length) {
    throw new ConnectError(
      "protocol error: expected exactly one request message",
      Code.InvalidArgument,
    );
  }
  const data = body.subarray(5);
  if ((flags & FLAG_COMPRESSED) === 0) return data;
  if (!compression) {
    throw new ConnectError(
      "protocol error: received compressed message without an encoding",
      Code.Internal,
    );
  }
  return await compression.decompress(data, readMaxBytes);
}
