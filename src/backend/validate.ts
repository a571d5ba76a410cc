/**
 * The request fields' rules, in one place: the gateway applies them to every
 * call before any auth or upstream call, and the embedded store to what it
 * is asked directly. The upstream sidecar checks less (it never answers a
 * negative max_results while its driver spins, spec §9); the gateway
 * refuses early.
 */
import { Code, ConnectError } from "@connectrpc/connect";

/** Most tuples the gateway lets one message carry (keeps messages < 4 MiB). */
export const MAX_RESULTS_CAP = 65536;

/** Kubernetes namespace names are DNS-1123 labels. */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** Object names (VolumeSnapshots) are DNS-1123 subdomains. */
const DNS_SUBDOMAIN =
  /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Kubernetes object names: VolumeSnapshots, PVs, namespaces too. */
export function isObjectName(value: string): boolean {
  return DNS_SUBDOMAIN.test(value);
}

function invalid(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}

export function requireNamespace(value: string): string {
  if (value === "") throw invalid("namespace is required");
  if (!DNS_LABEL.test(value)) {
    throw invalid(
      `namespace ${
        JSON.stringify(value.slice(0, 80))
      } is not a valid Kubernetes namespace name`,
    );
  }
  return value;
}

export function requireSnapshotName(field: string, value: string): string {
  if (value === "") throw invalid(`${field} is required`);
  if (!DNS_SUBDOMAIN.test(value)) {
    throw invalid(
      `${field} ${
        JSON.stringify(value.slice(0, 80))
      } is not a valid Kubernetes object name`,
    );
  }
  return value;
}

function hasControlCharacter(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

/** CSI snapshot handles are opaque strings; refuse only what can't be one. */
export function requireSnapshotId(field: string, value: string): string {
  if (value === "") throw invalid(`${field} is required`);
  if (value.length > 1024 || hasControlCharacter(value)) {
    throw invalid(`${field} is not a valid snapshot handle`);
  }
  return value;
}

/**
 * `starting_offset` as a number. Negative → OutOfRange, as the driver says;
 * beyond 2^53 bytes (8 PiB) no volume reaches, so also OutOfRange.
 */
export function requireStartingOffset(value: bigint | number): number {
  const big = BigInt(value);
  if (big < 0n) {
    throw new ConnectError(
      `starting_offset ${big} is negative`,
      Code.OutOfRange,
    );
  }
  if (big > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new ConnectError(
      `starting_offset ${big} is beyond any volume (max ${Number.MAX_SAFE_INTEGER})`,
      Code.OutOfRange,
    );
  }
  return Number(big);
}

/** `max_results`: negative → InvalidArgument; large values are capped. */
export function requireMaxResults(value: number): number {
  if (!Number.isInteger(value) || value < 0) {
    throw invalid(`max_results ${value} is negative`);
  }
  return Math.min(value, MAX_RESULTS_CAP);
}
