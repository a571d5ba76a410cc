/**
 * How far a stream's upstream may run ahead of its client: the read-ahead
 * bound (`--read-ahead-bytes`, default 1 MiB) split between the places
 * upstream bytes wait inside the gateway.
 *
 * - The HTTP/2 stream window the gateway advertises upstream: the upstream
 *   may send this much that the gateway has not taken yet (a quarter).
 * - The queue of received, whole messages waiting for the client: reading
 *   pauses above a quarter, so no WINDOW_UPDATE goes out until the client
 *   takes them.
 * - The run the front is writing: at most what the queue held.
 *
 * So a stream holds at most about 3/4 of the bound plus a DATA frame, and a
 * stalled client stalls its upstream. The connection window is large on
 * purpose: it is shared by every stream on the connection, and a stalled
 * stream must not starve the others (memory stays bounded by the stream
 * windows).
 */
import type * as http2 from "node:http2";
import { DEFAULT_READ_AHEAD_BYTES } from "../../config.ts";

/** The connection-level window: HTTP/2's largest (2^31 - 1). */
export const CONNECTION_WINDOW_BYTES = 2 ** 31 - 1;

export interface UpstreamWindows {
  /** SETTINGS_INITIAL_WINDOW_SIZE the gateway sends upstream. */
  streamWindowBytes: number;
  /** Whole messages queued before reading from the stream pauses. */
  queueHighWaterBytes: number;
}

export function upstreamWindows(
  readAheadBytes = DEFAULT_READ_AHEAD_BYTES,
): UpstreamWindows {
  const quarter = Math.floor(readAheadBytes / 4);
  return { streamWindowBytes: quarter, queueHighWaterBytes: quarter };
}

/** node:http2 connect options that advertise the stream window. */
export function windowSettings(
  windows: UpstreamWindows,
): Pick<http2.ClientSessionOptions, "settings"> {
  return { settings: { initialWindowSize: windows.streamWindowBytes } };
}

/** Opens the connection window wide once the session is up. */
export function widenConnectionWindow(session: http2.ClientHttp2Session): void {
  const widen = () => {
    if (!session.destroyed) session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
  };
  if (session.connecting) session.once("connect", widen);
  else widen();
}
