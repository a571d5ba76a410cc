/** The client's deadline, from `connect-timeout-ms` or `grpc-timeout`. */
import { Code, ConnectError } from "@connectrpc/connect";
import { parseTimeout } from "@connectrpc/connect/protocol-grpc";
import type { BinaryProtocol } from "./content-type.ts";

/** The client's deadline in ms, if it set one. */
export function timeoutOf(
  protocol: BinaryProtocol,
  headers: Headers,
): number | undefined {
  if (protocol === "connect") {
    const v = headers.get("connect-timeout-ms");
    if (v === null) return undefined;
    const n = Number(v);
    if (!/^\d{1,10}$/.test(v)) {
      throw new ConnectError(
        `protocol error: invalid connect timeout value: ${v}`,
        Code.InvalidArgument,
      );
    }
    return n;
  }
  const parsed = parseTimeout(
    headers.get("grpc-timeout"),
    Number.MAX_SAFE_INTEGER,
  );
  if (parsed.error) throw parsed.error;
  return parsed.timeoutMs;
}
