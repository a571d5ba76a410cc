// A native gRPC client as Node users run it: @connectrpc/connect-node under
// Node.js, with the service descriptor taken from `buf build` output (no
// generated code of ours). Reads {url, ca, descriptorSet, calls} as JSON on
// stdin; prints one result per call as JSON on stdout. A call may carry
// `timeoutMs` (its deadline) and `stallMs` (a pause after its first message);
// `json: true` on the input uses the gRPC JSON codec.
import { readFileSync } from "node:fs";
import { ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createFileRegistry, fromBinary, toJson } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";

const input = JSON.parse(readFileSync(0, "utf8"));
const registry = createFileRegistry(
  fromBinary(FileDescriptorSetSchema, readFileSync(input.descriptorSet)),
);
const service = registry.getService("snapshotmetadata.SnapshotMetadata");
const transport = createGrpcTransport({
  baseUrl: input.url,
  useBinaryFormat: !input.json,
  nodeOptions: input.ca ? { ca: input.ca } : undefined,
});
const client = createClient(service, transport);
const results = [];
for (const call of input.calls) {
  const method = call.rpc === "GetMetadataAllocated"
    ? "getMetadataAllocated"
    : "getMetadataDelta";
  const out = { messages: [] };
  try {
    const options = call.timeoutMs ? { timeoutMs: call.timeoutMs } : {};
    for await (const m of client[method](call.request, options)) {
      out.messages.push(toJson(service.method[method].output, m, { registry }));
      if (call.stallMs && out.messages.length === 1) {
        await new Promise((r) => setTimeout(r, call.stallMs));
      }
    }
  } catch (e) {
    const err = ConnectError.from(e);
    out.error = {
      code: err.code,
      message: err.rawMessage,
      metadata: Object.fromEntries(err.metadata),
    };
  }
  results.push(out);
}
process.stdout.write(JSON.stringify(results));
