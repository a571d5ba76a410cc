/**
 * Turns a checked run of the upstream's envelopes into response bytes for one
 * frame-relay call: as is for binary without compression (the common case:
 * no copy at all), else message by message — proto3 JSON written from the
 * wire bytes for Connect JSON, compressed when negotiated and worth it.
 */
import type { Compression } from "@connectrpc/connect/protocol";
import { concatBytes } from "../../wire/bytes.ts";
import { forEachEnvelope } from "../../wire/envelopes.ts";
import { MetadataJsonWriter } from "../../wire/metadata-json.ts";
import { messageFrame } from "./compression.ts";

export type Codec = "proto" | "json";

export type RunEncoder = (run: Uint8Array) => Uint8Array | Promise<Uint8Array>;

export function runEncoder(
  codec: Codec,
  compression: Compression | null,
): RunEncoder {
  if (codec === "proto" && !compression) return (run) => run;
  const json = new MetadataJsonWriter();
  if (!compression) {
    return (run) => {
      forEachEnvelope(run, (_, start, end) => {
        json.appendEnvelope(run, start, end);
      });
      return json.take();
    };
  }
  return async (run) => {
    const payloads: Uint8Array[] = [];
    forEachEnvelope(run, (_, start, end) => {
      if (codec === "proto") payloads.push(run.subarray(start, end));
      else {
        json.appendJson(run, start, end);
        payloads.push(json.take());
      }
    });
    const frames = await Promise.all(
      payloads.map((p) => messageFrame(p, compression)),
    );
    return frames.length === 1 ? frames[0] : concatBytes(frames);
  };
}
