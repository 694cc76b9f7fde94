/**
 * The live side of the key store: which keys the servers accept right now, and the gate every
 * authenticated connection passes (gate.ts).
 *
 * - **Control plane.** Every change (create, rename, disable, limits, delete) is committed to the
 *   store first, then applied here; the servers' key tables are rebuilt from the keys that are
 *   active. A disabled, expired or over-limit key is simply not in the tables, so a new connection
 *   with it fails exactly as a wrong key does (docs/probe-resistance.md).
 * - **Enforcement.** A timer (every 250 ms) re-evaluates each key: a key that expires or goes over
 *   its data limit is dropped from the tables and its open connections are closed, well within a
 *   second. Device limits count distinct client addresses with open connections (kept in memory,
 *   never written). Speed caps are token buckets per key and direction, shared by its connections.
 *   In a fleet (a store with `remotePresence`), the devices on other nodes count too, and a key's
 *   cap is split between the nodes it is connected to by what each wants ({@link speedShare}).
 * - **Accounting.** Bytes are counted in memory per UTC day and flushed to the store about once a
 *   second, and at once when `flushBytes` are pending, in one transaction: a crash (kill -9) loses
 *   at most `flushBytes` plus one counted read, whatever the rate or the load.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { debuglog } from 'node:util';
import { LadderError } from '../../errors.js';
import { makeCipherKey } from '../../crypto/ss-key.js';
import { trojanPasswordHash } from '../../codec/trojan.js';
import type { SsServerKey } from '../../codec/ss-tcp.js';
import type { SsMethod } from '../../crypto/methods.js';
import type { TrojanUser } from '../trojan-server.js';
import type {
  AccessKeyStore,
  LocalPresence,
  RemotePresence,
  StoreChanges,
  UsageDelta,
} from '../../store/key-store.js';
import type { Metrics } from '../metrics.js';
import { systemClock, type Clock } from '../../core/clock.js';
import type { AccessGate, GateTransport, Lease } from './gate.js';
import {
  checkDataLimit,
  checkExpiry,
  checkKeyId,
  checkMethod,
  checkName,
  checkPositiveOrNull,
  checkTransports,
  dayOf,
  KEY_TRANSPORTS,
  effectiveLimit,
  keyState,
  makeSecret,
  usageInPeriod,
  type AccessKeyRecord,
  type DataLimit,
  type KeyState,
} from '../../access/access-key.js';

const debug = debuglog('ladder:keys');

/** Days of per-day usage kept in memory; older days are folded into one total. */
const USAGE_DAYS_IN_MEMORY = 62;

/**
 * How often every key is evaluated; between, a tick evaluates only the keys that changed, crossed
 * their budget or have an expiry (a state changes only by those, or when the UTC day changes).
 */
const FULL_EVALUATE_MS = 5000;

/** Usage pending in memory that is flushed at once rather than at the next flush tick. */
export const USAGE_FLUSH_BYTES = 4 * 1024 * 1024;

/** A token bucket: `rate` bytes per second, bursts up to `burst`. */
export class Pace {
  #tokens: number;
  #last: number;
  #rate: number;
  #burst: number;
  constructor(rate: number, nowMs: number) {
    this.#rate = rate;
    this.#burst = Pace.#burstOf(rate);
    this.#tokens = this.#burst;
    this.#last = nowMs;
  }
  /** A burst of at least one 64 KiB read, so a capped connection never stalls on a single chunk. */
  static #burstOf(rate: number): number {
    return Math.max(65_536, rate / 4);
  }
  get rate(): number {
    return this.#rate;
  }
  get burst(): number {
    return this.#burst;
  }
  /** Changes the rate from now on; the tokens held stay (a new bucket would start full again). */
  setRate(rate: number, nowMs: number): void {
    this.#refill(nowMs);
    this.#rate = rate;
    this.#burst = Pace.#burstOf(rate);
    this.#tokens = Math.min(this.#tokens, this.#burst);
  }
  #refill(nowMs: number): void {
    this.#tokens = Math.min(this.#burst, this.#tokens + ((nowMs - this.#last) * this.#rate) / 1000);
    this.#last = nowMs;
  }
  /** Takes `n` bytes' worth; returns how long (ms) the sender should wait before the next. */
  take(n: number, nowMs: number): number {
    this.#refill(nowMs);
    this.#tokens -= n;
    return this.#tokens >= 0 ? 0 : Math.ceil((-this.#tokens * 1000) / this.#rate);
  }
}

