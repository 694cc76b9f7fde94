/**
 * Replay defences. Pure data structures: time is passed in, never read.
 *
 * - {@link SaltFilter} (AEAD-2017): remembers recent salts in two generations of at most `capacity`
 *   each, as outline-ss-server's replay cache does. Bounded memory; a salt older than two generations
 *   may be forgotten, which is the documented trade-off of that edition.
 * - {@link SaltPool} (SIP022 §3.1.4): stores every salt for 60 s exactly (no false positives, as the spec
 *   demands); together with the ±30 s timestamp check this rejects every replay.
 * - {@link SlidingWindow} (SIP022 §3.2.4): per-session packet-id filter in the manner of WireGuard's
 *   (RFC 6479) anti-replay window.
 * @module
 */

function keyOf(salt: Uint8Array): string {
  return Buffer.from(salt.buffer, salt.byteOffset, salt.length).toString('latin1');
}

export class SaltFilter {
  readonly #capacity: number;
  #current = new Set<string>();
  #previous = new Set<string>();

  constructor(capacity = 20_000) {
    this.#capacity = capacity;
  }

  has(salt: Uint8Array): boolean {
    const k = keyOf(salt);
    return this.#current.has(k) || this.#previous.has(k);
  }

  /** Adds `salt`; returns false if it was already there (a replay). */
  add(salt: Uint8Array): boolean {
    const k = keyOf(salt);
    if (this.#current.has(k) || this.#previous.has(k)) return false;
    if (this.#current.size >= this.#capacity) {
      this.#previous = this.#current;
      this.#current = new Set();
    }
    this.#current.add(k);
    return true;
  }

  get size(): number {
    return this.#current.size + this.#previous.size;
  }
}

/** SIP022 §3.1.4: "Servers MUST store all incoming salts for 60 seconds." */
export const SALT_POOL_TTL_MS = 60_000;

export class SaltPool {
  readonly #ttlMs: number;
  readonly #expiry = new Map<string, number>();
  #nextSweep = 0;

  constructor(ttlMs = SALT_POOL_TTL_MS) {
    this.#ttlMs = ttlMs;
  }

  /** Adds `salt` seen at `nowMs`; returns false if it is still in the pool (a replay). */
  add(salt: Uint8Array, nowMs: number): boolean {
    this.#sweep(nowMs);
    const k = keyOf(salt);
    const exp = this.#expiry.get(k);
    if (exp !== undefined && exp > nowMs) return false;
    this.#expiry.set(k, nowMs + this.#ttlMs);
    return true;
  }

  has(salt: Uint8Array, nowMs: number): boolean {
    const exp = this.#expiry.get(keyOf(salt));
    return exp !== undefined && exp > nowMs;
  }

  get size(): number {
    return this.#expiry.size;
  }

  #sweep(nowMs: number): void {
    if (nowMs < this.#nextSweep) return;
    this.#nextSweep = nowMs + 1000;
    // Map iteration is in insertion order, and expiries are non-decreasing in insertion order when the
    // clock does not go backwards, so we can stop at the first live entry.
    for (const [k, exp] of this.#expiry) {
      if (exp > nowMs) break;
      this.#expiry.delete(k);
    }
  }
}

/** Window width in packets. */
export const SLIDING_WINDOW_SIZE = 2048;

export class SlidingWindow {
  #top = -1n;
  readonly #bits = new Uint32Array(SLIDING_WINDOW_SIZE / 32);

  /** True if `id` would be accepted (not a duplicate and not too old). Does not change state. */
  check(id: bigint): boolean {
    if (id > this.#top) return true;
    if (this.#top - id >= BigInt(SLIDING_WINDOW_SIZE)) return false;
    const bit = Number(id % BigInt(SLIDING_WINDOW_SIZE));
    return (this.#bits[bit >>> 5]! & (1 << (bit & 31))) === 0;
  }

  /** Marks `id` as seen; call only after the packet has been fully validated (SIP022 §3.2.4). */
  accept(id: bigint): boolean {
    if (!this.check(id)) return false;
    const W = BigInt(SLIDING_WINDOW_SIZE);
    if (id > this.#top) {
      const advance = id - this.#top;
      if (advance >= W) this.#bits.fill(0);
      else
        for (let i = this.#top + 1n; i <= id; i++) {
          const b = Number(i % W);
          this.#bits[b >>> 5]! &= ~(1 << (b & 31));
        }
      this.#top = id;
    }
    const bit = Number(id % W);
    this.#bits[bit >>> 5]! |= 1 << (bit & 31);
    return true;
  }
}
