/**
 * The fp=chrome client's TLS 1.3 sessions, kept as Chrome keeps them: by server and by everything
 * that decided the first handshake's checks (name, ALPN offer, pin or CA), at most two per key (the
 * newest first), each used once (a ticket offered is removed, as Chrome does with single-use TLS 1.3
 * sessions), none past its lifetime or past seven days (RFC 8446 §4.6.1). Bounded in keys.
 * @module
 */
import type { X509Certificate } from 'node:crypto';

export interface ChromeSession {
  ticket: Buffer;
  /** The resumption PSK (RFC 8446 §4.6.1) and the suite whose hash it belongs to. */
  psk: Buffer;
  suite: number;
  ageAdd: number;
  receivedMs: number;
  lifetimeS: number;
  /** The chain the original handshake checked (the resumed connection reports it). */
  chain: X509Certificate[];
  alpn: string | false;
}

/** RFC 8446 §4.6.1: a ticket lives at most seven days. */
export const MAX_TICKET_LIFETIME_S = 7 * 24 * 3600;
/** The largest ticket kept (RFC 8446 allows 2^16 - 1 bytes; Chrome keeps any). */
export const MAX_TICKET_BYTES = 0xffff;

export class ChromeSessionCache {
  readonly #m = new Map<string, ChromeSession[]>();
  readonly #maxKeys: number;
  readonly #perKey: number;

  constructor(maxKeys = 256, perKey = 2) {
    this.#maxKeys = maxKeys;
    this.#perKey = perKey;
  }

  get size(): number {
    return this.#m.size;
  }

  add(key: string, s: ChromeSession): void {
    if (s.lifetimeS === 0) return;
    const list = [s, ...(this.#m.get(key) ?? [])].slice(0, this.#perKey);
    this.#m.delete(key);
    this.#m.set(key, list);
    if (this.#m.size > this.#maxKeys) this.#m.delete(this.#m.keys().next().value!);
  }

  /** Removes and returns the newest session still alive at `nowMs`, or undefined. */
  take(key: string, nowMs: number): ChromeSession | undefined {
    const list = this.#m.get(key);
    if (!list) return undefined;
    let s: ChromeSession | undefined;
    while ((s = list.shift())) {
      const ageMs = nowMs - s.receivedMs;
      if (ageMs >= 0 && ageMs < Math.min(s.lifetimeS, MAX_TICKET_LIFETIME_S) * 1000) break;
    }
    if (list.length === 0) this.#m.delete(key);
    return s;
  }
}

/** The process's sessions (the dialers' default). */
export const chromeSessions = new ChromeSessionCache();