/** Part of a speed cap every node where the key is connected keeps, whatever the others want. */
export const SPEED_SHARE_FLOOR = 0.1;

/**
 * This node's part of a key's speed cap (bytes per second) in a fleet: `floor` of the cap split
 * evenly among the nodes where the key is connected, the rest in proportion to what each wants
 * (`local` here, `others.demandBps` summed over the other nodes, both as of the last sync). The
 * parts of all nodes add up to the cap when they see the same demands. A node that has not
 * measured its demand yet (`local` undefined) starts at the floor and asks for more at the next
 * sync if the floor held it back: the fleet never hands out more than the cap for it.
 */
export function speedShare(
  cap: number,
  local: number | undefined,
  others: RemotePresence | undefined,
  floor = SPEED_SHARE_FLOOR,
): number {
  const n = 1 + (others?.nodes ?? 0);
  if (n === 1) return cap;
  const each = (cap * floor) / n;
  const mine = Math.max(0, local ?? 0);
  const total = mine + Math.max(0, others!.demandBps);
  // Nobody measured anything yet: split evenly.
  if (total <= 0) return cap / n;
  return each + ((cap - n * each) * mine) / total;
}

/** What callers may set when making a key; everything is optional. */
export interface NewKeyOptions {
  id?: string;
  name?: string;
  method?: string;
  password?: string;
  limit?: unknown;
  expiresMs?: unknown;
  speedLimitBps?: unknown;
  deviceLimit?: unknown;
  transports?: unknown;
}

/** A key as the API and the dashboard show it. */
export interface KeyView extends AccessKeyRecord {
  readonly state: KeyState;
  /** Bytes in the current period of the key's limit (or all time without a limit). */
  readonly usedBytes: number;
  readonly totalBytes: number;
  readonly limit: DataLimit | null;
  readonly connections: number;
  /** Devices connected now (distinct client addresses; in a fleet, summed over its nodes). */
  readonly devices: number;
}

interface LeaseEntry {
  readonly client: string;
  revoke: (() => void) | null;
}

export interface KeyManagerOptions {
  store: AccessKeyStore;
  clock?: Clock;
  metrics?: Metrics;
  /** Called with the active keys whenever they change (and once from start()). */
  onKeysChanged(ss: readonly SsServerKey[], trojan: readonly TrojanUser[]): void;
  /** Enforcement period (default 250 ms). */
  tickMs?: number;
  /** Usage flush period (default 1000 ms). */
  flushMs?: number;
  /** Pending usage that is flushed at once (default USAGE_FLUSH_BYTES). */
  flushBytes?: number;
  /** Default method for new keys (Outline's: chacha20-ietf-poly1305). */
  defaultMethod?: SsMethod;
  random?: (n: number) => Uint8Array;
}

export class KeyManager implements AccessGate {
  readonly #store: AccessKeyStore;
  readonly #clock: Clock;
  readonly #o: KeyManagerOptions;
  readonly #keys = new Map<string, AccessKeyRecord>();
  readonly #states = new Map<string, KeyState>();
  #usage: Map<string, Map<number, number>>;
  /** Usage counted since the last flush: key id -> UTC day -> bytes. */
  readonly #pending = new Map<string, Map<number, number>>();
  #pendingBytes = 0;
  readonly #leases = new Map<string, Set<LeaseEntry>>();
  readonly #paces = new Map<string, { up: Pace; down: Pace }>();
  /** Per capped key, bytes carried each way since the last presence sample, and whether the cap held a read back. */
  readonly #carried = new Map<string, { up: number; down: number; held: boolean }>();
  /** Per capped key, what this node last told the fleet it wants (bytes per second). */
  readonly #demand = new Map<string, number>();
  #sampledMs: number;
  /** Compiled keys, reused while the secret and method stay the same (key derivation is not free). */
  readonly #compiled = new Map<
    string,
    { method: string; secret: string; ss: SsServerKey; trojan: TrojanUser }
  >();
  #defaultLimit: DataLimit | null;
  /** Moves whenever what the key tables hold may have changed; published when it differs. */
  #tableVersion = 0;
  #publishedVersion = -1;
  #tick: NodeJS.Timeout | null = null;
  #flush: NodeJS.Timeout | null = null;
  #memDay: number;
  #dataVersion: number;
  /** Bytes each active key with a data limit may still use; crossing 0 re-evaluates at once. */
  readonly #budget = new Map<string, number>();
  #evaluateSoon = false;
  /** Keys to evaluate at the next tick even when it is not a full one. */
  readonly #dirty = new Set<string>();
  /** Keys with an expiry: evaluated at every tick. */
  readonly #timed = new Set<string>();
  #lastFullMs = -Infinity;

