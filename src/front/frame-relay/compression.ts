/**
 * Compression of a server stream, as the client's headers ask: which
 * encoding the request message has and the response may use (connect-es's
 * negotiation, with each protocol's header names), and response messages
 * compressed when worth it.
 */
import {
  type Compression,
  compressionNegotiate,
  encodeEnvelope,
} from "@connectrpc/connect/protocol";
import type { ConnectError } from "@connectrpc/connect";
import {
  headerStreamAcceptEncoding,
  headerStreamEncoding,
} from "@connectrpc/connect/protocol-connect";
import {
  headerAcceptEncoding,
  headerEncoding,
} from "@connectrpc/connect/protocol-grpc";
import type { BinaryProtocol } from "./content-type.ts";

/** Messages smaller than this are not worth compressing (connect-es's default). */
const COMPRESS_MIN_BYTES = 1024;
export const FLAG_COMPRESSED = 0b00000001;

/** Request and response compression, as the client's headers ask. */
export function negotiateCompression(
  protocol: BinaryProtocol,
  headers: Headers,
  available: Compression[],
): {
  request: Compression | null;
  response: Compression | null;
  /** Header that names the response encoding. */
  encodingHeader: string;
  error?: ConnectError;
} {
  const [encoding, accept] = protocol === "connect"
    ? [headerStreamEncoding, headerStreamAcceptEncoding]
    : [headerEncoding, headerAcceptEncoding];
  return {
    ...compressionNegotiate(
      available,
      headers.get(encoding),
      headers.get(accept),
      accept,
    ),
    encodingHeader: encoding,
  };
}

/** One response message as a frame, compressed when negotiated and worth it. */
export async function messageFrame(
  bytes: Uint8Array,
  compression: Compression | null,
): Promise<Uint8Array> {
  if (compression && bytes.length >= COMPRESS_MIN_BYTES) {
    return encodeEnvelope(FLAG_COMPRESSED, await compression.compress(bytes));
  }
  return encodeEnvelope(0, bytes);
}
