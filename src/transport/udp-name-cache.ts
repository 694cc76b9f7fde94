/**
 * Per-session name resolution for UDP relays. A UDP session (a game, a VoIP call, QUIC) sends many
 * datagrams to the same few names; resolving each datagram's name again costs a getaddrinfo call
 * on the thread pool per datagram. Each session opened through {@link NameCachingPacketDialer}
 * resolves a name once, keeps the answer for at most `ttlMs` (getaddrinfo gives no TTL, so this is
 * an upper bound on staleness), and remembers at most `maxNames` names. Datagrams that arrive
 * while a name is being resolved wait for that one lookup (at most `maxPending` of them; more are
 * dropped, as a full queue drops them). The inner dialer receives addresses, so a guard below it
 * checks exactly the address that is used.
 * @module
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { PacketDialer, PacketSession, Target } from './types.js';

export interface NameCacheOptions {
  /** How long an answer is used (default 60 s). */
  ttlMs?: number;
  /** Names remembered per session; the least recently used goes first (default 64). */
  maxNames?: number;
  /** Datagrams held per session while names resolve (default 64). */
  maxPending?: number;
  /** Resolves a name to one address (default: the system resolver). */
  lookup?: (host: string) => Promise<string>;
  /** Monotonic milliseconds (default `performance.now`). */
  now?: () => number;
}

interface Entry {
  address: string | null;
  expires: number;
  waiting: { payload: Uint8Array; port: number }[] | null;
}

export class NameCachingPacketDialer implements PacketDialer {
  readonly #inner: PacketDialer;
  readonly #o: Required<NameCacheOptions>;

  constructor(inner: PacketDialer, options: NameCacheOptions = {}) {
    this.#inner = inner;
    this.#o = {
      ttlMs: options.ttlMs ?? 60_000,
      maxNames: options.maxNames ?? 64,
      maxPending: options.maxPending ?? 64,
      lookup: options.lookup ?? (async (h) => (await dnsLookup(h)).address),
      now: options.now ?? (() => performance.now()),
    };
  }

  open(onPacket: (payload: Buffer, from: Target) => void): PacketSession {
    const inner = this.#inner.open(onPacket);
    const o = this.#o;
    const names = new Map<string, Entry>();
    let pending = 0;
    let closed = false;
    const resolve = (host: string, entry: Entry): void => {
      o.lookup(host).then(
        (address) => {
          entry.address = address;
          entry.expires = o.now() + o.ttlMs;
          flush(entry, address);
        },
        () => {
          // Unresolvable: what waited is dropped, and the name is asked again next time.
          if (names.get(host) === entry) names.delete(host);
          flush(entry, null);
        },
      );
    };
    const flush = (entry: Entry, address: string | null): void => {
      const w = entry.waiting ?? [];
      entry.waiting = null;
      pending -= w.length;
      if (closed || address === null) return;
      for (const d of w) inner.send(d.payload, { host: address, port: d.port });
    };
    return {
      send(payload, target) {
        if (closed) return;
        if (isIP(target.host) !== 0) {
          inner.send(payload, target);
          return;
        }
        const host = target.host.toLowerCase();
        let entry = names.get(host);
        if (entry) {
          names.delete(host);
          if (entry.address !== null && entry.expires <= o.now() && entry.waiting === null)
            entry = undefined;
          else names.set(host, entry);
        }
        if (entry !== undefined && entry.address !== null) {
          inner.send(payload, { host: entry.address, port: target.port });
          return;
        }
        if (!entry) {
          entry = { address: null, expires: 0, waiting: [] };
          if (names.size >= o.maxNames) names.delete(names.keys().next().value!);
          names.set(host, entry);
          resolve(host, entry);
        }
        if (pending >= o.maxPending) return;
        pending++;
        entry.waiting!.push({ payload, port: target.port });
      },
      close() {
        if (closed) return;
        closed = true;
        names.clear();
        inner.close();
      },
    };
  }
}
