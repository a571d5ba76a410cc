/**
 * Flags and environment → one typed Config. Every flag has an environment
 * variable (CBT_GATEWAY_<FLAG_IN_CAPS>) so the same binary runs from a shell
 * or a Deployment; flags win over the environment.
 */

export type BlockMetadataTypeName = "FIXED_LENGTH" | "VARIABLE_LENGTH";
export type AuthMode = "none" | "kubernetes" | "passthrough" | "forward";
export type BackendName = "embedded" | "kubernetes" | "grpc" | "connect";

export interface Config {
  backend: BackendName;
  dataDir: string;
  host: string;
  port: number;
  grpcPort: number;
  blockMetadataType: BlockMetadataTypeName;
  auth: AuthMode;
  corsOrigins: string[];
  /** PEM file paths; with both, both ports serve TLS. */
  tlsCert?: string;
  tlsKey?: string;
  kubeconfig?: string;
  /** `<namespace>/<name>` of the gateway's ServiceAccount out of cluster. */
  serviceAccount?: string;
  /** Audiences accepted in caller TokenReviews (kubernetes auth). */
  authAudiences: string[];
  /** driver=SnapshotMetadataService name overrides. */
  serviceOverrides: Record<string, string>;
  /**
   * Key for EventSource stream tickets (≥ 32 bytes), shared by all replicas;
   * without it each process makes a random one.
   */
  ticketSecret?: string;
  /**
   * grpc backend: the upstream's URL (http:// for h2c, https:// for TLS);
   * connect backend: the upstream gateway's HTTP base URL.
   */
  upstreamUrl?: string;
  /** grpc backend: PEM CA file for an https upstream. */
  upstreamCa?: string;
  /** Per stream: most upstream bytes held beyond what the client has taken. */
  readAheadBytes: number;
  /** Streams open at once, in total and per caller; 0 = no limit. */
  maxStreams: number;
  maxStreamsPerCaller: number;
  /** Seconds a stream may run before the gateway ends it (resumably); 0 = none. */
  maxStreamDurationSeconds: number;
  /** Largest max_results passed on; larger requests are clamped to it. */
  maxResults: number;
  /** Reopen broken upstream streams where they broke (relay/resume.ts). */
  resume: boolean;
  /** Longest a broken stream may take to flow again before giving up. */
  resumeBudgetMs: number;
  /** Reopenings in a row that relay nothing before giving up. */
  resumeAttempts: number;
  /**
   * Longest deadline sent upstream as grpc-timeout, in seconds (a caller's
   * longer one is cut to it); 0: callers' deadlines go up unclamped.
   */
  upstreamMaxTimeoutS: number;
  help: boolean;
}

