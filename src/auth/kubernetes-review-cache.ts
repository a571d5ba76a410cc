/**
 * A small, bounded, time-limited memo for TokenReview and
 * SubjectAccessReview answers: a busy client opening many streams should
 * not cost two API calls each, and a revoked token or binding must stop
 * working within seconds. Oldest entries go first when full.
 */
export class ReviewCache<T> {
  readonly #entries = new Map<string, { value: T; expires: number }>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries: number,
    private readonly now: () => number = Date.now,
  ) {}

  get(key: string): T | undefined {
    const e = this.#entries.get(key);
    if (!e) return undefined;
    if (this.now() >= e.expires) {
      this.#entries.delete(key);
      return undefined;
    }
    return e.value;
  }

  set(key: string, value: T): void {
    this.#entries.delete(key);
    while (this.#entries.size >= this.maxEntries) {
      const oldest = this.#entries.keys().next().value as string;
      this.#entries.delete(oldest);
    }
    this.#entries.set(key, { value, expires: this.now() + this.ttlMs });
  }

  get size(): number {
    return this.#entries.size;
  }
}
