/**
 * The files the composition root reads at startup (TLS key pairs, a CA
 * bundle, the pod's ServiceAccount token), read the Deno way.
 */
export function readTextFile(path: string): Promise<string> {
  return Deno.readTextFile(path);
}

/** Undefined when the file is not there (not in a pod, say). */
export function readTextFileIfPresent(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
}
