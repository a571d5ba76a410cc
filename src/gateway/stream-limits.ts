/**
 * Admission for streams: how many may be open at once, in total and per
 * caller identity, and how long one may run. A stream over a count limit is
 * refused with ResourceExhausted before any upstream call, with a
 * `retry-after` hint (HTTP/JSON sends it as the Retry-After header); a
 * stream over the duration limit is ended with a resumable error.
 *
 * The counts live in this process: behind a load balancer each replica
 * enforces its own (the Deployment says how many there are).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { resumableError } from "./resumable-error.ts";

export interface StreamLimitsOptions {
  /** Streams open at once in this process; 0 = no limit. */
  maxStreams?: number;
  /** Streams open at once per caller identity; 0 = no limit. */
  maxStreamsPerCaller?: number;
  /** Longest a stream may run, in ms; 0 = no limit. */
  maxStreamDurationMs?: number;
}

/** Why a stream was limited: the label values of `cbt_gateway_limited_total`. */
export type LimitReason =
  | "streams_total"
  | "streams_per_caller"
  | "stream_duration";

export const LIMIT_REASONS: readonly LimitReason[] = [
  "streams_total",
  "streams_per_caller",
  "stream_duration",
];

/** Seconds a refused caller is told to wait: streams end all the time. */
export const RETRY_AFTER_SECONDS = 1;

/** The metadata key (and HTTP header) with the seconds to wait. */
export const RETRY_AFTER_KEY = "retry-after";

/** Which limit refused a call (a ConnectError subclass would not do: its instanceof matches any ConnectError). */
const REASON = Symbol("limit reason");

/** A refusal for a count limit: ResourceExhausted with a retry-after hint. */
function limitExceeded(message: string, reason: LimitReason): ConnectError {
  const e = new ConnectError(message, Code.ResourceExhausted);
  e.metadata.set(RETRY_AFTER_KEY, String(RETRY_AFTER_SECONDS));
  Object.defineProperty(e, REASON, { value: reason });
  return e;
}

/** The limit that refused a call, if that is what `e` is. */
export function limitReason(e: unknown): LimitReason | undefined {
  return e instanceof ConnectError
    ? (e as unknown as Record<symbol, LimitReason | undefined>)[REASON]
    : undefined;
}

/** One admitted stream: give its slot back exactly once when it ends. */
export interface StreamSlot {
  release(): void;
}

export class StreamLimits {
  readonly #maxStreams: number;
  readonly #maxPerCaller: number;
  readonly maxDurationMs: number;
  #open = 0;
  readonly #perCaller = new Map<string, number>();

  constructor(options: StreamLimitsOptions = {}) {
    this.#maxStreams = options.maxStreams ?? 0;
    this.#maxPerCaller = options.maxStreamsPerCaller ?? 0;
    this.maxDurationMs = options.maxStreamDurationMs ?? 0;
  }

  /** Streams open now (admitted and not yet released). */
  get open(): number {
    return this.#open;
  }

  /** Takes a slot for `caller`, or throws ResourceExhausted (limitReason() says which limit). */
  admit(caller: string): StreamSlot {
    if (this.#maxStreams > 0 && this.#open >= this.#maxStreams) {
      throw limitExceeded(
        `the gateway is serving its maximum of ${this.#maxStreams} streams; retry shortly`,
        "streams_total",
      );
    }
    const mine = this.#perCaller.get(caller) ?? 0;
    if (this.#maxPerCaller > 0 && mine >= this.#maxPerCaller) {
      throw limitExceeded(
        `this caller already has ${mine} streams open (the maximum); retry when one ends`,
        "streams_per_caller",
      );
    }
    this.#open++;
    this.#perCaller.set(caller, mine + 1);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.#open--;
        const left = (this.#perCaller.get(caller) ?? 1) - 1;
        if (left === 0) this.#perCaller.delete(caller);
        else this.#perCaller.set(caller, left);
      },
    };
  }

  /** The error a stream over the duration limit ends with. */
  durationExceeded(): ConnectError {
    return resumableError(
      `the stream reached the gateway's maximum duration of ${
        this.maxDurationMs / 1000
      } s; continue from the offset in cbt-next-offset (HTTP/JSON: nextOffset)`,
      Code.ResourceExhausted,
    );
  }
}
