/**
 * The fp=chrome client's TLS 1.3 sessions, kept as Chrome keeps them: by server and by everything
 * that decided the first handshake's checks (name, ALPN offer, pin or CA), at most two per key (the
 * newest first), each used once (a ticket offered is removed, as Chrome does with single-use TLS 1.3
 * sessions), none past its lifetime or past seven days (RFC 8446 §4.6.1). TLS 1.2 sessions apart
 * (an RFC 5077 ticket, or the server's session id when it issued no ticket): one per key, reused
 * until replaced. Bounded in keys.
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

/**
 * A TLS 1.2 session: unlike a TLS 1.3 ticket it is offered again and again until the server
 * replaces or refuses it, as Chrome (BoringSSL) reuses TLS 1.2 sessions. BoringSSL's
 * ssl_session_get_type: a session with a ticket is resumed by the ticket (RFC 5077, with a random
 * session id in the hello), one with only the server's session id by that id (RFC 5246 §7.4.1.2).
 */
export interface ChromeSession12 {
  /** The RFC 5077 ticket; empty when the server issued none. */
  ticket: Buffer;
  /** The server's session id (up to 32 bytes; empty when it gave none). */
  sessionId: Buffer;
  /** The (extended) master secret and the suite it was made with. */
  master: Buffer;
  suite: number;
  receivedMs: number;
  lifetimeS: number;
  chain: X509Certificate[];
}

/**
 * The longest a TLS 1.2 session is kept, whatever the server's lifetime hint: BoringSSL's default
 * session timeout (SSL_DEFAULT_SESSION_TIMEOUT, two hours).
 */
export const MAX_TLS12_SESSION_S = 2 * 3600;

/** RFC 8446 §4.6.1: a ticket lives at most seven days. */
export const MAX_TICKET_LIFETIME_S = 7 * 24 * 3600;
/** The largest ticket kept (RFC 8446 allows 2^16 - 1 bytes; Chrome keeps any). */
export const MAX_TICKET_BYTES = 0xffff;

export class ChromeSessionCache {
  readonly #m = new Map<string, ChromeSession[]>();
  readonly #m12 = new Map<string, ChromeSession12>();
  readonly #maxKeys: number;
  readonly #perKey: number;

  constructor(maxKeys = 256, perKey = 2) {
    this.#maxKeys = maxKeys;
    this.#perKey = perKey;
  }

  get size(): number {
    return this.#m.size + this.#m12.size;
  }

  /**
   * Keeps the server's TLS 1.2 session for `key` (one per key, the newest); one with neither a
   * ticket nor a session id cannot be resumed and leaves none.
   */
  add12(key: string, s: ChromeSession12): void {
    this.#m12.delete(key);
    if (s.ticket.length === 0 && s.sessionId.length === 0) return;
    this.#m12.set(key, s);
    if (this.#m12.size > this.#maxKeys) this.#m12.delete(this.#m12.keys().next().value!);
  }

  /** The TLS 1.2 session for `key` still alive at `nowMs` (kept: it may be offered again). */
  get12(key: string, nowMs: number): ChromeSession12 | undefined {
    const s = this.#m12.get(key);
    if (!s) return undefined;
    const ageMs = nowMs - s.receivedMs;
    const lifetimeS = Math.min(s.lifetimeS || MAX_TLS12_SESSION_S, MAX_TLS12_SESSION_S);
    if (ageMs >= 0 && ageMs < lifetimeS * 1000) return s;
    this.#m12.delete(key);
    return undefined;
  }

  /** Forgets the TLS 1.2 session for `key` (the server refused it). */
  drop12(key: string): void {
    this.#m12.delete(key);
  }

  add(key: string, s: ChromeSession): void {
    if (s.lifetimeS === 0) return;
    // The server speaks TLS 1.3 now: a TLS 1.2 session it left is of no more use.
    this.#m12.delete(key);
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
