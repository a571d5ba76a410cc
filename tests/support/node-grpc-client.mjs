// A native gRPC client as Node users run it: @connectrpc/connect-node under
// Node.js, with the service descriptor taken from `buf build` output (no
// generated code of ours). Reads {url, ca, descriptorSet, calls} as JSON on
// stdin; prints one result per call as JSON on stdout.
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
    for await (const m of client[method](call.request)) {
      out.messages.push(toJson(service.method[method].output, m, { registry }));
    }
  } catch (e) {
    const err = ConnectError.from(e);
    out.error = { code: err.code, message: err.rawMessage };
  }
  results.push(out);
}
process.stdout.write(JSON.stringify(results));
