# workerd (Cloudflare's Workers runtime, npm `workerd`) serving the edge
# bundle, configured from the environment like the other hosts:
#
#   deno task build:edge
#   CBT_GATEWAY_UPSTREAM_URL=http://in-cluster:8080 \
#     npx --yes workerd@1.20261117.1 serve src/adapter/workerd/edge.capnp \
#     --socket-addr http=127.0.0.1:8080
#
# The tests run exactly this file. For Cloudflare itself, see
# deploy/edge/wrangler.toml.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "edge", worker = .edgeWorker),
    # Outbound fetch to the in-cluster tier. workerd's default network
    # allows only public addresses; a private cluster ingress (or 127.0.0.1
    # in the tests) needs the others too.
    (name = "upstream-network", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [(name = "http", address = "127.0.0.1:8080", http = (), service = "edge")],
);

const edgeWorker :Workerd.Worker = (
  modules = [(name = "cbt-gateway-edge.js", esModule = embed "../../../dist/cbt-gateway-edge.js")],
  compatibilityDate = "2026-11-01",
  # request.signal aborts when the client goes away, so a cancel at the edge
  # reaches the in-cluster stream.
  compatibilityFlags = ["enable_request_signal"],
  bindings = [
    (name = "CBT_GATEWAY_UPSTREAM_URL", fromEnvironment = "CBT_GATEWAY_UPSTREAM_URL"),
    (name = "CBT_GATEWAY_CORS_ORIGIN", fromEnvironment = "CBT_GATEWAY_CORS_ORIGIN"),
    (name = "CBT_GATEWAY_READ_MAX_BYTES", fromEnvironment = "CBT_GATEWAY_READ_MAX_BYTES"),
    (name = "CBT_GATEWAY_ACCESS_LOG", fromEnvironment = "CBT_GATEWAY_ACCESS_LOG"),
  ],
  globalOutbound = "upstream-network",
);
