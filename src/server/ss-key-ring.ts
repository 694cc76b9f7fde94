/**
 * The Shadowsocks server's keys: the table it tries a request against, the key that last matched
 * each client address (tried first, so that a server with many keys does not try them all on every
 * connection), and the TCP replay filters the acceptor consults.
 *
 * Privacy: the remembered client addresses live only in memory and are never written out.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { RotatingSaltFilter, SaltPool } from '../crypto/replay.js';
import {
  SsKeyTable,
  SsTcpAcceptor,
  type Random,
  type ReplayGuard,
  type SsServerKey,
} from '../codec/ss-tcp.js';
import type { ScratchSlot } from '../codec/ss-stream.js';

/** Client addresses remembered per transport: beyond this the oldest is forgotten. */
const HINTS_MAX = 10_000;

/**
 * Keys one connection tries per turn of the event loop before yielding: with thousands of keys, a
 * crowd of new clients (or of probes) would otherwise hold the loop for seconds at a time, and
 * every timer and read of the connections already served would wait.
 */
const TRIALS_PER_TURN = 256;

/** A bounded map that forgets its oldest entries: the per-client "last key that matched" hint. */
class HintMap<V> {
  readonly #map = new Map<string, V>();
  readonly #cap: number;
  constructor(cap: number) {
    this.#cap = cap;
  }
  get(k: string): V | undefined {
    return this.#map.get(k);
  }
  set(k: string, v: V): void {
    this.#map.delete(k);
    this.#map.set(k, v);
    if (this.#map.size > this.#cap) this.#map.delete(this.#map.keys().next().value!);
  }
  /** Forgets the entries whose value fails `keep`. */
  retain(keep: (v: V) => boolean): void {
    for (const [k, v] of this.#map) if (!keep(v)) this.#map.delete(k);
  }
}

export class SsKeyRing {
  #table: SsKeyTable;
  readonly #tcpHint = new HintMap<SsServerKey>(HINTS_MAX);
  readonly #udpHint = new HintMap<SsServerKey>(HINTS_MAX);
  readonly #mono: () => number;
  /** AEAD-2017 TCP request salts (replay.ts states the window). */
  readonly #replay2017: RotatingSaltFilter;
  /** Our own AEAD-2017 response salts, so that a response reflected back at us is recognised. */
  readonly #ownSalts2017: RotatingSaltFilter;
  readonly #replay2022 = new SaltPool();
  readonly #guard: ReplayGuard;

  /** `mono` is the monotonic clock in milliseconds that replay windows are kept by. */
  constructor(keys: readonly SsServerKey[], mono: () => number) {
    this.#table = new SsKeyTable(keys);
    this.#mono = mono;
    // Filter secrets come from the system, not the server's injectable `random`: a seeded source in
    // a test keeps producing the same wire bytes whether or not the server holds filters.
    this.#replay2017 = new RotatingSaltFilter(randomBytes(16));
    this.#ownSalts2017 = new RotatingSaltFilter(randomBytes(16));
    this.#guard = {
      addSalt2017: (s) => this.#replay2017.add(s, mono()),
      isOwnSalt2017: (s) => this.#ownSalts2017.has(s, mono()),
      // The ±30 s timestamp check uses wall time (SIP022), so a salt stays pooled until both the
      // wall and the monotonic clock say 60 s have passed: a clock step cannot let a replay in.
      addSalt2022: (s, nowMs) => this.#replay2022.add(s, nowMs, mono()),
    };
  }

  /** The keys tried now. */
  get table(): SsKeyTable {
    return this.#table;
  }

  /** Replaces the set of keys; each client's last key is remembered while it is still served. */
  setKeys(keys: readonly SsServerKey[]): void {
    const table = new SsKeyTable(keys);
    this.#table = table;
    // Each client keeps the key it last matched while that key is still served: a rebuild (any
    // key's change, in a fleet many a minute) must not send every client's next connection
    // through a trial over all the keys. A key that left the table is forgotten.
    const served = (k: SsServerKey): boolean => table.has(k);
    this.#tcpHint.retain(served);
    this.#udpHint.retain(served);
  }

  /**
   * An acceptor for one TCP connection from `client`, trying the key it last matched first and at
   * most TRIALS_PER_TURN keys per call.
   */
  tcpAcceptor(client: string, random: Random, scratch: ScratchSlot): SsTcpAcceptor {
    return new SsTcpAcceptor(
      this.#table,
      this.#guard,
      random,
      this.#tcpHint.get(client),
      scratch,
      TRIALS_PER_TURN,
    );
  }

  /** `client` authenticated over TCP with `key`. */
  rememberTcp(client: string, key: SsServerKey): void {
    this.#tcpHint.set(client, key);
  }

  /**
   * Records a response salt of ours, so that our response, replayed to us as a request, is refused
   * (the reflection attack on AEAD-2017; 2022 headers carry a direction type instead).
   */
  addOwnSalt2017(salt: Uint8Array): void {
    this.#ownSalts2017.add(salt, this.#mono());
  }

  /** The key that last opened a datagram from `address`, if it is still in the table. */
  udpHintOf(address: string): SsServerKey | undefined {
    const hint = this.#udpHint.get(address);
    return hint !== undefined && this.#table.candidateOf(hint) >= 0 ? hint : undefined;
  }

  /** A datagram from `address` opened with `key`. */
  rememberUdp(address: string, key: SsServerKey): void {
    this.#udpHint.set(address, key);
  }
}
