/**
 * Subprocess for the connect-es pin guard in memory_test.ts: a plain
 * connect-es client (createClient + connect-web's Connect transport) reads
 * one long GetMetadataAllocated stream and samples its own memory as it goes.
 * connect-es 2.3.0's runStreamingCall keeps every received message alive
 * until the stream ends; 2.2.0 doesn't. Prints one JSON line:
 * `{messages, tuples, rss: [..], heap: [..]}` (bytes, one sample per 100
 * messages, after a GC).
 *
 *   deno run -A --v8-flags=--expose-gc connect-client-rss.ts <baseUrl> <snapshot> <maxResults>
 */
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { SnapshotMetadata } from "../../gen/snapshotmetadata/snapshotmetadata_pb.ts";

const [baseUrl, snapshotName, maxResults] = Deno.args;
const gc = (globalThis as { gc?: () => void }).gc;
const client = createClient(
  SnapshotMetadata,
  createConnectTransport({ baseUrl }),
);
const rss: number[] = [], heap: number[] = [];
let messages = 0, tuples = 0;
for await (
  const m of client.getMetadataAllocated({
    namespace: "ns",
    snapshotName,
    maxResults: Number(maxResults),
  })
) {
  messages++;
  tuples += m.blockMetadata.length;
  if (messages % 100 === 0) {
    gc?.();
    const u = Deno.memoryUsage();
    rss.push(u.rss);
    heap.push(u.heapUsed);
  }
}
console.log(JSON.stringify({ messages, tuples, rss, heap }));
