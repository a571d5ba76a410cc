/**
 * One HTTPS request to the fake Kubernetes API server (support/fake-kube),
 * trusting only its CA, with the answer decoded as a client would: JSON,
 * or Kubernetes protobuf (support/k8s-protobuf.ts).
 */
import { decodeK8sProtobuf, PROTOBUF_CONTENT_TYPE } from "./k8s-protobuf.ts";
import type { FakeKube } from "./fake-kube/server.ts";

/** The VolumeSnapshot API's path prefix. */
export const SNAP = "/apis/snapshot.storage.k8s.io/v1";

export interface Answer {
  status: number;
  contentType: string | null;
  bytes: Uint8Array;
  // deno-lint-ignore no-explicit-any
  json: any;
}

/** One HTTPS request to the fake; the token defaults to the admin's, `null` sends none. */
export async function callFakeKube(
  kube: FakeKube,
  method: string,
  path: string,
  opts: {
    token?: string | null;
    body?: unknown;
    contentType?: string;
    accept?: string;
    headers?: [string, string][];
  } = {},
): Promise<Answer> {
  const client = Deno.createHttpClient({ caCerts: [kube.caPem] });
  try {
    const headers = new Headers(opts.headers ?? []);
    const token = opts.token === undefined ? kube.adminToken : opts.token;
    if (token !== null) headers.set("Authorization", `Bearer ${token}`);
    if (opts.accept) headers.set("Accept", opts.accept);
    let body: BodyInit | undefined;
    if (opts.body instanceof Uint8Array) {
      body = opts.body as Uint8Array<ArrayBuffer>;
    } else if (opts.body !== undefined) body = JSON.stringify(opts.body);
    if (body !== undefined) {
      headers.set("Content-Type", opts.contentType ?? "application/json");
    }
    const r = await fetch(kube.url + path, { method, headers, body, client });
    const bytes = new Uint8Array(await r.arrayBuffer());
    const contentType = r.headers.get("content-type");
    let json;
    if (contentType === PROTOBUF_CONTENT_TYPE) json = decodeK8sProtobuf(bytes);
    else if (contentType === "application/json") {
      json = JSON.parse(new TextDecoder().decode(bytes));
    }
    return { status: r.status, contentType, bytes, json };
  } finally {
    client.close();
  }
}
