/**
 * A budget for UDP trial decryption. An AEAD-2017 (or 2022 without identity headers) datagram can
 * only be matched to its key by trying each key over the whole datagram: with many keys, a junk
 * datagram costs one AEAD pass per key, on the event loop that also serves TCP. So trial work is
 * charged in bytes × keys tried and paid from token buckets that refill at a fixed rate:
 *
 * - one per source prefix (IPv4 /24, IPv6 /64), so that one network cannot use the whole budget;
 *   /24 rather than /32 because a host that can send from its own address can usually spoof others
 *   of its subnet, and would otherwise multiply its share;
 * - one global bucket for full trials (a source with no key hint, or whose hint failed), which caps
 *   the CPU the process spends on datagrams it cannot place, whatever the number of sources;
 * - one global bucket for hinted trials (the key that last matched the source address, tried
 *   first), refunded when the hint opens the datagram, so that established sessions do not pay
 *   for their own traffic and a flood from unknown sources cannot stop them.
 *
 * A bucket may go into debt by one datagram's cost (a datagram is admitted while its balance is
 * positive), so a single datagram costing more than the burst still gets through once, and the
 * long-run rate is still the refill rate. Pure: time is passed in.
 * @module
 */
import { isIPv4 } from 'node:net';

export interface TrialBudgetOptions {
  /** Trial bytes (datagram bytes × keys tried) one source prefix may spend per second. */
  perPrefixBytesPerSec?: number;
  /** Trial bytes all sources together may spend per second on full trials. */
  globalBytesPerSec?: number;
  /** Trial bytes all sources may spend per second on failed hinted trials. */
  hintedBytesPerSec?: number;
  /** Prefix buckets remembered; the least recently used go first. */
  maxPrefixes?: number;
}

/** About 2 % of a core per prefix at ~1.4 ns per trial byte. */
export const DEFAULT_PER_PREFIX_BYTES_PER_SEC = 16 * 2 ** 20;
/** About 10 % of a core for datagrams the server cannot yet place. */
export const DEFAULT_GLOBAL_BYTES_PER_SEC = 64 * 2 ** 20;
export const DEFAULT_HINTED_BYTES_PER_SEC = 32 * 2 ** 20;
export const DEFAULT_MAX_PREFIXES = 16_384;

/** The bucket key of a source address: IPv4 /24, IPv6 /64 (an IPv4-mapped address counts as IPv4). */
export function sourcePrefix(address: string): string {
  let a = address;
  if (a.toLowerCase().startsWith('::ffff:') && isIPv4(a.slice(7))) a = a.slice(7);
  if (isIPv4(a)) return a.slice(0, a.lastIndexOf('.'));
  // Expand '::' so that the first four groups are the /64.
  const [head = '', tail] = a.toLowerCase().split('%')[0]!.split('::') as [string, string?];
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups =
    tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ''))
    .join(':');
}

class Bucket {
  readonly rate: number;
  tokens: number;
  at: number;
  constructor(rate: number, nowMs: number) {
    this.rate = rate;
    this.tokens = rate;
    this.at = nowMs;
  }
  refill(nowMs: number): void {
    const dt = Math.max(0, nowMs - this.at);
    this.at = Math.max(this.at, nowMs);
    // Burst: one second of the rate.
    this.tokens = Math.min(this.rate, this.tokens + (this.rate * dt) / 1000);
  }
}

export class TrialBudget {
  readonly #perPrefix: number;
  readonly #maxPrefixes: number;
  readonly #prefixes = new Map<string, Bucket>();
  readonly #global: Bucket;
  readonly #hinted: Bucket;

  constructor(options: TrialBudgetOptions = {}, nowMs = 0) {
    this.#perPrefix = options.perPrefixBytesPerSec ?? DEFAULT_PER_PREFIX_BYTES_PER_SEC;
    this.#maxPrefixes = options.maxPrefixes ?? DEFAULT_MAX_PREFIXES;
    this.#global = new Bucket(options.globalBytesPerSec ?? DEFAULT_GLOBAL_BYTES_PER_SEC, nowMs);
    this.#hinted = new Bucket(options.hintedBytesPerSec ?? DEFAULT_HINTED_BYTES_PER_SEC, nowMs);
  }

  /** Prefix buckets held now (for tests: bounded by maxPrefixes). */
  get prefixes(): number {
    return this.#prefixes.size;
  }

  /** Pays for a full trial of `cost` bytes × keys from `prefix`; false: drop the datagram untried. */
  takeFull(prefix: string, cost: number, nowMs: number): boolean {
    return this.#take(this.#global, prefix, cost, nowMs);
  }

  /** Pays for a hinted trial; give it back with {@link refundHinted} when the hint opened it. */
  takeHinted(prefix: string, cost: number, nowMs: number): boolean {
    return this.#take(this.#hinted, prefix, cost, nowMs);
  }

  refundHinted(prefix: string, cost: number): void {
    this.#hinted.tokens = Math.min(this.#hinted.rate, this.#hinted.tokens + cost);
    const p = this.#prefixes.get(prefix);
    if (p) p.tokens = Math.min(p.rate, p.tokens + cost);
  }

  #take(global: Bucket, prefix: string, cost: number, nowMs: number): boolean {
    global.refill(nowMs);
    let p = this.#prefixes.get(prefix);
    if (p) {
      this.#prefixes.delete(prefix);
      p.refill(nowMs);
    } else {
      p = new Bucket(this.#perPrefix, nowMs);
      if (this.#prefixes.size >= this.#maxPrefixes)
        this.#prefixes.delete(this.#prefixes.keys().next().value!);
    }
    this.#prefixes.set(prefix, p);
    if (global.tokens <= 0 || p.tokens <= 0) return false;
    global.tokens -= cost;
    p.tokens -= cost;
    return true;
  }
}
