/**
 * The binary protocols of a server stream, told apart by content type:
 * Connect, gRPC-Web and gRPC (and Connect JSON, which the frame relay
 * serves too).
 */
export type BinaryProtocol = "connect" | "grpc-web" | "grpc";

/** The binary protocol a request speaks, or undefined (JSON, unary, other). */
export function binaryProtocolOf(
  contentType: string | null,
): BinaryProtocol | undefined {
  const ct = mediaType(contentType);
  if (ct === "application/connect+proto") return "connect";
  if (ct === "application/grpc-web+proto" || ct === "application/grpc-web") {
    return "grpc-web";
  }
  if (ct === "application/grpc+proto" || ct === "application/grpc") {
    return "grpc";
  }
  return undefined;
}

export const CONNECT_JSON_CONTENT_TYPE = "application/connect+json";

/** Whether a request is a Connect JSON stream (the frame relay serves it too). */
export function isConnectJson(contentType: string | null): boolean {
  return mediaType(contentType) === CONNECT_JSON_CONTENT_TYPE;
}

export const RESPONSE_CONTENT_TYPE: Record<BinaryProtocol, string> = {
  connect: "application/connect+proto",
  "grpc-web": "application/grpc-web+proto",
  grpc: "application/grpc+proto",
};

function mediaType(contentType: string | null): string {
  return (contentType ?? "").toLowerCase().split(";")[0].trim();
}
