/**
 * A fleet node's store (`ladder server --store postgres://... --data DIR`): the fleet's keys, fleet
 * settings and usage live in one PostgreSQL database shared by every node; each node keeps a SQLite
 * cache of them in its data directory, and everything the data plane reads comes from that cache.
 *
 * - **Key changes** made on this node are written to PostgreSQL first, synchronously (pg-worker.ts),
 *   then to the cache; if the database is unreachable they are refused (ERR_STORE_UNAVAILABLE) and
 *   nothing changes anywhere. Changes made elsewhere arrive by LISTEN/NOTIFY, carrying the key's
 *   row, and are copied into the cache through a second SQLite connection, which moves the key
 *   manager's `dataVersion()`; `takeChanges()` tells it which keys and which keys' usage moved, so
 *   it re-reads those alone at its next tick (250 ms), whatever the number of keys. A full resync
 *   (which writes only the rows that differ) runs on every (re)connection and every `resyncMs` as
 *   a safety net for notifications missed while disconnected.
 * - **Device limits and speed caps** hold across the fleet through `ladder_presence`: every sync a
 *   node writes its device count per limited or capped key and reads the others' (pg-fleet.ts).
 * - **Usage** flushed by the key manager goes into an outbox table on disk in numbered batches; the
 *   replicator adds them to PostgreSQL (pg-fleet.ts, exactly once per batch), reads back the rows
 *   of every node that changed, and records both in one cache transaction. What the key manager
 *   sees is the fleet's usage plus this node's outbox, so limits hold across nodes up to the
 *   replication delay (docs/operator.md).
 * - **Outages**: the node keeps serving the cached keys; usage waits in the outbox; a log line and
 *   the `ladder_store_up` metric say the store is unreachable. A node started while the database is
 *   down serves from its cache if it was ever synced, and refuses to start otherwise.
 *
 * No log line carries the database's address or credentials: errors are reported by code only.
 * @module
 */
import {
  receiveMessageOnPort,
  MessageChannel,
  Worker,
  type MessagePort,
} from 'node:worker_threads';
import { debuglog } from 'node:util';
import pg from 'pg';
import { LadderError } from '../errors.js';
import type { AccessKeyRecord, DataLimit } from '../access/access-key.js';
import { KeyStore, type AccessKeyStore, type UsageDelta } from './key-store.js';
import {
  addUsageBatchPg,
  CHANGES_CHANNEL,
  getDefaultLimitPg,
  heartbeatPg,
  keyRevsPg,
  keysPg,
  keysSummaryPg,
  migratePg,
  parseChangeNotice,
  presencePg,
  usageSincePg,
  type FleetNode,
} from './pg-fleet.js';
import type { LocalPresence, RemotePresence, StoreChanges } from './key-store.js';

const debug = debuglog('ladder:fleet');

/** How far back each usage read starts before the newest change seen (late commits). */
const USAGE_LOOKBACK_US = 10_000_000;

export interface FleetStoreOptions {
  /** Log lines for the operator (no addresses); default: stderr. */
  log?: (line: string) => void;
  /** Told when the database becomes reachable or unreachable. */
  onHealth?: (up: boolean) => void;
  /** Replication period: usage pushed and read, heartbeat (default 1000 ms). */
  syncMs?: number;
  /** Full resync of the keys (default 30 s). */
  resyncMs?: number;
  /** Connection and statement timeout (default 3000 ms). */
  timeoutMs?: number;
}

/** What a node says about itself in the fleet list. */
export interface NodeInfo {
  name: string;
  publicHost: string;
  port: number;
  connections(): number;
  /** Opaque JSON: how clients reach this node's transports. */
  reach(): string;
}

/** `--store` must be a PostgreSQL URL; the message names the fix. Never echoes the URL (it may hold a password). */
export function checkStoreUrl(url: string): string {
  if (!/^postgres(ql)?:\/\/./i.test(url))
    throw new LadderError(
      'ERR_USAGE',
      '--store: give a PostgreSQL URL, postgres://user:password@host:port/database (or postgresql://...; a Unix socket: postgres:///db?host=/run/postgresql)',
    );
  return url;
}

/** Blocking calls into pg-worker.ts (see there). */
class SyncPg {
  readonly #worker: Worker;
  readonly #port: MessagePort;
  readonly #flag: Int32Array;
  readonly #timeoutMs: number;
  #seq = 0;

