/**
 * The HTTP/JSON routes in process: a Gateway over the demo memory backend
 * (the real sidecar's recorded blocks), Requests in, Responses out, no
 * server. Calls carry Alice's token unless they set their own.
 */
import assert from "node:assert/strict";
import { Gateway } from "../../src/gateway/gateway.ts";
import {
  createHttpJsonRoutes,
  type HttpJsonOptions,
} from "../../src/front/http-json/index.ts";
import { demoBackend } from "./memory-backend.ts";
import { demoAuth } from "./token-auth.ts";
import { parseNdjson, type Rec } from "./json-records.ts";

const ALICE = { authorization: "Bearer alice-token" };

/** The routes over a fresh demo backend; `call` sends a GET (or `init`) to a path. */
export function httpJsonInProcess(
  options: HttpJsonOptions = {},
  auth = demoAuth(),
) {
  const backend = demoBackend();
  const gateway = new Gateway(backend, auth);
  const route = createHttpJsonRoutes(gateway, options);
  const call = async (
    path: string,
    init: RequestInit = {},
  ): Promise<Response> => {
    const headers = new Headers(init.headers);
    if (!headers.has("authorization")) {
      headers.set("authorization", ALICE.authorization);
    }
    const response = await route(
      new Request(`http://gw${path}`, { ...init, headers }),
    );
    assert.ok(response, `route did not claim ${path}`);
    return response;
  };
  return { backend, gateway, route, call, auth };
}

/** An NDJSON response's records, after checking its status and content type. */
export async function ndjson(response: Response): Promise<Rec[]> {
  assert.equal(response.status, 200, await response.clone().text());
  assert.equal(response.headers.get("content-type"), "application/x-ndjson");
  return parseNdjson(await response.text());
}

/** A JSON error body's status, Connect code and message. */
export async function errorOf(
  response: Response,
): Promise<{ status: number; code: string; message: string }> {
  assert.equal(response.headers.get("content-type"), "application/json");
  const body = await response.json();
  assert.equal(typeof body.message, "string");
  return { status: response.status, code: body.code, message: body.message };
}

/** snap-2 allocated and delta, the demo's recorded streams. */
export const ALLOC2 = "/v1/namespaces/demo/snapshots/snap-2/allocated";
export const DELTA = "/v1/namespaces/demo/snapshots/snap-2/delta";