export const USAGE =
  `cbt-gateway: Kubernetes changed-block-tracking over Connect, gRPC-Web, gRPC and HTTP/JSON

Usage: deno task start [flags]

  --backend <embedded|kubernetes|grpc|connect>
                                   where snapshots come from (default embedded); grpc
                                   relays to a static upstream speaking the same API;
                                   connect relays to another cbt-gateway's HTTP port
                                   (an edge tier in front of an in-cluster gateway)
  --data-dir <dir>                 embedded store: DATA_DIR/<namespace>/<volume>/<snapshot>.img
                                   (default ./data; seeded with a demo when empty)
  --block-metadata-type <FIXED_LENGTH|VARIABLE_LENGTH>
                                   embedded store: one tuple per 4 KiB block, or merged extents
                                   (default FIXED_LENGTH)
  --host <addr>                    listen address (default 127.0.0.1)
  --port <n>                       Connect, gRPC-Web, HTTP/JSON (default 8080; 0 = any free port)
  --grpc-port <n>                  native gRPC over HTTP/2 (default 8081; 0 = any free port)
  --tls-cert <file> --tls-key <file>
                                   serve TLS on both ports (PEM)
  --auth <none|kubernetes|passthrough|forward>
                                   caller authentication (default: none on loopback,
                                   kubernetes with --backend kubernetes, forward with
                                   --backend connect: callers' bearer tokens go upstream
                                   and the upstream gateway decides); a non-loopback
                                   --host refuses to start with --auth none
  --auth-audience <aud>            audience for caller TokenReviews (repeatable)
  --cors-origin <origin>           allow browser calls from this origin ("*" for any; repeatable)
  --kubeconfig <file>              kubernetes backend: out-of-cluster config (default in-cluster)
  --service-account <ns>/<name>    kubernetes backend: the gateway's ServiceAccount out of cluster
  --service-override <driver>=<sms>
                                   kubernetes backend: SnapshotMetadataService name for a driver
                                   whose resource is not named after it (repeatable)
  --upstream-url <url>             grpc backend: http://host:port (h2c) or https://host:port;
                                   connect backend: the upstream gateway's http(s):// URL
  --upstream-ca <file>             grpc backend: PEM CA for an https upstream
  --resume <on|off>                grpc and kubernetes backends: when the upstream stream breaks
                                   (its stream cap, a reset, GOAWAY, a restart, a moved service),
                                   reopen it where it broke, invisibly to the client (default on)
  --resume-budget <seconds>        give up when a broken stream has not flowed again after this
                                   long (default 30); the error then carries cbt-next-offset
  --resume-attempts <n>            give up after this many reopenings in a row that relay
                                   nothing (default 5)
  --upstream-max-timeout <seconds> kubernetes and grpc backends: a caller's deadline goes
                                   upstream as grpc-timeout, cut to at most this (default
                                   3600; 0 = no limit); no caller deadline, none sent
  --ticket-secret <secret>         HMAC key (at least 32 bytes) for EventSource stream tickets;
                                   give every replica the same one (default: random per process)
  --read-ahead-bytes <n>           per stream, most upstream bytes read beyond what the client
                                   has taken (default 1048576 = 1 MiB; at least 65536)
  --max-streams <n>                streams open at once in total (default 1024; 0 = no limit)
  --max-streams-per-caller <n>     streams open at once per caller identity (default 0 = no limit)
  --max-stream-duration <time>     end a stream after this long with a resumable
                                   ResourceExhausted carrying the offset to go on from
                                   (e.g. 600, 600s, 10m, 1h; default 0 = no limit)
  --max-results <n>                clamp each request's max_results to this (default 65536)
  --help                           this text

Each flag can also be set as an environment variable: --grpc-port is CBT_GATEWAY_GRPC_PORT.
`;

export class ConfigError extends Error {
  override name = "ConfigError";
}

const DEFAULT_AUTH: Record<BackendName, AuthMode> = {
  embedded: "none",
  grpc: "none",
  kubernetes: "kubernetes",
  // An edge tier: the in-cluster gateway behind it checks every caller.
  connect: "forward",
};

const LOOPBACK = /^(127(\.\d{1,3}){3}|::1|\[::1\]|localhost)$/;

export function isLoopback(host: string): boolean {
  return LOOPBACK.test(host);
}

function envName(flag: string): string {
  return "CBT_GATEWAY_" + flag.replaceAll("-", "_").toUpperCase();
}

function parsePort(flag: string, value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 65535) {
    throw new ConfigError(
      `--${flag} must be a port number (0-65535), got ${JSON.stringify(value)}`,
    );
  }
  return n;
}

/** Per stream, most upstream bytes held for the client: 1 MiB. */
export const DEFAULT_READ_AHEAD_BYTES = 1024 * 1024;
/** Below this, HTTP/2 windows get too small to stream at any speed. */
const MIN_READ_AHEAD_BYTES = 64 * 1024;
/** The largest max_results the gateway passes on (keeps messages < 4 MiB). */
export const DEFAULT_MAX_RESULTS = 65536;

function parseCount(flag: string, value: string, min = 0): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min) {
    throw new ConfigError(
      `--${flag} must be a whole number${
        min > 0 ? ` of at least ${min}` : ""
      }, got ${JSON.stringify(value)}`,
    );
  }
  return n;
}

function positiveNumber(flag: string, value: string, integer: boolean): number {
  const n = Number(value);
  if (
    value.trim() === "" || !Number.isFinite(n) || n <= 0 ||
    (integer && !Number.isInteger(n))
  ) {
    throw new ConfigError(
      `--${flag} must be a positive ${integer ? "integer" : "number"}, got ${
        JSON.stringify(value)
      }`,
    );
  }
  return n;
}

