/**
 * Replay defences. Pure data structures: time (and the hash secret) are passed in, never read.
 *
 * - {@link RotatingSaltFilter} (AEAD-2017, TCP and UDP): a pair of Bloom filters, the current one and
 *   the previous one, each a fixed bit array. A salt is remembered for at least `windowMs`, or for
 *   at least `capacity` more salts, whichever comes first; memory is fixed whatever the load, and
 *   the false-positive rate (a fresh salt taken for a replay) is bounded by {@link bloomFalsePositiveRate}
 *   because no generation ever holds more than `capacity` salts. docs/probe-resistance.md gives the
 *   figures for the defaults.
 * - {@link SaltPool} (SIP022 §3.1.4): stores every salt exactly (no false positives, as the spec
 *   demands) until both the monotonic and the wall clock say 60 s have passed; with the ±30 s
 *   timestamp check this rejects every replay, even across a wall-clock step.
 * - {@link SlidingWindow} (SIP022 §3.2.4): per-session packet-id filter in the manner of WireGuard's
 *   (RFC 6479) anti-replay window.
 * @module
 */
import { createHash } from 'node:crypto';

function keyOf(salt: Uint8Array): string {
  return Buffer.from(salt.buffer, salt.byteOffset, salt.length).toString('latin1');
}

export interface RotatingSaltFilterOptions {
  /** A salt is remembered at least this long (unless `capacity` more salts arrive first). */
  windowMs?: number;
  /** Salts one generation holds before it rotates early; bounds the false-positive rate. */
  capacity?: number;
  /** Bits per generation: a power of two. Memory is two of these. */
  bits?: number;
  /** Bit probes per salt. */
  hashes?: number;
}

/** 10 minutes: how long an AEAD-2017 salt is remembered at least. */
export const REPLAY_WINDOW_MS = 10 * 60_000;
/** 10 minutes at 1,000 new salts per second. */
export const REPLAY_GENERATION_CAPACITY = 600_000;
/** 2^25 bits = 4 MiB per generation, 8 MiB per filter. */
export const REPLAY_GENERATION_BITS = 2 ** 25;
/** With 56 bits per salt, 20 probes sit near the optimum (ln 2 × m/n ≈ 38) at a fraction of the cost. */
export const REPLAY_HASHES = 20;

/**
 * The false-positive rate of one Bloom filter of `bits` bits and `hashes` probes holding `n` items:
 * (1 − e^(−k·n/m))^k. A query against the pair is at most the sum over both generations.
 */
export function bloomFalsePositiveRate(bits: number, hashes: number, n: number): number {
  return (1 - Math.exp((-hashes * n) / bits)) ** hashes;
}

interface Generation {
  bits: Uint32Array | null;
  count: number;
  startedAt: number;
}

/**
 * Remembers salts for a window stated in time, in fixed memory. Each probe is its own 32-bit word of
 * SHAKE256 over a secret and the salt, so that a sender cannot aim salts at chosen bits and the
 * probes are independent, as the false-positive formula assumes. (Double hashing, h1 + i·h2, would
 * be cheaper, but two salts that share both words modulo the array size collide on every probe.) Bit arrays are allocated when the first salt arrives, so an idle filter costs nothing.
 *
 * Guarantee: `has` (and `add`'s replay answer) is true for every salt added less than `windowMs`
 * earlier, as long as fewer than `capacity` salts were added after it. It is false for a fresh salt
 * except with probability at most 2 × {@link bloomFalsePositiveRate}(bits, hashes, capacity).
 */
export class RotatingSaltFilter {
  readonly windowMs: number;
  readonly capacity: number;
  readonly #bits: number;
  readonly #hashes: number;
  readonly #secret: Uint8Array;
  #current: Generation;
  #previous: Generation;
  readonly #probe: Uint32Array;