  constructor(url: string, timeoutMs: number) {
    const flag = new SharedArrayBuffer(4);
    this.#flag = new Int32Array(flag);
    const { port1, port2 } = new MessageChannel();
    this.#port = port1;
    this.#timeoutMs = timeoutMs;
    this.#worker = new Worker(new URL('./pg-worker.js', import.meta.url), {
      workerData: { url, flag, port: port2, connectTimeoutMs: timeoutMs },
      transferList: [port2],
    });
    this.#worker.unref();
    this.#worker.on('error', () => undefined);
  }

  call<T>(op: string, ...args: unknown[]): T {
    const seq = ++this.#seq;
    Atomics.store(this.#flag, 0, 0);
    this.#port.postMessage({
      seq,
      op,
      args,
    });
    const deadline = Date.now() + this.#timeoutMs * 2 + 500;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) throw unavailable('timeout');
      Atomics.wait(this.#flag, 0, 0, left);
      Atomics.store(this.#flag, 0, 0);
      for (;;) {
        const m = receiveMessageOnPort(this.#port);
        if (!m) break;
        const r = m.message as { seq: number; ok: boolean; value?: unknown; code?: string };
        if (r.seq !== seq) continue; // the late reply of a call that timed out
        if (!r.ok) throw unavailable(r.code ?? 'unknown');
        return r.value as T;
      }
    }
  }

  close(): Promise<number> {
    return this.#worker.terminate();
  }
}

function unavailable(code: string): LadderError {
  return new LadderError(
    'ERR_STORE_UNAVAILABLE',
    `the fleet database is unreachable (${code}): key changes are refused until it is back; every server keeps serving the keys it has`,
  );
}

export class FleetStore implements AccessKeyStore {
  readonly dir: string;
  readonly nodeId: string;
  /** The cache, through the key manager's connection. */
  readonly #cache: KeyStore;
  /** The cache, through the replicator's connection (its commits move the other's dataVersion). */
  readonly #replica: KeyStore;
  readonly #url: string;
  readonly #o: FleetStoreOptions;
  readonly #log: (line: string) => void;
  #sync: SyncPg | null = null;
  #client: pg.Client | null = null;
  #up: boolean | null = null;
  #chain: Promise<unknown> = Promise.resolve();
  #timer: NodeJS.Timeout | null = null;
  #closed = false;
  #lastResync = 0;
  #usageSinceUs = 0;
  #batch: number;
  #info: NodeInfo | null = null;
  readonly #startedMs = Date.now();
  #nodes: FleetNode[] = [];
  /** What the replicator changed in the cache since the key manager last asked; null: too much. */
  #changes: { keys: Set<string>; usage: Set<string>; defaultLimit: boolean } | null = null;
  #localPresence: ((newPeriod: boolean) => ReadonlyMap<string, LocalPresence>) | null = null;
  #presencePending = false;
  #remote: ReadonlyMap<string, RemotePresence> = new Map();
  #remoteAtMs = 0;
  /** Each cached key's revision in the database, as of the last sync (null before the first). */
  #revs: Map<string, number> | null = null;