/** `600`, `600s`, `10m` or `1h` → seconds. */
function parseSeconds(flag: string, value: string): number {
  const m = /^(\d+)(s|m|h)?$/.exec(value);
  if (!m) {
    throw new ConfigError(
      `--${flag} must be a duration like 600, 600s, 10m or 1h, got ${
        JSON.stringify(value)
      }`,
    );
  }
  return Number(m[1]) *
    { s: 1, m: 60, h: 3600 }[m[2] as "s" | "m" | "h" ?? "s"];
}

function oneOf<T extends string>(
  flag: string,
  value: string,
  allowed: readonly T[],
): T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new ConfigError(
      `--${flag} must be one of ${allowed.join(", ")}, got ${
        JSON.stringify(value)
      }`,
    );
  }
  return value as T;
}

const STRING_FLAGS = [
  "backend",
  "data-dir",
  "block-metadata-type",
  "host",
  "port",
  "grpc-port",
  "tls-cert",
  "tls-key",
  "auth",
  "kubeconfig",
  "service-account",
  "upstream-url",
  "upstream-ca",
  "upstream-max-timeout",
  "ticket-secret",
  "read-ahead-bytes",
  "max-streams",
  "max-streams-per-caller",
  "max-stream-duration",
  "max-results",
  "resume",
  "resume-budget",
  "resume-attempts",
] as const;
const LIST_FLAGS = [
  "cors-origin",
  "auth-audience",
  "service-override",
] as const;

type FlagValues = Record<string, string | string[] | boolean | undefined>;

/**
 * argv → flag values: `--flag value` or `--flag=value`, list flags
 * repeatable, `--help` alone; anything else is refused. (node:util's
 * parseArgs does the same, but would tie the config to a runtime.)
 */
function parseFlags(args: string[]): FlagValues {
  const strings = new Set<string>(STRING_FLAGS);
  const lists = new Set<string>(LIST_FLAGS);
  const values: FlagValues = {};
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const m = /^--([^=]+)(?:=(.*))?$/s.exec(arg);
    if (!m) {
      throw new ConfigError(
        `Unexpected argument '${arg}': this command takes no positional arguments`,
      );
    }
    const [, name, inline] = m;
    if (name === "help" && inline === undefined) {
      values.help = true;
      continue;
    }
    if (!strings.has(name) && !lists.has(name)) {
      throw new ConfigError(`Unknown option '--${name}'`);
    }
    let value = inline;
    if (value === undefined) {
      value = args[++i];
      if (value === undefined || value.startsWith("--")) {
        throw new ConfigError(`Option '--${name} <value>' argument missing`);
      }
    }
    if (lists.has(name)) {
      values[name] = [...(values[name] as string[] | undefined) ?? [], value];
    } else {
      values[name] = value;
    }
  }
  return values;
}