  constructor(options: KeyManagerOptions) {
    this.#o = options;
    this.#store = options.store;
    this.#clock = options.clock ?? systemClock;
    for (const k of this.#store.listKeys()) this.#keys.set(k.id, k);
    this.#defaultLimit = this.#store.getDefaultLimit();
    this.#memDay = dayOf(this.#clock.now());
    this.#sampledMs = this.#clock.now();
    this.#usage = this.#store.loadUsage(this.#memDay - USAGE_DAYS_IN_MEMORY);
    this.#dataVersion = this.#store.dataVersion();
    this.#store.takeChanges?.();
  }

  /**
   * Picks up keys and usage changed by another process (`ladder keys --data DIR` while the server
   * runs) or, in a fleet, by other nodes: SQLite's data_version moves only for other connections'
   * commits. The store holds every flushed byte, so its usage plus what is pending is the total.
   */
  #syncFromStore(): 'none' | 'usage' | 'keys' | 'all' {
    const v = this.#store.dataVersion();
    if (v === this.#dataVersion) return 'none';
    this.#dataVersion = v;
    const ch = this.#store.takeChanges?.() ?? null;
    if (ch && this.#store.loadUsageOf && ch.keys.size + ch.usage.size <= this.#keys.size / 4 + 64) {
      this.#applyChanges(ch, this.#store.loadUsageOf.bind(this.#store));
      return ch.defaultLimit ? 'all' : ch.keys.size > 0 ? 'keys' : 'usage';
    }
    const fresh = new Map(this.#store.listKeys().map((k) => [k.id, k]));
    for (const id of this.#keys.keys()) if (!fresh.has(id)) this.#forget(id);
    this.#keys.clear();
    for (const [id, k] of fresh) this.#keys.set(id, k);
    this.#tableVersion++;
    this.#defaultLimit = this.#store.getDefaultLimit();
    this.#usage = this.#store.loadUsage(this.#memDay - USAGE_DAYS_IN_MEMORY);
    for (const [id, days] of this.#pending) {
      let u = this.#usage.get(id);
      if (!u) this.#usage.set(id, (u = new Map()));
      for (const [day, bytes] of days) u.set(day, (u.get(day) ?? 0) + bytes);
    }
    return 'all';
  }

  /** Re-reads the keys a store says changed, and the usage of those and of the keys it names. */
  #applyChanges(
    ch: StoreChanges,
    loadUsageOf: (ids: Iterable<string>, fromDay: number) => Map<string, Map<number, number>>,
  ): void {
    for (const id of ch.keys) {
      const k = this.#store.getKey(id);
      if (k) this.#setKey(k);
      else if (this.#keys.has(id)) this.#forget(id);
    }
    if (ch.defaultLimit) this.#defaultLimit = this.#store.getDefaultLimit();
    for (const id of ch.keys) this.#dirty.add(id);
    for (const id of ch.usage) this.#dirty.add(id);
    const ids = new Set([...ch.keys, ...ch.usage].filter((id) => this.#keys.has(id)));
    const fresh = loadUsageOf(ids, this.#memDay - USAGE_DAYS_IN_MEMORY);
    for (const id of ids) {
      const u = fresh.get(id) ?? new Map<number, number>();
      for (const [day, bytes] of this.#pending.get(id) ?? []) u.set(day, (u.get(day) ?? 0) + bytes);
      if (u.size > 0) this.#usage.set(id, u);
      else this.#usage.delete(id);
    }
  }

  /** Readers see another process's changes at once, not at the next tick. */
  #fresh(): void {
    if (this.#store.dataVersion() !== this.#dataVersion) this.#evaluate(false);
  }

  /** Publishes the active keys and starts enforcement and accounting. */
  start(): void {
    this.#evaluate(true, true);
    this.#tick = setInterval(() => this.#evaluate(false), this.#o.tickMs ?? 250);
    this.#tick.unref();
    this.#flush = setInterval(() => this.flush(), this.#o.flushMs ?? 1000);
    this.#flush.unref();
    this.#store.setLocalPresence?.((newPeriod) => this.#localPresence(newPeriod));
  }

  /**
   * Devices connected here per key that has a device limit or a speed cap, and what this node
   * wants of each cap (for the fleet, once a sync). With `newPeriod`, measures the demand of the
   * period that ends now and starts the next; without, repeats the demand last measured.
   */
  #localPresence(newPeriod: boolean): Map<string, LocalPresence> {
    const now = this.#clock.now();
    const seconds = Math.max(1, now - this.#sampledMs) / 1000;
    if (newPeriod) {
      this.#sampledMs = now;
      this.#demand.clear();
    }
    const out = new Map<string, LocalPresence>();
    for (const [id, set] of this.#leases) {
      const k = this.#keys.get(id);
      if (!k || (k.deviceLimit === null && !k.speedLimitBps) || set.size === 0) continue;
      let demandBps = 0;
      const c = this.#carried.get(id);
      if (!newPeriod) demandBps = this.#demand.get(id) ?? 0;
      else if (k.speedLimitBps && c) {
        demandBps = c.held ? k.speedLimitBps : Math.max(c.up, c.down) / seconds;
        this.#demand.set(id, demandBps);
      }
      out.set(id, { devices: new Set([...set].map((l) => l.client)).size, demandBps });
    }
    if (newPeriod) this.#carried.clear();
    return out;
  }

  /** Writes counted usage to the store. */
  flush(): void {
    if (this.#pending.size === 0) return;
    const deltas: UsageDelta[] = [];
    for (const [keyId, days] of this.#pending)
      for (const [day, bytes] of days) deltas.push({ keyId, day, bytes });
    this.#pending.clear();
    this.#pendingBytes = 0;
    try {
      this.#store.addUsage(deltas);
    } catch (err) {
      // Put them back: the next flush tries again (a busy or full disk should not lose counts).
      for (const d of deltas) this.#addPending(d.keyId, d.day, d.bytes);
      debug('usage flush failed: %s', (err as Error).message);
    }
  }

  /** Stops the timers and writes what is pending. The store stays open (its owner closes it). */
  stop(): void {
    if (this.#tick) clearInterval(this.#tick);
    if (this.#flush) clearInterval(this.#flush);
    this.#tick = this.#flush = null;
    this.flush();
  }

  // ------------------------------------------------------------------- gate (data plane)

  open(keyId: string, client: string, transport: GateTransport): Lease | null {
    const key = this.#keys.get(keyId);
    if (!key || this.#states.get(keyId) !== 'active') return null;
    let set = this.#leases.get(keyId);
    let newDevice = false;
    if (key.deviceLimit !== null) {
      const devices = new Set<string>();
      if (set) for (const l of set) devices.add(l.client);
      const elsewhere = this.#store.remotePresence?.().get(keyId)?.devices ?? 0;
      newDevice = !devices.has(client);
      if (newDevice && devices.size + elsewhere >= key.deviceLimit) {
        debug('key %s refused: device limit', keyId);
        return null;
      }
    }
    if (!set) this.#leases.set(keyId, (set = new Set()));
    const entry: LeaseEntry = { client, revoke: null };
    set.add(entry);
    // The other nodes count this device after one round trip to the database, not a sync period.
    if (newDevice) this.#store.presenceSoon?.();
    const m = this.#o.metrics;
    m?.opened(keyId, transport);
    const count = (dir: 'up' | 'down', n: number): number => {
      m?.bytes(keyId, dir, n);
      const now = this.#clock.now();
      const day = dayOf(now);
      this.#addPending(keyId, day, n);
      if (this.#pendingBytes >= (this.#o.flushBytes ?? USAGE_FLUSH_BYTES)) this.flush();
      let u = this.#usage.get(keyId);
      if (!u) this.#usage.set(keyId, (u = new Map()));
      u.set(day, (u.get(day) ?? 0) + n);
      const left = this.#budget.get(keyId);
      if (left !== undefined) {
        this.#budget.set(keyId, left - n);
        if (left - n <= 0) this.#dirty.add(keyId);
        if (left - n <= 0 && !this.#evaluateSoon) {
          // Over the budget: enforce once this read is relayed (it is counted, so it is carried)
          // and before the next. Not setImmediate: one poll phase relays every read already
          // waiting (up to 32 of 64 KiB per socket), a megabyte or two over the limit.
          this.#evaluateSoon = true;
          process.nextTick(() => {
            this.#evaluateSoon = false;
            this.#evaluate(false);
          });
        }
      }
      const keyCap = this.#keys.get(keyId)?.speedLimitBps;
      if (!keyCap) return 0;
      let c = this.#carried.get(keyId);
      if (!c) this.#carried.set(keyId, (c = { up: 0, down: 0, held: false }));
      c[dir] += n;
      // Split with the other nodes where the key is connected now, by what each wants.
      const remote = this.#store.remotePresence?.().get(keyId);
      const cap = speedShare(keyCap, this.#demand.get(keyId), remote);
      let p = this.#paces.get(keyId);
      if (!p) this.#paces.set(keyId, (p = { up: new Pace(cap, now), down: new Pace(cap, now) }));
      else if (p.up.rate !== cap) {
        p.up.setRate(cap, now);
        p.down.setRate(cap, now);
      }
      const wait = p[dir].take(n, now);
      if (wait > 0) c.held = true;
      return wait;
    };
    let closed = false;
    return {
      up: (n) => count('up', n),
      down: (n) => count('down', n),
      onRevoke: (fn) => {
        entry.revoke = fn;
      },
      close: () => {
        if (closed) return;
        closed = true;
        m?.closed(transport);
        set.delete(entry);
        if (set.size === 0 && this.#leases.get(keyId) === set) this.#leases.delete(keyId);
      },
    };
  }

  #addPending(keyId: string, day: number, n: number): void {
    this.#pendingBytes += n;
    let days = this.#pending.get(keyId);
    if (!days) this.#pending.set(keyId, (days = new Map()));
    days.set(day, (days.get(day) ?? 0) + n);
  }

  // ------------------------------------------------------------------- enforcement

  /**
   * Re-derives key states: every key when `full` (or every FULL_EVALUATE_MS, or when the store
   * changed wholesale, or on a new UTC day), else only the dirty and the timed ones. Publishes the
   * active keys when a state or a key changed, or when `force`.
   */
  #evaluate(force: boolean, full = false): void {
    const t0 = performance.now();
    const synced = this.#syncFromStore();
    const t1 = performance.now();
    const now = this.#clock.now();
    const newDay = this.#foldOldUsage(now);
    const all = full || synced === 'all' || newDay || now - this.#lastFullMs >= FULL_EVALUATE_MS;
    // A key's transports or secret may change without its state: publish compares what it sends.
    let changed = force || synced === 'keys' || synced === 'all';
    let ids: Iterable<string>;
    if (all) {
      this.#lastFullMs = now;
      this.#budget.clear();
      this.#timed.clear();
      ids = this.#keys.keys();
    } else ids = new Set([...this.#dirty, ...this.#timed]);
    this.#dirty.clear();
    let moved = all;
    for (const id of ids) {
      const key = this.#keys.get(id);
      if (!key) {
        this.#timed.delete(id);
        this.#budget.delete(id);
        if (this.#states.delete(id)) changed = moved = true;
        continue;
      }
      if (key.expiresMs !== null) this.#timed.add(id);
      else this.#timed.delete(id);
      const usage = this.#usage.get(id);
      const state = keyState(key, usage, this.#defaultLimit, now);
      const limit = effectiveLimit(key, this.#defaultLimit);
      if (state === 'active' && limit)
        this.#budget.set(id, limit.bytes - usageInPeriod(usage, limit.period, now));
      else this.#budget.delete(id);
      const before = this.#states.get(id);
      if (before !== state) {
        this.#states.set(id, state);
        this.#tableVersion++;
        changed = moved = true;
        if (state !== 'active') this.#revoke(id);
      }
    }
    if (all) for (const id of this.#states.keys()) if (!this.#keys.has(id)) this.#states.delete(id);
    if (moved) {
      const counts: Record<KeyState, number> = {
        active: 0,
        disabled: 0,
        expired: 0,
        'over-limit': 0,
      };
      for (const st of this.#states.values()) counts[st]++;
      this.#o.metrics?.setKeyStates(counts);
    }
    const t2 = performance.now();
    if (changed) this.#publish();
    if (synced !== 'none' || changed)
      debug(
        'evaluate (%s): store %d ms, states %d ms, publish %d ms',
        all ? 'all' : 'changed',
        t1 - t0,
        t2 - t1,
        performance.now() - t2,
      );
  }

  /** Closes every open connection of a key. */
  #revoke(id: string): void {
    const set = this.#leases.get(id);
    if (!set) return;
    for (const l of [...set]) {
      const fn = l.revoke;
      l.revoke = null;
      fn?.();
    }
  }

  /** Stores a key's record; the tables change if its secret, method or transports did. */
  #setKey(k: AccessKeyRecord): void {
    const old = this.#keys.get(k.id);
    this.#keys.set(k.id, k);
    if (
      !old ||
      old.secret !== k.secret ||
      old.method !== k.method ||
      old.transports.join() !== k.transports.join()
    )
      this.#tableVersion++;
  }

  #publish(): void {
    if (this.#tableVersion === this.#publishedVersion) return;
    this.#publishedVersion = this.#tableVersion;
    const ss: SsServerKey[] = [];
    const trojan: TrojanUser[] = [];
    for (const [id, key] of this.#keys) {
      if (this.#states.get(id) !== 'active') continue;
      let c = this.#compiled.get(id);
      if (!c || c.secret !== key.secret || c.method !== key.method) {
        c = {
          method: key.method,
          secret: key.secret,
          ss: { id, key: makeCipherKey(key.method, key.secret) },
          trojan: { id, hash: trojanPasswordHash(key.secret) },
        };
        this.#compiled.set(id, c);
      }
      if (key.transports.includes('ss')) ss.push(c.ss);
      if (key.transports.includes('trojan')) trojan.push(c.trojan);
    }
    for (const id of this.#compiled.keys()) if (!this.#keys.has(id)) this.#compiled.delete(id);
    this.#o.onKeysChanged(ss, trojan);
  }

  /** Once a day, folds per-day usage older than the window into one bucket per key. */
  #foldOldUsage(now: number): boolean {
    const today = dayOf(now);
    if (today === this.#memDay) return false;
    this.#memDay = today;
    const cutoff = today - USAGE_DAYS_IN_MEMORY;
    for (const u of this.#usage.values()) {
      let old = 0;
      for (const [day, bytes] of u)
        if (day < cutoff) {
          old += bytes;
          u.delete(day);
        }
      if (old > 0) u.set(cutoff - 1, (u.get(cutoff - 1) ?? 0) + old);
    }
    return true;
  }

  // ------------------------------------------------------------------- control plane

  get defaultLimit(): DataLimit | null {
    return this.#defaultLimit;
  }

  setDefaultLimit(limit: unknown): void {
    const l = limit === null ? null : checkDataLimit(limit);
    this.#store.setDefaultLimit(l);
    this.#defaultLimit = l;
    this.#evaluate(false, true);
  }

  list(): KeyView[] {
    this.#fresh();
    return [...this.#keys.values()]
      .sort(
        (a, b) => a.createdMs - b.createdMs || a.id.localeCompare(b.id, 'en', { numeric: true }),
      )
      .map((k) => this.#view(k));
  }

  get(id: string): KeyView {
    this.#fresh();
    return this.#view(this.#must(id));
  }

  /** Per-day usage of a key (or of all keys with id undefined) for the last `days` days, oldest first. */
  history(id: string | undefined, days: number): { day: string; bytes: number }[] {
    if (id !== undefined) this.#must(id);
    const today = dayOf(this.#clock.now());
    const out: { day: string; bytes: number }[] = [];
    for (let d = today - days + 1; d <= today; d++) {
      let bytes = 0;
      if (id !== undefined) bytes = this.#usage.get(id)?.get(d) ?? 0;
      else for (const u of this.#usage.values()) bytes += u.get(d) ?? 0;
      out.push({ day: new Date(d * 86_400_000).toISOString().slice(0, 10), bytes });
    }
    return out;
  }

  /** Bytes per key id over all time (Outline's /metrics/transfer). */
  transferByKey(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const id of this.#keys.keys()) out[id] = usageInPeriod(this.#usage.get(id), 'total', 0);
    return out;
  }

  create(o: NewKeyOptions = {}): KeyView {
    const method = checkMethod(
      o.method === undefined || o.method === ''
        ? (this.#o.defaultMethod ?? 'chacha20-ietf-poly1305')
        : o.method,
    );
    const make = (id: string): AccessKeyRecord => ({
      id,
      name: o.name === undefined ? '' : checkName(o.name),
      secret: makeSecret(method, o.password, this.#o.random ?? randomBytes),
      method,
      transports: o.transports === undefined ? [...KEY_TRANSPORTS] : checkTransports(o.transports),
      createdMs: this.#clock.now(),
      expiresMs: o.expiresMs === undefined ? null : checkExpiry(o.expiresMs),
      dataLimit: o.limit === undefined ? null : checkDataLimit(o.limit),
      speedLimitBps:
        o.speedLimitBps === undefined
          ? null
          : checkPositiveOrNull(o.speedLimitBps, 'a speed limit (bytes per second)'),
      deviceLimit:
        o.deviceLimit === undefined ? null : checkPositiveOrNull(o.deviceLimit, 'a device limit'),
      disabled: false,
    });
    let key: AccessKeyRecord;
    if (o.id !== undefined) {
      const id = checkKeyId(o.id);
      key = make(id);
      this.#checkPasswordFree(key);
      this.#store.insertKey(key);
    } else {
      // Validate before taking an id, so that a bad request does not use one up.
      const probe = make('0');
      key = this.#store.insertKeyWithNextId((id) => {
        const k = { ...probe, id };
        this.#checkPasswordFree(k);
        return k;
      });
    }
    this.#setKey(key);
    this.#dirty.add(key.id);
    this.#evaluate(false);
    return this.#view(key);
  }

  rename(id: string, name: unknown): void {
    this.#update(id, { name: checkName(name) });
  }

  setDisabled(id: string, disabled: boolean): void {
    this.#update(id, { disabled });
  }

  setDataLimit(id: string, limit: unknown): void {
    this.#update(id, { dataLimit: limit === null ? null : checkDataLimit(limit) });
  }

  setExpiry(id: string, expiresMs: unknown): void {
    this.#update(id, { expiresMs: checkExpiry(expiresMs) });
  }

  setSpeedLimit(id: string, bps: unknown): void {
    this.#update(id, {
      speedLimitBps: checkPositiveOrNull(bps, 'a speed limit (bytes per second)'),
    });
  }

  setTransports(id: string, transports: unknown): void {
    this.#update(id, { transports: checkTransports(transports) });
  }

  setDeviceLimit(id: string, n: unknown): void {
    this.#update(id, { deviceLimit: checkPositiveOrNull(n, 'a device limit') });
  }

  delete(id: string): void {
    this.#must(id);
    this.#store.deleteKey(id);
    this.#forget(id);
    this.#dirty.add(id);
    this.#evaluate(false);
  }

  #forget(id: string): void {
    this.#tableVersion++;
    this.#keys.delete(id);
    this.#usage.delete(id);
    this.#pending.delete(id);
    this.#revoke(id);
    this.#paces.delete(id);
    this.#carried.delete(id);
    this.#demand.delete(id);
  }

  #update(id: string, patch: Partial<AccessKeyRecord>): void {
    const next = { ...this.#must(id), ...patch };
    this.#store.updateKey(next);
    this.#setKey(next);
    this.#dirty.add(id);
    this.#evaluate(true);
  }

  #must(id: string): AccessKeyRecord {
    const k = this.#keys.get(id);
    if (!k) throw new LadderError('ERR_NOT_FOUND', `no access key with id ${id}`);
    return k;
  }

  /** Two AEAD-2017 keys with one password and method would be indistinguishable by trial decryption. */
  #checkPasswordFree(key: AccessKeyRecord): void {
    for (const k of this.#keys.values())
      if (k.secret === key.secret && k.method === key.method)
        throw new LadderError(
          'ERR_CONFLICT',
          `another access key (${k.id}) already has this password and method`,
        );
  }

  #view(k: AccessKeyRecord): KeyView {
    const now = this.#clock.now();
    const usage = this.#usage.get(k.id);
    const limit = effectiveLimit(k, this.#defaultLimit);
    const leases = this.#leases.get(k.id);
    const devices = new Set<string>();
    if (leases) for (const l of leases) devices.add(l.client);
    return {
      ...k,
      state: this.#states.get(k.id) ?? keyState(k, usage, this.#defaultLimit, now),
      usedBytes: usageInPeriod(usage, limit?.period ?? 'total', now),
      totalBytes: usageInPeriod(usage, 'total', now),
      limit,
      connections: leases?.size ?? 0,
      devices: devices.size + (this.#store.remotePresence?.().get(k.id)?.devices ?? 0),
    };
  }
}