  /**
   * Opens the cache in `dir` and connects to the fleet's database. If the database cannot be
   * reached, a cache that was synced before is served (with a log line); without one, ERR_STORE_UNAVAILABLE.
   */
  static async open(url: string, dir: string, o: FleetStoreOptions = {}): Promise<FleetStore> {
    checkStoreUrl(url);
    const s = new FleetStore(url, dir, o);
    try {
      await s.#connect();
    } catch (err) {
      const synced = s.#cache.getSetting('fleet_synced_ms');
      if (synced === undefined) {
        s.close();
        throw new LadderError(
          'ERR_STORE_UNAVAILABLE',
          `--store: cannot reach the fleet database (${codeOf(err)}) and ${dir} holds no copy of the fleet's keys yet; start this server once while the database is reachable, or check the URL, the network and the database's pg_hba.conf`,
        );
      }
      s.#log(
        `ladder server: fleet store unreachable at start (${codeOf(err)}); serving the ${s.#cache.listKeys().length} keys cached ${new Date(Number(synced)).toISOString()}, retrying`,
      );
      s.#health(false, err);
    }
    s.#timer = setInterval(() => s.#queue(() => s.#tick()), o.syncMs ?? 1000);
    s.#timer.unref();
    return s;
  }

  private constructor(url: string, dir: string, o: FleetStoreOptions) {
    this.#url = url;
    this.#o = o;
    this.#log = o.log ?? ((l) => console.error(l));
    this.#cache = KeyStore.open(dir);
    this.#replica = KeyStore.open(dir);
    this.dir = dir;
    this.nodeId = this.#cache.settingOnce('server_id', () => crypto.randomUUID());
    this.#batch = Number(this.#cache.getSetting('fleet_usage_batch') ?? '0');
    for (const r of this.#cache.outbox()) this.#batch = Math.max(this.#batch, r.batch);
  }

  /** Whether the database answered last time (null before the first attempt). */
  get up(): boolean | null {
    return this.#up;
  }

  /** The fleet's servers as of the last heartbeat. */
  nodes(): readonly FleetNode[] {
    return this.#nodes;
  }

  /** What this node reports in the fleet list; set once the server listens. */
  setNodeInfo(info: NodeInfo): void {
    this.#info = info;
  }

  /** Per-node, per-key usage from the cache (the dashboard's fleet view). */
  usageByNode(): { nodeId: string; keyId: string; bytes: number }[] {
    return this.#cache.fleetUsageByNode();
  }

  #queue(fn: () => Promise<unknown>): Promise<unknown> {
    const p = this.#chain.then(fn, fn);
    this.#chain = p.catch(() => undefined);
    return p;
  }

  async #connect(): Promise<void> {
    const timeoutMs = this.#o.timeoutMs ?? 3000;
    const c = new pg.Client({
      connectionString: this.#url,
      connectionTimeoutMillis: timeoutMs,
      query_timeout: timeoutMs * 3,
    });
    c.on('error', (err) => this.#lost(c, err));
    c.on('end', () => this.#lost(c, new Error('connection ended')));
    c.on('notification', (n) => {
      if (n.channel === CHANGES_CHANNEL && n.payload) {
        const heard = performance.now();
        void this.#queue(async () => {
          const t = performance.now();
          await this.#applyChange(c, n.payload!);
          debug('change applied: waited %d ms, took %d ms', t - heard, performance.now() - t);
        });
      }
    });
    try {
      await c.connect();
      await migratePg(c);
      await c.query(`LISTEN ${CHANGES_CHANNEL}`);
      this.#client = c;
      await this.#fullSync(c);
    } catch (err) {
      this.#client = null;
      await c.end().catch(() => undefined);
      throw err;
    }
    this.#sync ??= new SyncPg(this.#url, timeoutMs);
    this.#health(true);
  }

  #lost(c: pg.Client, err: unknown): void {
    if (this.#client !== c) return;
    this.#client = null;
    c.end().catch(() => undefined);
    if (!this.#closed) this.#health(false, err);
  }

  #health(up: boolean, err?: unknown): void {
    if (this.#up === up) return;
    const was = this.#up;
    this.#up = up;
    this.#o.onHealth?.(up);
    if (!up)
      this.#log(
        `ladder server: fleet store unreachable (${codeOf(err)}); serving the keys known, usage kept on disk until it is back`,
      );
    else if (was === false)
      this.#log('ladder server: fleet store reachable again; caught up with the fleet');
  }

  /** Records what the replicator changed, for takeChanges(). */
  #changed(keys: Iterable<string>, usage: Iterable<string>, defaultLimit = false): void {
    const ch = (this.#changes ??= { keys: new Set(), usage: new Set(), defaultLimit: false });
    for (const id of keys) ch.keys.add(id);
    for (const id of usage) ch.usage.add(id);
    ch.defaultLimit ||= defaultLimit;
  }

  /**
   * Brings the cache in line with the database. After the first time, it compares the count and
   * the sum of revisions with what this node knows (one row read) and, only if they differ, the
   * (id, revision) pairs, then reads the rows that differ.
   */
  async #fullSync(c: pg.Client): Promise<void> {
    let changed: string[];
    if (this.#revs === null) {
      const rows = await keysPg(c);
      changed = this.#replica.cacheReplaceKeys(rows.map((r) => r.key));
      this.#revs = new Map(rows.map((r) => [r.key.id, r.rev]));
    } else {
      const known = this.#revs;
      const sum = await keysSummaryPg(c);
      let local = 0n;
      for (const rev of known.values()) local += BigInt(rev);
      changed = [];
      if (sum.count !== known.size || sum.revSum !== local) {
        const revs = await keyRevsPg(c);
        const stale = [...revs].filter(([id, rev]) => known.get(id) !== rev).map(([id]) => id);
        const rows = stale.length > 0 ? await keysPg(c, stale) : [];
        const gone = [...known.keys()].filter((id) => !revs.has(id));
        this.#replica.cacheApply(
          rows.map((r) => r.key),
          gone,
        );
        for (const r of rows) {
          revs.set(r.key.id, r.rev);
          changed.push(r.key.id);
        }
        changed.push(...gone);
        this.#revs = revs;
      }
    }
    // Recorded before the next await: the key manager may read the cache (and take the changes)
    // in between, and a key written but not named would not be read again.
    this.#changed(changed, []);
    const limit = await getDefaultLimitPg(c);
    const limitChanged = JSON.stringify(this.#replica.getDefaultLimit()) !== JSON.stringify(limit);
    if (limitChanged) {
      this.#replica.setDefaultLimit(limit);
      this.#changed([], [], true);
    }
    this.#lastResync = Date.now();
    this.#replica.setSetting('fleet_synced_ms', String(this.#lastResync));
    if (this.#usageSinceUs === 0) {
      const u = await usageSincePg(c, 0);
      this.#changed([], this.#replica.settleUsage(null, u.rows));
      this.#usageSinceUs = u.newestUs;
    }
  }

  async #applyChange(c: pg.Client, payload: string): Promise<void> {
    if (this.#client !== c) return;
    const n = parseChangeNotice(payload);
    if (n === null) {
      this.#lastResync = 0; // not understood: resync at the next tick
      return;
    }
    if (n.kind === 'row') {
      this.#replica.cachePutKey(n.key);
      if (n.rev !== null) this.#revs?.set(n.key.id, n.rev);
      this.#changed([n.key.id], []);
    } else if (n.kind === 'key') {
      const [r] = await keysPg(c, [n.id]);
      if (r) {
        this.#replica.cachePutKey(r.key);
        this.#revs?.set(n.id, r.rev);
      } else {
        if (this.#replica.getKey(n.id)) this.#replica.deleteKey(n.id);
        this.#revs?.delete(n.id);
      }
      this.#changed([n.id], []);
    } else if (n.name === 'access_key_data_limit') {
      this.#replica.setDefaultLimit(await getDefaultLimitPg(c));
      this.#changed([], [], true);
    }
  }

  async #tick(): Promise<void> {
    if (this.#closed) return;
    let c = this.#client;
    if (!c) {
      try {
        await this.#connect();
      } catch (err) {
        this.#health(false, err);
        return;
      }
      c = this.#client;
      if (!c) return;
    }
    const t0 = performance.now();
    try {
      await this.#pushUsage(c);
      if (this.#info)
        this.#nodes = await heartbeatPg(c, {
          nodeId: this.nodeId,
          name: this.#info.name,
          publicHost: this.#info.publicHost,
          port: this.#info.port,
          startedMs: this.#startedMs,
          seenMs: Date.now(),
          connections: this.#info.connections(),
          reach: this.#info.reach(),
        });
      if (this.#localPresence) {
        this.#remote = await presencePg(c, this.nodeId, this.#localPresence(true), this.#staleMs());
        this.#remoteAtMs = Date.now();
      }
      if (Date.now() - this.#lastResync >= (this.#o.resyncMs ?? 30_000)) {
        const t = performance.now();
        await this.#fullSync(c);
        debug('full resync: %d ms', performance.now() - t);
      }
      debug('sync tick: %d ms', performance.now() - t0);
    } catch (err) {
      this.#lost(c, err);
    }
  }

  /** Adds the outbox to the database, reads back what changed, and settles both in the cache. */
  async #pushUsage(c: pg.Client): Promise<void> {
    const box = this.#cache.outbox();
    let last: number | null = null;
    if (box.length > 0) {
      last = box[box.length - 1]!.batch;
      const sum = new Map<string, UsageDelta>();
      for (const r of box) {
        const k = `${r.keyId}\u0000${r.day}`;
        const d = sum.get(k);
        sum.set(k, { keyId: r.keyId, day: r.day, bytes: (d?.bytes ?? 0) + r.bytes });
      }
      await addUsageBatchPg(c, this.nodeId, last, [...sum.values()]);
    }
    const u = await usageSincePg(c, Math.max(0, this.#usageSinceUs - USAGE_LOOKBACK_US));
    this.#usageSinceUs = u.newestUs;
    // Rows read again unchanged are not written, nor reported to the key manager.
    this.#changed([], this.#replica.settleUsage(last, u.rows));
  }

  /** Presence rows older than this are a node that stopped (killed, cut off). */
  #staleMs(): number {
    return Math.max(5000, 5 * (this.#o.syncMs ?? 1000));
  }

  /** Pushes what is queued (graceful shutdown); gives up quietly when the database is away. */
  async drain(): Promise<void> {
    await this.#queue(async () => {
      if (this.#client) await this.#pushUsage(this.#client).catch(() => undefined);
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    const c = this.#client;
    this.#client = null;
    c?.end().catch(() => undefined);
    void this.#sync?.close();
    this.#cache.close();
    this.#replica.close();
  }

  // ------------------------------------------------------------------ AccessKeyStore

  dataVersion(): number {
    return this.#cache.dataVersion();
  }

  /** Settings other than the default data limit belong to the node (its name, API port, ...). */
  getSetting(name: string): string | undefined {
    return this.#cache.getSetting(name);
  }

  setSetting(name: string, value: string | undefined): void {
    this.#cache.setSetting(name, value);
  }

  settingOnce(name: string, make: () => string): string {
    return this.#cache.settingOnce(name, make);
  }

  getDefaultLimit(): DataLimit | null {
    return this.#cache.getDefaultLimit();
  }

  setDefaultLimit(limit: DataLimit | null): void {
    this.#write<void>('setDefaultLimit', limit);
    this.#cache.setDefaultLimit(limit);
  }

  listKeys(): AccessKeyRecord[] {
    return this.#cache.listKeys();
  }

  getKey(id: string): AccessKeyRecord | undefined {
    return this.#cache.getKey(id);
  }

  insertKey(key: AccessKeyRecord): void {
    if (!this.#write<boolean>('insertKey', key))
      throw new LadderError('ERR_CONFLICT', `an access key with id ${key.id} already exists`);
    this.#cache.cachePutKey(key);
  }

  insertKeyWithNextId(make: (id: string) => AccessKeyRecord): AccessKeyRecord {
    for (let i = 0; i < 8; i++) {
      const key = make(this.#write<string>('nextKeyId'));
      if (this.#write<boolean>('insertKey', key)) {
        this.#cache.cachePutKey(key);
        return key;
      }
    }
    throw new LadderError('ERR_CONFLICT', 'could not take a free key id; try again');
  }

  updateKey(key: AccessKeyRecord): boolean {
    const ok = this.#write<boolean>('updateKey', key);
    if (ok) this.#cache.cachePutKey(key);
    return ok;
  }

  deleteKey(id: string): boolean {
    const ok = this.#write<boolean>('deleteKey', id);
    this.#cache.deleteKey(id);
    return ok;
  }

  addUsage(deltas: readonly UsageDelta[]): void {
    if (deltas.length === 0) return;
    this.#batch++;
    this.#cache.queueUsage(this.#batch, deltas);
    this.#cache.setSetting('fleet_usage_batch', String(this.#batch));
  }

  loadUsage(fromDay: number): Map<string, Map<number, number>> {
    return this.#cache.loadFleetUsage(fromDay);
  }

  loadUsageOf(ids: Iterable<string>, fromDay: number): Map<string, Map<number, number>> {
    return this.#cache.loadFleetUsageOf(ids, fromDay);
  }

  /**
   * The cache is written only by this object: through the key manager's own connection (which
   * does not move its dataVersion) and by the replicator, which records what it wrote.
   */
  takeChanges(): StoreChanges | null {
    const ch = this.#changes ?? {
      keys: new Set<string>(),
      usage: new Set<string>(),
      defaultLimit: false,
    };
    this.#changes = null;
    return ch;
  }

  /**
   * The other nodes' devices per key, as of the last sync; empty once that is older than the
   * staleness limit (the database is away: each node then enforces on its own devices only).
   */
  remotePresence(): ReadonlyMap<string, RemotePresence> {
    return Date.now() - this.#remoteAtMs > this.#staleMs() ? new Map() : this.#remote;
  }

  setLocalPresence(source: (newPeriod: boolean) => ReadonlyMap<string, LocalPresence>): void {
    this.#localPresence = source;
  }

  /**
   * Writes this node's presence (and reads the others') now rather than at the next sync: a new
   * device on a key with a device limit, so that another node admitting one at about the same
   * time hears of it after one round trip, not a second.
   */
  presenceSoon(): void {
    if (this.#presencePending || !this.#localPresence || this.#closed) return;
    this.#presencePending = true;
    void this.#queue(async () => {
      this.#presencePending = false;
      const c = this.#client;
      if (!c || !this.#localPresence) return;
      try {
        this.#remote = await presencePg(
          c,
          this.nodeId,
          this.#localPresence(false),
          this.#staleMs(),
        );
        this.#remoteAtMs = Date.now();
      } catch (err) {
        // The next sync tick writes it again and reports the store's health.
        debug('presence write failed: %s', codeOf(err));
      }
    });
  }

  #write<T>(op: string, ...args: unknown[]): T {
    if (this.#up !== true || !this.#sync) throw unavailable('not connected');
    return this.#sync.call<T>(op, ...args);
  }
}

function codeOf(err: unknown): string {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && /^[A-Z0-9_]{1,20}$/.test(code) ? code : 'no answer';
}