/** Parses argv and env; throws ConfigError with a message for people. */
export function parseConfig(
  args: string[],
  env: Record<string, string | undefined>,
): Config {
  const values = parseFlags(args);
  const get = (flag: (typeof STRING_FLAGS)[number]): string | undefined =>
    (values[flag] as string | undefined) ?? env[envName(flag)];
  const list = (flag: (typeof LIST_FLAGS)[number]): string[] =>
    (values[flag] as string[] | undefined) ??
      (env[envName(flag)]?.split(",").map((s) => s.trim()).filter(Boolean) ??
        []);

  const backend = oneOf(
    "backend",
    get("backend") ?? "embedded",
    ["embedded", "kubernetes", "grpc", "connect"] as const,
  );
  const upstreamUrl = get("upstream-url");
  if (backend === "grpc" || backend === "connect") {
    if (upstreamUrl === undefined) {
      throw new ConfigError(`--backend ${backend} needs --upstream-url`);
    }
    if (!/^https?:\/\/[^/]+\/?$/.test(upstreamUrl)) {
      throw new ConfigError(
        `--upstream-url must be http://host:port or https://host:port, got ${
          JSON.stringify(upstreamUrl)
        }`,
      );
    }
  }
  const maxTimeout = get("upstream-max-timeout") ?? "3600";
  if (!/^\d{1,9}$/.test(maxTimeout)) {
    throw new ConfigError(
      `--upstream-max-timeout must be whole seconds, got ${
        JSON.stringify(maxTimeout)
      }`,
    );
  }
  const ticketSecret = get("ticket-secret");
  if (
    ticketSecret !== undefined &&
    new TextEncoder().encode(ticketSecret).length < 32
  ) {
    throw new ConfigError("--ticket-secret must be at least 32 bytes");
  }
  const host = get("host") ?? "127.0.0.1";
  const auth = oneOf(
    "auth",
    get("auth") ?? DEFAULT_AUTH[backend],
    ["none", "kubernetes", "passthrough", "forward"] as const,
  );
  if (auth === "forward" && backend !== "connect" && backend !== "grpc") {
    throw new ConfigError(
      "--auth forward hands callers' tokens to an upstream gateway to check: it needs --backend connect or grpc",
    );
  }
  if (auth === "none" && !isLoopback(host)) {
    throw new ConfigError(
      `refusing to serve an open gateway on ${host}: listening beyond loopback needs --auth kubernetes or --auth passthrough`,
    );
  }
  const tlsCert = get("tls-cert"), tlsKey = get("tls-key");
  if ((tlsCert === undefined) !== (tlsKey === undefined)) {
    throw new ConfigError("--tls-cert and --tls-key go together");
  }
  const serviceAccount = get("service-account");
  if (
    serviceAccount !== undefined &&
    !/^[a-z0-9-]+\/[a-z0-9.-]+$/.test(serviceAccount)
  ) {
    throw new ConfigError(
      `--service-account must be <namespace>/<name>, got ${
        JSON.stringify(serviceAccount)
      }`,
    );
  }
  const serviceOverrides: Record<string, string> = {};
  for (const entry of list("service-override")) {
    const [driver, sms, ...rest] = entry.split("=");
    if (!driver || !sms || rest.length > 0) {
      throw new ConfigError(
        `--service-override must be <driver>=<service>, got ${
          JSON.stringify(entry)
        }`,
      );
    }
    serviceOverrides[driver] = sms;
  }
  return {
    backend,
    dataDir: get("data-dir") ?? "data",
    host,
    port: parsePort("port", get("port") ?? "8080"),
    grpcPort: parsePort("grpc-port", get("grpc-port") ?? "8081"),
    blockMetadataType: oneOf(
      "block-metadata-type",
      get("block-metadata-type") ?? "FIXED_LENGTH",
      ["FIXED_LENGTH", "VARIABLE_LENGTH"] as const,
    ),
    auth,
    corsOrigins: list("cors-origin"),
    tlsCert,
    tlsKey,
    kubeconfig: get("kubeconfig"),
    serviceAccount,
    authAudiences: list("auth-audience"),
    serviceOverrides,
    ticketSecret,
    upstreamUrl,
    upstreamCa: get("upstream-ca"),
    readAheadBytes: parseCount(
      "read-ahead-bytes",
      get("read-ahead-bytes") ?? String(DEFAULT_READ_AHEAD_BYTES),
      MIN_READ_AHEAD_BYTES,
    ),
    maxStreams: parseCount("max-streams", get("max-streams") ?? "1024"),
    maxStreamsPerCaller: parseCount(
      "max-streams-per-caller",
      get("max-streams-per-caller") ?? "0",
    ),
    maxStreamDurationSeconds: parseSeconds(
      "max-stream-duration",
      get("max-stream-duration") ?? "0",
    ),
    maxResults: parseCount(
      "max-results",
      get("max-results") ?? String(DEFAULT_MAX_RESULTS),
      1,
    ),
    resume: oneOf("resume", get("resume") ?? "on", ["on", "off"] as const) ===
      "on",
    resumeBudgetMs: positiveNumber(
      "resume-budget",
      get("resume-budget") ?? "30",
      false,
    ) * 1000,
    resumeAttempts: positiveNumber(
      "resume-attempts",
      get("resume-attempts") ?? "5",
      true,
    ),
    upstreamMaxTimeoutS: Number(maxTimeout),
    help: values.help === true,
  };
}
