/**
 * The upstream native-gRPC transport (tests/support/grpc-transport.ts) over
 * time, against a gateway on a synthetic backend: cancelling a call (abort
 * or deadline) resets the stream and the server sees it; a 50 MB stream
 * read slowly keeps memory bounded, the server producing only about as
 * much as the reader takes.
 */
import { equal, ok, rejects } from "node:assert/strict";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { SnapshotMetadata } from "../gen/snapshotmetadata/snapshotmetadata_pb.ts";
import { createUpstreamGrpcTransport } from "./support/grpc-transport.ts";
import type {
  AllocatedQuery,
  Backend,
  CallOptions,
  SnapshotInfo,
} from "../src/backend/backend.ts";
import {
  encodeMetadataMessage,
  FIXED_LENGTH,
} from "../src/wire/metadata-message.ts";
import { startLoopbackGateway } from "./support/gateway.ts";
import { waitFor } from "./support/wait.ts";
import { drain } from "./support/collect.ts";
import { expectConnectError as expectError } from "./support/expect-connect-error.ts";

const NS = "p";

class SyntheticBackend implements Backend {
  readonly name = "synthetic";
  produced = 0;
  /** Encoded size of every message produced, in order. */
  readonly sizes: number[] = [];
  openStreams = 0;
  aborted = 0;
  constructor(readonly messages: number, readonly perMessage: number) {}

  get capacity(): number {
    return this.messages * this.perMessage * 4096;
  }

  async *getMetadataAllocated(
    _q: AllocatedQuery,
    o: CallOptions,
  ): AsyncGenerator<Uint8Array> {
    this.openStreams++;
    const onAbort = () => this.aborted++;
    o.signal.addEventListener("abort", onAbort);
    try {
      for (let m = 0; m < this.messages && !o.signal.aborted; m++) {
        const offsets = new Array<number>(this.perMessage);
        for (let i = 0; i < this.perMessage; i++) {
          offsets[i] = (m * this.perMessage + i) * 4096;
        }
        const message = encodeMetadataMessage({
          blockMetadataType: FIXED_LENGTH,
          volumeCapacityBytes: this.capacity,
          offsets,
          sizes: offsets.map(() => 4096),
        });
        this.sizes.push(message.byteLength);
        this.produced++;
        yield message;
      }
    } finally {
      o.signal.removeEventListener("abort", onAbort);
      this.openStreams--;
    }
  }

  getMetadataDelta(): AsyncGenerator<Uint8Array> {
    throw new ConnectError("not supported", Code.Unimplemented);
  }
  getSnapshot(): Promise<SnapshotInfo> {
    return Promise.reject(
      new ConnectError("not supported", Code.Unimplemented),
    );
  }
  listSnapshots(): Promise<SnapshotInfo[]> {
    return Promise.resolve([]);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

async function startSynthetic(messages: number, perMessage: number) {
  const backend = new SyntheticBackend(messages, perMessage);
  const gw = await startLoopbackGateway({ backend });
  return { backend, gw };
}

Deno.test("upstream gRPC transport: cancellation resets the stream, the server sees it", async () => {
  const { backend, gw } = await startSynthetic(100_000, 64);
  const transport = createUpstreamGrpcTransport({ baseUrl: gw.grpcUrl });
  try {
    const controller = new AbortController();
    let received = 0;
    await expectError(
      (async () => {
        const stream = createClient(SnapshotMetadata, transport)
          .getMetadataAllocated(
            { namespace: NS, snapshotName: "s", maxResults: 64 },
            { signal: controller.signal },
          );
        for await (const m of stream) {
          equal(Number(m.blockMetadata[0].byteOffset), received * 64 * 4096);
          if (++received === 3) controller.abort();
        }
      })(),
      Code.Canceled,
      /abort/i,
    );
    equal(received, 3);
    // The RST_STREAM reached the server: its call signal aborted and the
    // backend's stream ended long before its 100 000 messages.
    await waitFor(
      "the server to end the stream",
      () => backend.openStreams === 0,
    );
    equal(backend.aborted, 1);
    ok(backend.produced < backend.messages, `${backend.produced} produced`);
    // A deadline cancels the same way.
    await expectError(
      drain(
        createClient(SnapshotMetadata, transport).getMetadataAllocated(
          { namespace: NS, snapshotName: "s", maxResults: 64 },
          { timeoutMs: 300 },
        ),
      ),
      Code.DeadlineExceeded,
      /timed out/,
    );
    await waitFor(
      "the server to end the timed-out stream",
      () => backend.openStreams === 0,
    );
    equal(backend.aborted, 2);
    // connect-es never cancels a stream its reader merely stops reading
    // (its iterators have no return()); closing the transport ends them all.
    const abandoned = createClient(SnapshotMetadata, transport)
      .getMetadataAllocated({
        namespace: NS,
        snapshotName: "s",
        maxResults: 64,
      })[Symbol.asyncIterator]();
    equal(
      Number((await abandoned.next()).value?.blockMetadata[0].byteOffset),
      0,
    );
    transport.close();
    await rejects(
      drain({ [Symbol.asyncIterator]: () => abandoned }),
      ConnectError,
    );
    await waitFor(
      "the server to end the abandoned stream",
      () => backend.openStreams === 0,
    );
    equal(backend.aborted, 3);
  } finally {
    transport.close();
    await gw.close();
  }
});

Deno.test("upstream gRPC transport: a 50 MB stream and a slow reader keep memory bounded", async () => {
  const perMessage = 2048; // ~22 KB per message
  const messages = 2300; // ~51 MB in all
  const { backend, gw } = await startSynthetic(messages, perMessage);
  const transport = createUpstreamGrpcTransport({ baseUrl: gw.grpcUrl });
  try {
    let received = 0;
    let next = 0; // the block the next tuple must describe
    let leadBytes = -1;
    for await (
      const m of createClient(SnapshotMetadata, transport).getMetadataAllocated(
        {
          namespace: NS,
          snapshotName: "s",
          maxResults: perMessage,
        },
      )
    ) {
      equal(m.blockMetadata.length, perMessage);
      for (const b of m.blockMetadata) {
        if (
          Number(b.byteOffset) !== next * 4096 || Number(b.sizeBytes) !== 4096
        ) {
          throw new Error(`tuple ${next}: (${b.byteOffset}, ${b.sizeBytes})`);
        }
        next++;
      }
      received++;
      if (received === 5) {
        // Stall until the server can't get any further ahead.
        let before = -1;
        while (before !== backend.produced && backend.produced < messages) {
          before = backend.produced;
          await waitForNextProduction(backend, before);
        }
        leadBytes = sum(backend.sizes.slice(received));
      } else if (received % 8 === 0) {
        await new Promise((r) => setTimeout(r, 0)); // a slow reader
      }
    }
    equal(received, messages);
    equal(next, messages * perMessage);
    const total = sum(backend.sizes);
    ok(total > 50_000_000, `${total} bytes streamed`);
    // With flow control the server stalls a few MB ahead (HTTP/2 windows and
    // both sides' buffers); without it, it runs to the end of the 51 MB.
    ok(
      leadBytes >= 0 && leadBytes < 8_000_000,
      `server ran ${leadBytes} bytes ahead of a stalled reader`,
    );
  } finally {
    transport.close();
    await gw.close();
  }
});

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

/** Resolves when the backend produced past `count`, or after it stayed put a while (it is blocked). */
async function waitForNextProduction(
  backend: SyntheticBackend,
  count: number,
): Promise<void> {
  for (let i = 0; i < 20 && backend.produced === count; i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
}
