/**
 * Stream tickets: how a browser's EventSource, which cannot send an
 * Authorization header, gets authorized without a long-lived token in the URL.
 *
 * A caller authenticated the normal way POSTs for a ticket; the ticket is an
 * HMAC-SHA256-signed claim "this caller may stream this snapshot until T",
 * valid for a minute, and goes in the stream URL as `?ticket=`. It carries
 * the caller's identity, never their token: at redemption the gateway still
 * runs the authorizer, so revoked access takes effect.
 *
 * Format: base64url(JSON claims) "." base64url(HMAC(secret, domain + claims)).
 * Replicas must share the secret; without one each process makes its own.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Caller } from "../../backend/backend.ts";

export const DEFAULT_TICKET_TTL_SECONDS = 60;

/** Separates these signatures from anything else signed with the same key. */
const DOMAIN = "cbt-gateway stream ticket v1\n";

interface Claims {
  /** namespace and snapshot the ticket is good for */
  ns: string;
  snap: string;
  /** expiry, Unix seconds */
  exp: number;
  sub: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

export interface IssuedTicket {
  ticket: string;
  expiresAt: string;
  expiresInSeconds: number;
}

export interface StreamTicketOptions {
  /** HMAC key, at least 32 bytes; random per process when absent. */
  secret?: Uint8Array;
  ttlSeconds?: number;
  /** Clock, for tests. */
  now?: () => number;
}

export class StreamTickets {
  readonly ttlSeconds: number;
  readonly #key: Promise<CryptoKey>;
  readonly #now: () => number;

  constructor(options: StreamTicketOptions = {}) {
    const secret = options.secret ?? crypto.getRandomValues(new Uint8Array(32));
    if (secret.byteLength < 32) {
      throw new RangeError("stream ticket secret must be at least 32 bytes");
    }
    this.ttlSeconds = options.ttlSeconds ?? DEFAULT_TICKET_TTL_SECONDS;
    this.#now = options.now ?? Date.now;
    this.#key = crypto.subtle.importKey(
      "raw",
      new Uint8Array(secret),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign", "verify"],
    );
  }

  async issue(
    caller: Caller,
    namespace: string,
    snapshot: string,
  ): Promise<IssuedTicket> {
    const exp = Math.floor(this.#now() / 1000) + this.ttlSeconds;
    const claims: Claims = {
      ns: namespace,
      snap: snapshot,
      exp,
      sub: caller.username,
    };
    if (caller.uid !== undefined) claims.uid = caller.uid;
    if (caller.groups !== undefined) claims.groups = caller.groups;
    if (caller.extra !== undefined) claims.extra = caller.extra;
    const payload = base64url(new TextEncoder().encode(JSON.stringify(claims)));
    const signature = await crypto.subtle.sign(
      "HMAC",
      await this.#key,
      signed(payload),
    );
    return {
      ticket: `${payload}.${base64url(new Uint8Array(signature))}`,
      expiresAt: new Date(exp * 1000).toISOString(),
      expiresInSeconds: this.ttlSeconds,
    };
  }

  /**
   * The caller a ticket stands for, if it is genuine, unexpired and for this
   * snapshot. Unauthenticated otherwise (PermissionDenied for another snapshot).
   */
  async redeem(
    ticket: string,
    namespace: string,
    snapshot: string,
  ): Promise<Caller> {
    const bad = (why: string) =>
      new ConnectError(`stream ticket ${why}`, Code.Unauthenticated);
    const match = /^([A-Za-z0-9_-]{1,8192})\.([A-Za-z0-9_-]{43})$/.exec(ticket);
    if (!match) throw bad("is malformed");
    const [, payload, signature] = match;
    const ok = await crypto.subtle.verify(
      "HMAC",
      await this.#key,
      fromBase64url(signature),
      signed(payload),
    );
    if (!ok) throw bad("has a bad signature");
    const claims = JSON.parse(
      new TextDecoder().decode(fromBase64url(payload)),
    ) as Claims;
    if (!(claims.exp * 1000 > this.#now())) {
      throw bad("has expired; get a new one");
    }
    if (claims.ns !== namespace || claims.snap !== snapshot) {
      throw new ConnectError(
        "stream ticket was issued for another snapshot",
        Code.PermissionDenied,
      );
    }
    return {
      username: claims.sub,
      uid: claims.uid,
      groups: claims.groups,
      extra: claims.extra,
    };
  }
}

function signed(payload: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(DOMAIN + payload);
}

function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(
    /=+$/,
    "",
  );
}

function fromBase64url(text: string): Uint8Array<ArrayBuffer> {
  const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
