/**
 * Flags and environment → one typed Config. Every flag has an environment
 * variable (CBT_GATEWAY_<FLAG_IN_CAPS>) so the same binary runs from a shell
 * or a Deployment; flags win over the environment.
 */

export type BlockMetadataTypeName = "FIXED_LENGTH" | "VARIABLE_LENGTH";
export type AuthMode = "none" | "kubernetes" | "passthrough";
export type BackendName = "embedded" | "kubernetes" | "grpc";

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
  /** grpc backend: the upstream's URL (http:// for h2c, https:// for TLS). */
  upstreamUrl?: string;
  /** grpc backend: PEM CA file for an https upstream. */
  upstreamCa?: string;
  help: boolean;
}

export const USAGE =
  `cbt-gateway: Kubernetes changed-block-tracking over Connect, gRPC-Web, gRPC and HTTP/JSON

Usage: deno task start [flags]

  --backend <embedded|kubernetes|grpc>
                                   where snapshots come from (default embedded); grpc
                                   relays to a static upstream speaking the same API
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
  --auth <none|kubernetes|passthrough>
                                   caller authentication (default: none on loopback,
                                   kubernetes with --backend kubernetes); a non-loopback
                                   --host refuses to start with --auth none
  --auth-audience <aud>            audience for caller TokenReviews (repeatable)
  --cors-origin <origin>           allow browser calls from this origin ("*" for any; repeatable)
  --kubeconfig <file>              kubernetes backend: out-of-cluster config (default in-cluster)
  --service-account <ns>/<name>    kubernetes backend: the gateway's ServiceAccount out of cluster
  --service-override <driver>=<sms>
                                   kubernetes backend: SnapshotMetadataService name for a driver
                                   whose resource is not named after it (repeatable)
  --upstream-url <url>             grpc backend: http://host:port (h2c) or https://host:port
  --upstream-ca <file>             grpc backend: PEM CA for an https upstream
  --ticket-secret <secret>         HMAC key (at least 32 bytes) for EventSource stream tickets;
                                   give every replica the same one (default: random per process)
  --help                           this text

Each flag can also be set as an environment variable: --grpc-port is CBT_GATEWAY_GRPC_PORT.
`;

export class ConfigError extends Error {
  override name = "ConfigError";
}

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
  "ticket-secret",
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
    ["embedded", "kubernetes", "grpc"] as const,
  );
  const upstreamUrl = get("upstream-url");
  if (backend === "grpc") {
    if (upstreamUrl === undefined) {
      throw new ConfigError("--backend grpc needs --upstream-url");
    }
    if (!/^https?:\/\/[^/]+\/?$/.test(upstreamUrl)) {
      throw new ConfigError(
        `--upstream-url must be http://host:port or https://host:port, got ${
          JSON.stringify(upstreamUrl)
        }`,
      );
    }
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
    get("auth") ?? (backend === "kubernetes" ? "kubernetes" : "none"),
    ["none", "kubernetes", "passthrough"] as const,
  );
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
    help: values.help === true,
  };
}
