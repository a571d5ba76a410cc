/** Flags and environment → Config, and the refusals people should see. */
import { deepStrictEqual, equal, throws } from "node:assert/strict";
import { ConfigError, isLoopback, parseConfig } from "../src/config.ts";

Deno.test("defaults: embedded store on loopback, no auth, ports 8080/8081", () => {
  const c = parseConfig([], {});
  deepStrictEqual(
    [
      c.backend,
      c.dataDir,
      c.host,
      c.port,
      c.grpcPort,
      c.blockMetadataType,
      c.auth,
    ],
    ["embedded", "data", "127.0.0.1", 8080, 8081, "FIXED_LENGTH", "none"],
  );
});

Deno.test("environment fills what flags don't; flags win", () => {
  const env = {
    CBT_GATEWAY_PORT: "9000",
    CBT_GATEWAY_GRPC_PORT: "9001",
    CBT_GATEWAY_DATA_DIR: "/srv/images",
    CBT_GATEWAY_CORS_ORIGIN: "https://a.example, https://b.example",
  };
  const c = parseConfig(["--port", "7000"], env);
  deepStrictEqual([c.port, c.grpcPort, c.dataDir], [7000, 9001, "/srv/images"]);
  deepStrictEqual(c.corsOrigins, ["https://a.example", "https://b.example"]);
});

Deno.test("repeatable flags and overrides", () => {
  const c = parseConfig([
    "--backend",
    "kubernetes",
    "--service-override",
    "hostpath.csi.k8s.io=hostpath-sms",
    "--service-override",
    "ebs.csi.aws.com=ebs",
    "--auth-audience",
    "cbt-gateway",
  ], {});
  equal(c.auth, "kubernetes", "kubernetes backend defaults to kubernetes auth");
  deepStrictEqual(c.serviceOverrides, {
    "hostpath.csi.k8s.io": "hostpath-sms",
    "ebs.csi.aws.com": "ebs",
  });
  deepStrictEqual(c.authAudiences, ["cbt-gateway"]);
});

Deno.test("an open gateway beyond loopback is refused; an authenticated one is not", () => {
  for (const host of ["0.0.0.0", "::", "10.0.0.5", "example.com"]) {
    throws(() => parseConfig(["--host", host], {}), ConfigError);
  }
  equal(
    parseConfig(["--host", "0.0.0.0", "--auth", "passthrough"], {}).host,
    "0.0.0.0",
  );
  for (const host of ["127.0.0.1", "127.1.2.3", "::1", "localhost"]) {
    equal(isLoopback(host), true, host);
  }
});

Deno.test("bad values are refused with the flag's name", () => {
  const cases: [string[], RegExp][] = [
    [["--port", "65536"], /--port/],
    [["--port", "-1"], /--port/],
    [["--grpc-port", "1e3"], /--grpc-port/],
    [["--auth", "magic"], /--auth/],
    [["--backend", "s3"], /--backend/],
    [["--service-account", "just-a-name"], /--service-account/],
    [["--service-override", "driver"], /--service-override/],
    [["--ticket-secret", "short"], /--ticket-secret/],
    [["--tls-key", "k.pem"], /--tls-cert and --tls-key/],
    [["positional"], /positional|Unexpected argument/i],
  ];
  for (const [args, pattern] of cases) {
    throws(
      () => parseConfig(args, {}),
      (e: unknown) => e instanceof ConfigError && pattern.test(e.message),
      args.join(" "),
    );
  }
});

Deno.test("limits and read-ahead: defaults, flags, environment, refusals", () => {
  const d = parseConfig([], {});
  deepStrictEqual(
    [
      d.readAheadBytes,
      d.maxStreams,
      d.maxStreamsPerCaller,
      d.maxStreamDurationSeconds,
      d.maxResults,
    ],
    [1048576, 1024, 0, 0, 65536],
  );
  const c = parseConfig([
    "--read-ahead-bytes",
    "262144",
    "--max-stream-duration=10m",
    "--max-results",
    "512",
  ], {
    CBT_GATEWAY_MAX_STREAMS: "64",
    CBT_GATEWAY_MAX_STREAMS_PER_CALLER: "4",
    CBT_GATEWAY_MAX_STREAM_DURATION: "1h",
  });
  deepStrictEqual(
    [
      c.readAheadBytes,
      c.maxStreams,
      c.maxStreamsPerCaller,
      c.maxStreamDurationSeconds,
      c.maxResults,
    ],
    [262144, 64, 4, 600, 512],
  );
  equal(
    parseConfig(["--max-stream-duration", "90"], {}).maxStreamDurationSeconds,
    90,
  );
  const cases: [string[], RegExp][] = [
    [["--read-ahead-bytes", "1000"], /--read-ahead-bytes .*at least 65536/],
    [["--read-ahead-bytes", "1MiB"], /--read-ahead-bytes/],
    [["--max-streams", "-1"], /--max-streams/],
    [["--max-streams-per-caller", "two"], /--max-streams-per-caller/],
    [["--max-stream-duration", "10 minutes"], /--max-stream-duration/],
    [["--max-results", "0"], /--max-results .*at least 1/],
  ];
  for (const [args, pattern] of cases) {
    throws(
      () => parseConfig(args, {}),
      (e: unknown) => e instanceof ConfigError && pattern.test(e.message),
      args.join(" "),
    );
  }
});

Deno.test("resume: on by default, its budget and attempts from flags or environment", () => {
  const d = parseConfig([], {});
  deepStrictEqual([d.resume, d.resumeBudgetMs, d.resumeAttempts], [
    true,
    30_000,
    5,
  ]);
  const c = parseConfig(["--resume-budget", "2.5"], {
    CBT_GATEWAY_RESUME: "off",
    CBT_GATEWAY_RESUME_ATTEMPTS: "9",
  });
  deepStrictEqual([c.resume, c.resumeBudgetMs, c.resumeAttempts], [
    false,
    2500,
    9,
  ]);
  throws(
    () => parseConfig(["--resume", "maybe"], {}),
    /--resume must be one of on, off/,
  );
  throws(
    () => parseConfig(["--resume-budget", "0"], {}),
    /--resume-budget must be a positive number/,
  );
  throws(
    () => parseConfig(["--resume-attempts", "1.5"], {}),
    /--resume-attempts must be a positive integer/,
  );
});
