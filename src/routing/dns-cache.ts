/**
 * A bounded DNS answer cache with TTLs, shared by concurrent lookups of the same name. Pure: the
 * clock and the lookup are given. Failures are not cached (the next connection asks again).
 * @module
 */

/** Addresses for a name and how long they may be kept. */
export interface NameAnswer {
  readonly addresses: readonly string[];
  readonly ttlS: number;
}

/** Resolves a name (A, then AAAA when there is no A); rejects with a DialError when it cannot. */
export type NameLookup = (name: string) => Promise<NameAnswer>;

export interface DnsCacheOptions {
  /** Milliseconds, monotonic. */
  readonly now: () => number;
  /** Most names kept (default 4096); the oldest entry goes first. */
  readonly maxEntries?: number;
  /** TTLs are clamped into [minTtlS, maxTtlS] (default 5 s and 1 h). */
  readonly minTtlS?: number;
  readonly maxTtlS?: number;
}

export class DnsCache {
  readonly #o: Required<DnsCacheOptions>;
  readonly #entries = new Map<string, { addresses: readonly string[]; expiresAt: number }>();
  readonly #pending = new Map<string, Promise<readonly string[]>>();

  constructor(options: DnsCacheOptions) {
    this.#o = { maxEntries: 4096, minTtlS: 5, maxTtlS: 3600, ...options };
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The cached addresses for `name` if still fresh. */
  peek(name: string): readonly string[] | undefined {
    const key = name.toLowerCase();
    const e = this.#entries.get(key);
    if (!e) return undefined;
    if (e.expiresAt > this.#o.now()) return e.addresses;
    this.#entries.delete(key);
    return undefined;
  }

  /**
   * Cached addresses, or a lookup (one at a time per name) whose answer is kept for its TTL. The
   * lookup is shared by every caller waiting for the name, so it carries no caller's signal: it
   * ends by its own timeout.
   */
  resolve(name: string, lookup: NameLookup): Promise<readonly string[]> {
    const key = name.toLowerCase();
    const hit = this.peek(key);
    if (hit) return Promise.resolve(hit);
    let p = this.#pending.get(key);
    if (!p) {
      p = lookup(key).then(
        (a) => {
          this.#pending.delete(key);
          if (a.addresses.length === 0) return a.addresses;
          const ttl = Math.min(this.#o.maxTtlS, Math.max(this.#o.minTtlS, a.ttlS));
          this.#entries.delete(key);
          this.#entries.set(key, { addresses: a.addresses, expiresAt: this.#o.now() + ttl * 1000 });
          while (this.#entries.size > this.#o.maxEntries) {
            const oldest = this.#entries.keys().next().value as string;
            this.#entries.delete(oldest);
          }
          return a.addresses;
        },
        (err: unknown) => {
          this.#pending.delete(key);
          throw err;
        },
      );
      this.#pending.set(key, p);
    }
    return p;
  }
}
