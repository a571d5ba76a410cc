/**
 * How an edge tier is configured: the bundle from its `env` (Workers
 * bindings or a host's process environment), the Deno server from
 * `--backend connect`. Refusals name what to fix.
 */
import { deepStrictEqual, equal, throws } from "node:assert/strict";
import { EdgeConfigError, edgeConfigFromEnv } from "../src/server/edge.ts";
import { ConfigError, parseConfig } from "../src/config.ts";

Deno.test("edge env: the upstream URL is required; the rest has defaults", () => {
  deepStrictEqual(
    edgeConfigFromEnv({ CBT_GATEWAY_UPSTREAM_URL: "https://gw.internal:8443" }),
    {
      upstreamUrl: "https://gw.internal:8443",
      corsOrigins: [],
      readMaxBytes: 64 * 1024,
      accessLog: false,
    },
  );
  // workerd's fromEnvironment binding is null for an unset variable.
  deepStrictEqual(
    edgeConfigFromEnv({
      CBT_GATEWAY_UPSTREAM_URL: "http://10.0.0.7:8080/",
      CBT_GATEWAY_CORS_ORIGIN: " https://a.example,https://b.example ,",
      CBT_GATEWAY_READ_MAX_BYTES: "4096",
      CBT_GATEWAY_ACCESS_LOG: "on",
      CBT_GATEWAY_TICKET_SECRET: null,
    }),
    {
      upstreamUrl: "http://10.0.0.7:8080/",
      corsOrigins: ["https://a.example", "https://b.example"],
      readMaxBytes: 4096,
      accessLog: true,
    },
  );
  for (
    const [env, pattern] of [
      [{}, /CBT_GATEWAY_UPSTREAM_URL is required/],
      [{ CBT_GATEWAY_UPSTREAM_URL: null }, /is required/],
      [{ CBT_GATEWAY_UPSTREAM_URL: "gw.internal:8080" }, /http\(s\)/],
      [{ CBT_GATEWAY_UPSTREAM_URL: "http://gw/prefix" }, /http\(s\)/],
      [
        {
          CBT_GATEWAY_UPSTREAM_URL: "http://gw",
          CBT_GATEWAY_READ_MAX_BYTES: "-1",
        },
        /READ_MAX_BYTES/,
      ],
      [
        { CBT_GATEWAY_UPSTREAM_URL: "http://gw", CBT_GATEWAY_ACCESS_LOG: "1" },
        /ACCESS_LOG/,
      ],
    ] as const
  ) {
    throws(
      () => edgeConfigFromEnv(env),
      (e: unknown) => e instanceof EdgeConfigError && pattern.test(e.message),
      JSON.stringify(env),
    );
  }
});

Deno.test("--backend connect: needs an upstream URL, forwards callers' tokens by default", () => {
  const c = parseConfig(
    ["--backend", "connect", "--upstream-url", "http://gw.internal:8080"],
    {},
  );
  equal(c.auth, "forward");
  equal(c.upstreamUrl, "http://gw.internal:8080");
  // Not an open gateway: the upstream checks every caller.
  equal(
    parseConfig(
      [
        "--backend",
        "connect",
        "--upstream-url",
        "http://gw:8080",
        "--host",
        "0.0.0.0",
      ],
      {},
    ).auth,
    "forward",
  );
  for (
    const [args, pattern] of [
      [["--backend", "connect"], /--backend connect needs --upstream-url/],
      [
        ["--backend", "connect", "--upstream-url", "gw:8080"],
        /--upstream-url must be/,
      ],
      [["--auth", "forward"], /--auth forward .* needs --backend connect/],
    ] as const
  ) {
    throws(
      () => parseConfig([...args], {}),
      (e: unknown) => e instanceof ConfigError && pattern.test(e.message),
      args.join(" "),
    );
  }
});
