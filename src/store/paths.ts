/**
 * The data directory's layout and the only way the store turns names into
 * file paths. Layout (users fill it by hand):
 *
 *     DATA_DIR/<namespace>/<volume>/<snapshot>.img   one raw volume image each
 *
 * A snapshot's id (what `base_snapshot_id` takes) is `<volume>/<snapshot>`.
 * Snapshot names are unique within a namespace, like VolumeSnapshots.
 *
 * Names come from callers, so two guards keep every read inside the data dir:
 * each name must match a strict pattern (no `/`, `\`, `..`, NUL, absolute
 * paths), and the real path of every file opened (symlinks resolved) must
 * still lie under the data dir's real path.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { isObjectName } from "../backend/validate.ts";
import type { StoreFiles } from "./files.ts";

export const IMAGE_SUFFIX = ".img";

/**
 * Namespace, volume and snapshot names: lowercase DNS-1123 subdomains
 * (what Kubernetes allows for namespaces, PVs and VolumeSnapshots; the
 * gateway's own rule). They start and end with a letter or digit and hold
 * no `/`, so `.`, `..` and paths can never match.
 */
export function isValidName(name: string): boolean {
  return isObjectName(name);
}

function invalid(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}

function notFound(message: string): ConnectError {
  return new ConnectError(message, Code.NotFound);
}

/** Quotes a caller-supplied string for an error message, cut short. */
function quote(value: string): string {
  return JSON.stringify(value.length > 80 ? value.slice(0, 80) + "…" : value);
}

export function requireName(field: string, value: string): string {
  if (!isValidName(value)) {
    throw invalid(
      `${field} ${
        quote(value)
      } is not a valid name (lowercase DNS-1123 subdomain)`,
    );
  }
  return value;
}

/** A snapshot id split into its parts. */
export interface SnapshotRef {
  volume: string;
  name: string;
}

export function formatSnapshotId(ref: SnapshotRef): string {
  return `${ref.volume}/${ref.name}`;
}

/** Parses `<volume>/<snapshot>`; anything else is InvalidArgument. */
export function parseSnapshotId(field: string, id: string): SnapshotRef {
  const parts = id.split("/");
  if (parts.length !== 2 || !isValidName(parts[0]) || !isValidName(parts[1])) {
    throw invalid(
      `${field} ${
        quote(id)
      } is not a snapshot id of the form <volume>/<snapshot>`,
    );
  }
  return { volume: parts[0], name: parts[1] };
}

function isInvalid(err: unknown): boolean {
  return err instanceof ConnectError && err.code === Code.InvalidArgument;
}

/** One image file found in the data dir, its real path checked. */
export interface ImageLocation extends SnapshotRef {
  namespace: string;
  /** Real path (symlinks resolved), inside the data dir. */
  path: string;
  size: number;
}

/** Resolves names to image files under one data directory. */
export class DataDir {
  #root: Promise<string> | undefined;

  constructor(readonly files: StoreFiles, readonly dir: string) {}

  /** The data dir's real path, resolved once. */
  root(): Promise<string> {
    this.#root ??= this.files.realPath(this.dir).then((real) => {
      if (real !== undefined) return real;
      throw notFound(`data directory ${quote(this.dir)} does not exist`);
    }).catch((err) => {
      this.#root = undefined; // the dir may be created later
      throw err;
    });
    return this.#root;
  }

  /**
   * Real path of `parts` under the root; InvalidArgument if symlinks lead
   * outside it, undefined if it does not exist.
   */
  async #resolve(
    what: string,
    ...parts: string[]
  ): Promise<string | undefined> {
    const root = await this.root();
    const real = await this.files.realPath(this.files.join(root, ...parts));
    if (real === undefined) return undefined;
    if (real !== root && !real.startsWith(root + this.files.separator)) {
      throw invalid(`${what} resolves outside the data directory`);
    }
    return real;
  }

  async #namespaceDir(namespace: string): Promise<string> {
    requireName("namespace", namespace);
    const dir = await this.#resolve(`namespace ${quote(namespace)}`, namespace);
    if (dir === undefined || !(await this.files.stat(dir)).isDirectory) {
      throw notFound(
        `namespace ${quote(namespace)} not found in the data directory`,
      );
    }
    return dir;
  }

  /** Volume directory names of a namespace (valid names only), sorted. */
  async #volumes(namespace: string): Promise<string[]> {
    const dir = await this.#namespaceDir(namespace);
    const entries = await this.files.readDir(dir) ?? [];
    return entries.filter(isValidName).sort();
  }

  /** The image of one snapshot id, or undefined if there is none. */
  async #image(
    namespace: string,
    ref: SnapshotRef,
  ): Promise<ImageLocation | undefined> {
    const id = formatSnapshotId(ref);
    const path = await this.#resolve(
      `snapshot ${quote(id)}`,
      namespace,
      ref.volume,
      ref.name + IMAGE_SUFFIX,
    );
    if (path === undefined) return undefined;
    const info = await this.files.stat(path);
    if (!info.isFile) return undefined;
    return { namespace, ...ref, path, size: info.size };
  }

  /** The image of `<volume>/<snapshot>` in a namespace; NotFound if absent. */
  async byId(
    namespace: string,
    field: string,
    id: string,
  ): Promise<ImageLocation> {
    const ref = parseSnapshotId(field, id);
    await this.#namespaceDir(namespace);
    const found = await this.#image(namespace, ref);
    if (!found) {
      throw notFound(
        `snapshot ${quote(id)} not found in namespace ${quote(namespace)}`,
      );
    }
    return found;
  }

  /** A snapshot by name, searched across the namespace's volumes. */
  async byName(
    namespace: string,
    field: string,
    name: string,
  ): Promise<ImageLocation> {
    requireName(field, name);
    const hits: ImageLocation[] = [];
    for (const volume of await this.#volumes(namespace)) {
      const found = await this.#image(namespace, { volume, name });
      if (found) hits.push(found);
    }
    if (hits.length === 0) {
      throw notFound(
        `snapshot ${quote(name)} not found in namespace ${quote(namespace)}`,
      );
    }
    if (hits.length > 1) {
      throw new ConnectError(
        `snapshot name ${quote(name)} is ambiguous in namespace ${
          quote(namespace)
        }: ` +
          `found ${hits.map((h) => formatSnapshotId(h)).join(" and ")}; ` +
          `snapshot names must be unique within a namespace`,
        Code.FailedPrecondition,
      );
    }
    return hits[0];
  }

  /**
   * Every image of a namespace, sorted by volume then name. Entries with
   * invalid names, non-files and symlinks leading outside are left out.
   */
  async list(namespace: string): Promise<ImageLocation[]> {
    const out: ImageLocation[] = [];
    for (const volume of await this.#volumes(namespace)) {
      let entries: string[] | undefined;
      try {
        const dir = await this.#resolve(
          `volume ${quote(volume)}`,
          namespace,
          volume,
        );
        if (dir === undefined) continue;
        // Undefined for a file rather than a volume directory, or one gone.
        entries = await this.files.readDir(dir);
      } catch (err) {
        // Leading outside the data dir.
        if (isInvalid(err)) continue;
        throw err;
      }
      if (entries === undefined) continue;
      const names = entries
        .filter((e) => e.endsWith(IMAGE_SUFFIX))
        .map((e) => e.slice(0, -IMAGE_SUFFIX.length))
        .filter(isValidName)
        .sort();
      for (const name of names) {
        try {
          const found = await this.#image(namespace, { volume, name });
          if (found) out.push(found);
        } catch (err) {
          if (!isInvalid(err)) throw err;
        }
      }
    }
    return out;
  }
}