  constructor(secret: Uint8Array, options: RotatingSaltFilterOptions = {}) {
    this.windowMs = options.windowMs ?? REPLAY_WINDOW_MS;
    this.capacity = options.capacity ?? REPLAY_GENERATION_CAPACITY;
    this.#bits = options.bits ?? REPLAY_GENERATION_BITS;
    this.#hashes = options.hashes ?? REPLAY_HASHES;
    if (!Number.isInteger(Math.log2(this.#bits)) || this.#bits < 32)
      throw new RangeError('RotatingSaltFilter: bits must be a power of two ≥ 32');
    if (this.#hashes < 1 || this.capacity < 1 || this.windowMs <= 0)
      throw new RangeError('RotatingSaltFilter: hashes, capacity and windowMs must be positive');
    this.#secret = Uint8Array.from(secret);
    this.#probe = new Uint32Array(this.#hashes);
    this.#current = { bits: null, count: 0, startedAt: -Infinity };
    this.#previous = { bits: null, count: 0, startedAt: -Infinity };
  }

  /** Bytes of bit arrays this filter holds at most (both generations). */
  get maxBytes(): number {
    return 2 * (this.#bits / 8);
  }

  /** Bytes of bit arrays allocated now. */
  get allocatedBytes(): number {
    return (this.#current.bits?.byteLength ?? 0) + (this.#previous.bits?.byteLength ?? 0);
  }

  /** Salts in the current generation (for tests). */
  get currentCount(): number {
    return this.#current.count;
  }

  /** True if `salt` was (probably) added within the window. */
  has(salt: Uint8Array, nowMs: number): boolean {
    this.#age(nowMs);
    this.#hash(salt);
    return this.#test(this.#current) || this.#test(this.#previous);
  }

  /** Adds `salt` seen at `nowMs`; returns false if it was (probably) there already: a replay. */
  add(salt: Uint8Array, nowMs: number): boolean {
    this.#age(nowMs);
    this.#hash(salt);
    if (this.#test(this.#current) || this.#test(this.#previous)) return false;
    if (this.#current.count >= this.capacity) this.#rotate(nowMs);
    const g = this.#current;
    if (g.bits === null) {
      g.bits = new Uint32Array(this.#bits / 32);
      g.startedAt = nowMs;
    }
    for (const b of this.#probe) g.bits[b >>> 5]! |= 1 << (b & 31);
    g.count++;
    return true;
  }

  /** Rotates by time: a generation older than the window becomes the previous one. */
  #age(nowMs: number): void {
    const g = this.#current;
    if (g.bits === null || nowMs - g.startedAt < this.windowMs) return;
    // Two windows without a rotation: the previous generation is older than any guarantee too.
    if (nowMs - g.startedAt >= 2 * this.windowMs) {
      this.#rotate(nowMs);
      this.#rotate(nowMs);
    } else this.#rotate(nowMs);
  }

  #rotate(nowMs: number): void {
    const old = this.#previous;
    this.#previous = this.#current;
    old.bits?.fill(0);
    old.count = 0;
    old.startedAt = nowMs;
    this.#current = old;
  }

  #hash(salt: Uint8Array): void {
    const d = createHash('shake256', { outputLength: 4 * this.#hashes })
      .update(this.#secret)
      .update(salt)
      .digest();
    const mask = this.#bits - 1;
    for (let i = 0; i < this.#hashes; i++) this.#probe[i] = d.readUInt32LE(4 * i) & mask;
  }

  #test(g: Generation): boolean {
    if (g.bits === null || g.count === 0) return false;
    for (const b of this.#probe) if ((g.bits[b >>> 5]! & (1 << (b & 31))) === 0) return false;
    return true;
  }
}

/** SIP022 §3.1.4: "Servers MUST store all incoming salts for 60 seconds." */
export const SALT_POOL_TTL_MS = 60_000;

/**
 * SIP022's salt pool. The ±30 s timestamp check uses the wall clock, so a salt must outlive 60 s of
 * wall time; a monotonic clock cannot be stepped, so it must outlive 60 s of that too. A salt leaves
 * the pool only when both clocks agree its time is up: after a wall-clock step back, it stays until
 * the wall clock has passed its insertion time by 60 s again, so a replay passes neither check.
 */
export class SaltPool {
  readonly #ttlMs: number;
  readonly #entries = new Map<string, { wall: number; mono: number }>();
  #nextSweepMono = -Infinity;

  constructor(ttlMs = SALT_POOL_TTL_MS) {
    this.#ttlMs = ttlMs;
  }

  /** Adds `salt` seen at wall time `wallMs` and monotonic time `monoMs`; false if still pooled (a replay). */
  add(salt: Uint8Array, wallMs: number, monoMs: number): boolean {
    this.#sweep(wallMs, monoMs);
    const k = keyOf(salt);
    const e = this.#entries.get(k);
    if (e !== undefined && !this.#expired(e, wallMs, monoMs)) return false;
    this.#entries.delete(k);
    this.#entries.set(k, { wall: wallMs, mono: monoMs });
    return true;
  }

  has(salt: Uint8Array, wallMs: number, monoMs: number): boolean {
    const e = this.#entries.get(keyOf(salt));
    return e !== undefined && !this.#expired(e, wallMs, monoMs);
  }

  get size(): number {
    return this.#entries.size;
  }

  #expired(e: { wall: number; mono: number }, wallMs: number, monoMs: number): boolean {
    return monoMs - e.mono >= this.#ttlMs && wallMs - e.wall >= this.#ttlMs;
  }

  #sweep(wallMs: number, monoMs: number): void {
    if (monoMs < this.#nextSweepMono) return;
    this.#nextSweepMono = monoMs + 1000;
    // Insertion order is monotonic-time order; stop at the first entry still live. One held by a
    // wall-clock step holds those after it too, which errs towards keeping salts.
    for (const [k, e] of this.#entries) {
      if (!this.#expired(e, wallMs, monoMs)) break;
      this.#entries.delete(k);
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
