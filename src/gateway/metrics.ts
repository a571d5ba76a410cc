/**
 * The gateway's Prometheus metrics: a few counters, a gauge and a histogram,
 * rendered as text exposition format 0.0.4 for `GET /metrics`. No dependency.
 * Labels are only the RPC name, a status code and a resume reason, all from
 * small fixed sets: namespace and snapshot names belong in the access log, never here.
 */
import { RESUME_REASONS, type ResumeReason } from "../backend/backend.ts";

/** The streaming RPCs the gateway counts; their names are the label values. */
export type RpcName =
  | "GetMetadataAllocated"
  | "GetMetadataDelta"
  | "GetMetadataDeltaByName";

const RPCS: readonly RpcName[] = [
  "GetMetadataAllocated",
  "GetMetadataDelta",
  "GetMetadataDeltaByName",
];

export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

import { LIMIT_REASONS, type LimitReason } from "./stream-limits.ts";

/** Seconds; from a quick error to a whole large volume. */
const DURATION_BUCKETS = [0.005, 0.05, 0.5, 5, 30, 300];

type Labels = Record<string, string>;

function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(
    /\n/g,
    "\\n",
  );
}

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) =>
    `${k}="${escapeLabel(v)}"`
  );
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}

/** A counter or gauge family: one value per label set. */
class Family {
  readonly #values = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: "counter" | "gauge",
  ) {}

  add(labels: Labels, by: number): void {
    const key = labelText(labels);
    this.#values.set(key, (this.#values.get(key) ?? 0) + by);
  }

  render(out: string[]): void {
    out.push(
      `# HELP ${this.name} ${this.help}`,
      `# TYPE ${this.name} ${this.type}`,
    );
    for (const [labels, value] of this.#values) {
      out.push(`${this.name}${labels} ${value}`);
    }
  }
}

/** A histogram family with fixed buckets, one series per RPC. */
class Histogram {
  readonly #series = new Map<
    string,
    { labels: Labels; counts: number[]; sum: number; count: number }
  >();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: number[],
  ) {}

  observe(labels: Labels, value: number): void {
    const key = labelText(labels);
    let s = this.#series.get(key);
    if (!s) {
      s = { labels, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.#series.set(key, s);
    }
    for (let i = 0; i < this.buckets.length; i++) {
      if (value <= this.buckets[i]) s.counts[i]++;
    }
    s.sum += value;
    s.count++;
  }

  render(out: string[]): void {
    out.push(
      `# HELP ${this.name} ${this.help}`,
      `# TYPE ${this.name} histogram`,
    );
    for (const s of this.#series.values()) {
      this.buckets.forEach((le, i) =>
        out.push(
          `${this.name}_bucket${labelText({ ...s.labels, le: String(le) })} ${
            s.counts[i]
          }`,
        )
      );
      out.push(
        `${this.name}_bucket${
          labelText({ ...s.labels, le: "+Inf" })
        } ${s.count}`,
        `${this.name}_sum${labelText(s.labels)} ${s.sum}`,
        `${this.name}_count${labelText(s.labels)} ${s.count}`,
      );
    }
  }
}

/** What a finished stream reports to the metrics. */
export interface StreamTotals {
  tuples: number;
  coveredBytes: number;
}

export class GatewayMetrics {
  readonly #calls = new Family(
    "cbt_gateway_calls_total",
    "Streaming calls by final status (ok or a Connect code), refused ones included.",
    "counter",
  );
  readonly #refused = new Family(
    "cbt_gateway_refused_total",
    "Calls refused before a stream started (validation, authentication, authorization, lookup, limits).",
    "counter",
  );
  readonly #limited = new Family(
    "cbt_gateway_limited_total",
    "Streams refused (ResourceExhausted) or ended (resumably) by a gateway limit, by which limit.",
    "counter",
  );
  readonly #tuples = new Family(
    "cbt_gateway_tuples_total",
    "Block metadata tuples sent to callers.",
    "counter",
  );
  readonly #bytes = new Family(
    "cbt_gateway_bytes_covered_total",
    "Sum of size_bytes of the tuples sent to callers.",
    "counter",
  );
  readonly #active = new Family(
    "cbt_gateway_streams_active",
    "Streams started and not yet finished.",
    "gauge",
  );
  readonly #resumes = new Family(
    "cbt_gateway_resumes_total",
    "Upstream streams reopened where they broke, by reason (upstream_deadline, unavailable, service_changed).",
    "counter",
  );
  readonly #duration = new Histogram(
    "cbt_gateway_stream_duration_seconds",
    "Time from the call's arrival to the end of its stream.",
    DURATION_BUCKETS,
  );

  constructor() {
    // Per-RPC series exist from the start, so rates work from the first scrape.
    for (const rpc of RPCS) {
      this.#tuples.add({ rpc }, 0);
      this.#bytes.add({ rpc }, 0);
      this.#active.add({ rpc }, 0);
    }
    for (const reason of LIMIT_REASONS) this.#limited.add({ reason }, 0);
    for (const reason of RESUME_REASONS) this.#resumes.add({ reason }, 0);
  }

  /** A stream refused or ended by one of the gateway's limits. */
  limited(reason: LimitReason): void {
    this.#limited.add({ reason }, 1);
  }

  /** An upstream stream was reopened where it broke. */
  resumed(reason: ResumeReason): void {
    this.#resumes.add({ reason }, 1);
  }

  /** A call refused before its stream; `code` is a Connect code name. */
  refused(rpc: RpcName, code: string): void {
    this.#refused.add({ code }, 1);
    this.#calls.add({ rpc, code }, 1);
  }

  streamStarted(rpc: RpcName): void {
    this.#active.add({ rpc }, 1);
  }

  /** `code` is "ok" or a Connect code name. */
  streamFinished(
    rpc: RpcName,
    code: string,
    totals: StreamTotals,
    seconds: number,
  ): void {
    this.#active.add({ rpc }, -1);
    this.#calls.add({ rpc, code }, 1);
    this.#tuples.add({ rpc }, totals.tuples);
    this.#bytes.add({ rpc }, totals.coveredBytes);
    this.#duration.observe({ rpc }, seconds);
  }

  /** The exposition text, one sample per line. */
  render(): string {
    const out: string[] = [];
    for (
      const f of [
        this.#calls,
        this.#refused,
        this.#limited,
        this.#tuples,
        this.#bytes,
        this.#active,
        this.#resumes,
        this.#duration,
      ]
    ) {
      f.render(out);
    }
    return out.join("\n") + "\n";
  }
}
