/**
 * The operator's data directory: one SQLite database (WAL mode) holding the server's settings, its
 * access keys and their daily usage, and nothing else (docs/privacy.md lists every column).
 *
 * Durability: every change to a key or a setting is its own committed transaction before the call
 * returns (synchronous=FULL), so a `kill -9` loses none. Usage is counted in memory by the key
 * manager and written here in one transaction every second or so; a crash loses at most that.
 *
 * Files: the directory is made 0700 and the database 0600 before SQLite opens it; SQLite creates
 * its -wal and -shm files with the database's mode.
 * @module
 */
import { chmodSync, closeSync, mkdirSync, openSync, statSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { LadderError } from '../errors.js';
import type {
  AccessKeyRecord,
  DataLimit,
  KeyTransport,
  LimitPeriod,
} from '../access/access-key.js';
import type { SsMethod } from '../crypto/methods.js';

export const DB_FILE = 'ladder.db';

/**
 * Schema migrations, in order; `PRAGMA user_version` is how many have run. Append only: a released
 * migration never changes.
 */
export const MIGRATIONS: readonly string[] = [
  // 1: settings, keys, daily usage
  `CREATE TABLE settings (
     name  TEXT PRIMARY KEY,
     value TEXT NOT NULL
   ) WITHOUT ROWID;
   CREATE TABLE access_keys (
     id           TEXT PRIMARY KEY,
     name         TEXT NOT NULL DEFAULT '',
     secret       TEXT NOT NULL,
     method       TEXT NOT NULL,
     created_ms   INTEGER NOT NULL,
     expires_ms   INTEGER,
     limit_bytes  INTEGER,
     limit_period TEXT,
     speed_bps    INTEGER,
     device_limit INTEGER,
     disabled     INTEGER NOT NULL DEFAULT 0
   ) WITHOUT ROWID;
   CREATE TABLE usage_daily (
     key_id TEXT NOT NULL REFERENCES access_keys(id) ON DELETE CASCADE,
     day    INTEGER NOT NULL,
     bytes  INTEGER NOT NULL,
     PRIMARY KEY (key_id, day)
   ) WITHOUT ROWID;`,
  // 2: which transports accept each key (existing keys keep all of them)
  `ALTER TABLE access_keys ADD COLUMN transports TEXT NOT NULL DEFAULT 'ss,trojan';`,
  // 3: a fleet node's cache (fleet-store.ts): usage counted here and not yet in the fleet's
  // database (the outbox, in numbered batches), and the fleet's usage per node as last read from it
  `CREATE TABLE usage_outbox (
     batch  INTEGER NOT NULL,
     key_id TEXT NOT NULL,
     day    INTEGER NOT NULL,
     bytes  INTEGER NOT NULL,
     PRIMARY KEY (batch, key_id, day)
   ) WITHOUT ROWID;
   CREATE TABLE usage_fleet (
     key_id  TEXT NOT NULL,
     day     INTEGER NOT NULL,
     node_id TEXT NOT NULL,
     bytes   INTEGER NOT NULL,
     PRIMARY KEY (key_id, day, node_id)
   ) WITHOUT ROWID;`,
];

/**
 * What the key manager, the admin service and the operator need from a store. Reads are
 * synchronous and local; `KeyStore` (SQLite, one server) and `FleetStore` (PostgreSQL shared by a
 * fleet, with a SQLite cache) implement it.
 */
export interface AccessKeyStore {
  /** The node's own directory (certificates, access.txt, the SQLite file or cache). */
  readonly dir: string;
  close(): void;
  /** Changes when keys, settings or usage changed other than through this object. */
  dataVersion(): number;
  getSetting(name: string): string | undefined;
  setSetting(name: string, value: string | undefined): void;
  settingOnce(name: string, make: () => string): string;
  getDefaultLimit(): DataLimit | null;
  setDefaultLimit(limit: DataLimit | null): void;
  listKeys(): AccessKeyRecord[];
  getKey(id: string): AccessKeyRecord | undefined;
  insertKey(key: AccessKeyRecord): void;
  insertKeyWithNextId(make: (id: string) => AccessKeyRecord): AccessKeyRecord;
  updateKey(key: AccessKeyRecord): boolean;
  deleteKey(id: string): boolean;
  addUsage(deltas: readonly UsageDelta[]): void;
  loadUsage(fromDay: number): Map<string, Map<number, number>>;
  /**
   * What moved `dataVersion()` since the last call, when the store knows it (a fleet node's cache,
   * written only by its replicator): the key manager then re-reads those keys and their usage
   * alone. `null`: unknown, re-read everything. Stores without the method are always re-read.
   */
  takeChanges?(): StoreChanges | null;
  /** Like loadUsage, for the given keys only. */
  loadUsageOf?(ids: Iterable<string>, fromDay: number): Map<string, Map<number, number>>;
  /**
   * A fleet's other nodes: per key, the devices connected on them and on how many nodes, as last
   * reported (empty when unknown or too old, so an outage falls back to per-node limits).
   */
  remotePresence?(): ReadonlyMap<string, RemotePresence>;
  /** Gives a fleet store this node's devices per key (keys with a device limit or speed cap). */
  setLocalPresence?(source: (newPeriod: boolean) => ReadonlyMap<string, LocalPresence>): void;
  /** Tells a fleet store that a new device was let in on a key with a device limit: write soon. */
  presenceSoon?(): void;
}

/** Keys and usage changed in a store since the key manager last looked. */
export interface StoreChanges {
  readonly keys: ReadonlySet<string>;
  readonly usage: ReadonlySet<string>;
  readonly defaultLimit: boolean;
}

/** One key on the fleet's other nodes. */
export interface RemotePresence {
  /** Devices (distinct client addresses, counted per node) connected with the key. */
  readonly devices: number;
  /** Nodes where the key has at least one connection. */
  readonly nodes: number;
  /** What those nodes want of the key's speed cap, bytes per second, summed (LocalPresence). */
  readonly demandBps: number;
}

/** What this node tells the fleet about a key with a device limit or a speed cap. */
export interface LocalPresence {
  /** Devices (distinct client addresses) connected here. */
  readonly devices: number;
  /**
   * Bytes per second this node wants of the key's speed cap: what it carried in the last period
   * (the busier direction), or the whole cap when the cap held a read back (it wants more).
   */
  readonly demandBps: number;
}

/** One row of the fleet's usage: bytes a node counted for a key on a day. */
export interface NodeUsage {
  readonly keyId: string;
  readonly day: number;
  readonly nodeId: string;
  readonly bytes: number;
}

export interface KeyRow {
  id: string;
  name: string;
  secret: string;
  method: string;
  created_ms: number;
  expires_ms: number | null;
  limit_bytes: number | null;
  limit_period: string | null;
  speed_bps: number | null;
  device_limit: number | null;
  disabled: number;
  transports: string;
}

export function fromRow(r: KeyRow): AccessKeyRecord {
  return {
    id: r.id,
    name: r.name,
    secret: r.secret,
    method: r.method as SsMethod,
    transports: r.transports.split(',') as KeyTransport[],
    createdMs: r.created_ms,
    expiresMs: r.expires_ms,
    dataLimit:
      r.limit_bytes === null
        ? null
        : { bytes: r.limit_bytes, period: (r.limit_period ?? '30d') as LimitPeriod },
    speedLimitBps: r.speed_bps,
    deviceLimit: r.device_limit,
    disabled: r.disabled !== 0,
  };
}

export function toRow(k: AccessKeyRecord): KeyRow {
  return {
    id: k.id,
    name: k.name,
    secret: k.secret,
    method: k.method,
    created_ms: k.createdMs,
    expires_ms: k.expiresMs,
    limit_bytes: k.dataLimit?.bytes ?? null,
    limit_period: k.dataLimit?.period ?? null,
    speed_bps: k.speedLimitBps,
    device_limit: k.deviceLimit,
    disabled: k.disabled ? 1 : 0,
    transports: k.transports.join(','),
  };
}

/** One row of usage to add: `bytes` more for `keyId` on UTC day `day`. */
export interface UsageDelta {
  readonly keyId: string;
  readonly day: number;
  readonly bytes: number;
}

export class KeyStore implements AccessKeyStore {
  readonly dir: string;
  readonly #db: Database.Database;
  readonly #stmts;

  /** Opens (creating if needed) the store in `dir`, running any pending migrations. */
  static open(dir: string): KeyStore {
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new LadderError(
        'ERR_CONFIG',
        `--data ${dir}: cannot create the data directory (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); choose a writable path`,
      );
    }
    const st = statSync(dir);
    if (!st.isDirectory()) throw new LadderError('ERR_CONFIG', `--data ${dir}: not a directory`);
    if ((st.mode & 0o077) !== 0) chmodSync(dir, 0o700);
    const file = join(dir, DB_FILE);
    // Create the file ourselves so it is 0600 from its first byte; SQLite gives -wal/-shm the same mode.
    closeSync(openSync(file, 'a', 0o600));
    chmodSync(file, 0o600);
    let db: Database.Database;
    try {
      db = new Database(file);
    } catch (err) {
      throw new LadderError(
        'ERR_CONFIG',
        `--data ${dir}: cannot open ${DB_FILE}: ${(err as Error).message}`,
      );
    }
    try {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = ON');
      db.pragma('busy_timeout = 2000');
      migrate(db, dir);
    } catch (err) {
      db.close();
      if (err instanceof LadderError) throw err;
      throw new LadderError(
        'ERR_CONFIG',
        `--data ${dir}: ${DB_FILE} is not a usable Ladder database (${(err as Error).message}); move it aside or choose another directory`,
      );
    }
    return new KeyStore(dir, db);
  }

  private constructor(dir: string, db: Database.Database) {
    this.dir = dir;
    this.#db = db;
    this.#stmts = {
      getSetting: db.prepare<[string], { value: string }>(
        'SELECT value FROM settings WHERE name = ?',
      ),
      setSetting: db.prepare<[string, string]>(
        'INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value',
      ),
      delSetting: db.prepare<[string]>('DELETE FROM settings WHERE name = ?'),
      listKeys: db.prepare<[], KeyRow>('SELECT * FROM access_keys'),
      getKey: db.prepare<[string], KeyRow>('SELECT * FROM access_keys WHERE id = ?'),
      insertKey: db.prepare<KeyRow>(
        `INSERT INTO access_keys (id, name, secret, method, created_ms, expires_ms, limit_bytes, limit_period, speed_bps, device_limit, disabled, transports)
         VALUES (@id, @name, @secret, @method, @created_ms, @expires_ms, @limit_bytes, @limit_period, @speed_bps, @device_limit, @disabled, @transports)`,
      ),
      updateKey: db.prepare<KeyRow>(
        `UPDATE access_keys SET name = @name, secret = @secret, method = @method, expires_ms = @expires_ms,
           limit_bytes = @limit_bytes, limit_period = @limit_period, speed_bps = @speed_bps,
           device_limit = @device_limit, disabled = @disabled, transports = @transports WHERE id = @id`,
      ),
      deleteKey: db.prepare<[string]>('DELETE FROM access_keys WHERE id = ?'),
      addUsage: db.prepare<{ key: string; day: number; bytes: number }>(
        `INSERT INTO usage_daily (key_id, day, bytes) SELECT @key, @day, @bytes WHERE EXISTS (SELECT 1 FROM access_keys WHERE id = @key)
         ON CONFLICT(key_id, day) DO UPDATE SET bytes = bytes + excluded.bytes`,
      ),
      usageSince: db.prepare<[number], { key_id: string; day: number; bytes: number }>(
        'SELECT key_id, day, bytes FROM usage_daily WHERE day >= ?',
      ),
      usageBefore: db.prepare<[number], { key_id: string; bytes: number }>(
        'SELECT key_id, SUM(bytes) AS bytes FROM usage_daily WHERE day < ? GROUP BY key_id',
      ),
      upsertKey: db.prepare<KeyRow>(
        `INSERT INTO access_keys (id, name, secret, method, created_ms, expires_ms, limit_bytes, limit_period, speed_bps, device_limit, disabled, transports)
         VALUES (@id, @name, @secret, @method, @created_ms, @expires_ms, @limit_bytes, @limit_period, @speed_bps, @device_limit, @disabled, @transports)
         ON CONFLICT(id) DO UPDATE SET name = excluded.name, secret = excluded.secret, method = excluded.method,
           created_ms = excluded.created_ms, expires_ms = excluded.expires_ms, limit_bytes = excluded.limit_bytes,
           limit_period = excluded.limit_period, speed_bps = excluded.speed_bps, device_limit = excluded.device_limit,
           disabled = excluded.disabled, transports = excluded.transports`,
      ),
      queueUsage: db.prepare<{ batch: number; key: string; day: number; bytes: number }>(
        `INSERT INTO usage_outbox (batch, key_id, day, bytes) VALUES (@batch, @key, @day, @bytes)
         ON CONFLICT(batch, key_id, day) DO UPDATE SET bytes = bytes + excluded.bytes`,
      ),
      outbox: db.prepare<[], { batch: number; key_id: string; day: number; bytes: number }>(
        'SELECT batch, key_id, day, bytes FROM usage_outbox ORDER BY batch',
      ),
      dropOutbox: db.prepare<[number]>('DELETE FROM usage_outbox WHERE batch <= ?'),
      putFleetUsage: db.prepare<{ key: string; day: number; node: string; bytes: number }>(
        `INSERT INTO usage_fleet (key_id, day, node_id, bytes) VALUES (@key, @day, @node, @bytes)
         ON CONFLICT(key_id, day, node_id) DO UPDATE SET bytes = excluded.bytes
         WHERE bytes != excluded.bytes`,
      ),
      outboxKeys: db.prepare<[number], { key_id: string }>(
        'SELECT DISTINCT key_id FROM usage_outbox WHERE batch <= ?',
      ),
      fleetUsageSince: db.prepare<{ d: number }, { key_id: string; day: number; bytes: number }>(
        `SELECT key_id, day, SUM(bytes) AS bytes FROM (
           SELECT key_id, day, bytes FROM usage_fleet WHERE day >= @d
           UNION ALL SELECT key_id, day, bytes FROM usage_outbox WHERE day >= @d)
         GROUP BY key_id, day`,
      ),
      fleetUsageOfSince: db.prepare<{ d: number; k: string }, { day: number; bytes: number }>(
        `SELECT day, SUM(bytes) AS bytes FROM (
           SELECT day, bytes FROM usage_fleet WHERE key_id = @k AND day >= @d
           UNION ALL SELECT day, bytes FROM usage_outbox WHERE key_id = @k AND day >= @d)
         GROUP BY day`,
      ),
      fleetUsageOfBefore: db.prepare<{ d: number; k: string }, { bytes: number | null }>(
        `SELECT SUM(bytes) AS bytes FROM (
           SELECT bytes FROM usage_fleet WHERE key_id = @k AND day < @d
           UNION ALL SELECT bytes FROM usage_outbox WHERE key_id = @k AND day < @d)`,
      ),
      fleetUsageBefore: db.prepare<{ d: number }, { key_id: string; bytes: number }>(
        `SELECT key_id, SUM(bytes) AS bytes FROM (
           SELECT key_id, bytes FROM usage_fleet WHERE day < @d
           UNION ALL SELECT key_id, bytes FROM usage_outbox WHERE day < @d)
         GROUP BY key_id`,
      ),
    };
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }

  /** Changes when another connection (another `ladder` process) has committed to the database. */
  dataVersion(): number {
    return this.#db.pragma('data_version', { simple: true }) as number;
  }

  // --------------------------------------------------------------------- settings

  getSetting(name: string): string | undefined {
    return this.#stmts.getSetting.get(name)?.value;
  }

  setSetting(name: string, value: string | undefined): void {
    if (value === undefined) this.#stmts.delSetting.run(name);
    else this.#stmts.setSetting.run(name, value);
  }

  /** A setting that is made once (server id, API prefix...) and kept for ever. */
  settingOnce(name: string, make: () => string): string {
    return this.#db
      .transaction(() => {
        const v = this.getSetting(name);
        if (v !== undefined) return v;
        const made = make();
        this.setSetting(name, made);
        return made;
      })
      .immediate();
  }

  getDefaultLimit(): DataLimit | null {
    const v = this.getSetting('access_key_data_limit');
    return v ? (JSON.parse(v) as DataLimit) : null;
  }

  setDefaultLimit(limit: DataLimit | null): void {
    this.setSetting('access_key_data_limit', limit ? JSON.stringify(limit) : undefined);
  }

  // --------------------------------------------------------------------- keys

  listKeys(): AccessKeyRecord[] {
    return this.#stmts.listKeys.all().map(fromRow);
  }

  getKey(id: string): AccessKeyRecord | undefined {
    const r = this.#stmts.getKey.get(id);
    return r ? fromRow(r) : undefined;
  }

  /** Inserts a key; ERR_CONFLICT if the id is taken. */
  insertKey(key: AccessKeyRecord): void {
    try {
      this.#stmts.insertKey.run(toRow(key));
    } catch (err) {
      if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY')
        throw new LadderError('ERR_CONFLICT', `an access key with id ${key.id} already exists`);
      throw err;
    }
  }

  /** Takes the next free decimal id (Outline numbers its keys 0, 1, 2, ...) and inserts the key. */
  insertKeyWithNextId(make: (id: string) => AccessKeyRecord): AccessKeyRecord {
    return this.#db
      .transaction(() => {
        let next = Number(this.getSetting('next_key_id') ?? '0');
        while (this.#stmts.getKey.get(String(next))) next++;
        const key = make(String(next));
        this.#stmts.insertKey.run(toRow(key));
        this.setSetting('next_key_id', String(next + 1));
        return key;
      })
      .immediate();
  }

  updateKey(key: AccessKeyRecord): boolean {
    return this.#stmts.updateKey.run(toRow(key)).changes === 1;
  }

  deleteKey(id: string): boolean {
    return this.#stmts.deleteKey.run(id).changes === 1;
  }

  // --------------------------------------------------------------------- usage

  /** Adds usage rows in one transaction; rows of keys deleted meanwhile are skipped. */
  addUsage(deltas: readonly UsageDelta[]): void {
    if (deltas.length === 0) return;
    // Usage is flushed every second from the server's event loop. In WAL mode, synchronous=NORMAL
    // still keeps every commit when the process dies (kill -9: the bytes are in the kernel's page
    // cache); only a power cut may lose the last flushes, which a crash loses anyway (usage is
    // counted in memory). It spares an fsync per flush. Keys and settings stay FULL.
    this.#db.pragma('synchronous = NORMAL');
    try {
      this.#db.transaction(() => {
        for (const d of deltas)
          this.#stmts.addUsage.run({ key: d.keyId, day: d.day, bytes: d.bytes });
      })();
    } finally {
      this.#db.pragma('synchronous = FULL');
    }
  }

  // --------------------------------------------------------------------- fleet cache

  /** Inserts or overwrites a key as the fleet's database has it. */
  cachePutKey(key: AccessKeyRecord): void {
    this.#stmts.upsertKey.run(toRow(key));
  }

  /** Writes keys as the fleet's database has them and drops `gone`, in one transaction. */
  cacheApply(keys: readonly AccessKeyRecord[], gone: readonly string[]): void {
    this.#db.transaction(() => {
      for (const k of keys) this.#stmts.upsertKey.run(toRow(k));
      for (const id of gone) this.#stmts.deleteKey.run(id);
    })();
  }

  /**
   * Makes the cached keys exactly `keys` (deleted ones go, with their cached usage), writing only
   * the rows that differ; returns the ids of those.
   */
  cacheReplaceKeys(keys: readonly AccessKeyRecord[]): string[] {
    return this.#db.transaction(() => {
      const have = new Map<string, string>();
      for (const r of this.#stmts.listKeys.all()) have.set(r.id, JSON.stringify(fromRow(r)));
      const changed: string[] = [];
      for (const k of keys) {
        const row = toRow(k);
        if (have.get(k.id) !== JSON.stringify(fromRow(row))) {
          this.#stmts.upsertKey.run(row);
          changed.push(k.id);
        }
        have.delete(k.id);
      }
      for (const id of have.keys()) {
        this.deleteKey(id);
        changed.push(id);
      }
      return changed;
    })();
  }

  /**
   * Queues usage for the fleet's database in batch `batch` (the disk buffer that outlives the
   * process and outages). Same synchronous=NORMAL reasoning as addUsage.
   */
  queueUsage(batch: number, deltas: readonly UsageDelta[]): void {
    if (deltas.length === 0) return;
    this.#db.pragma('synchronous = NORMAL');
    try {
      this.#db.transaction(() => {
        for (const d of deltas)
          this.#stmts.queueUsage.run({ batch, key: d.keyId, day: d.day, bytes: d.bytes });
      })();
    } finally {
      this.#db.pragma('synchronous = FULL');
    }
  }

  /** The queued usage, oldest batch first. */
  outbox(): { batch: number; keyId: string; day: number; bytes: number }[] {
    return this.#stmts.outbox
      .all()
      .map((r) => ({ batch: r.batch, keyId: r.key_id, day: r.day, bytes: r.bytes }));
  }

  /**
   * In one transaction: drops the batches up to `batch` (now in the fleet's database) and records
   * the fleet's per-node usage rows read back from it.
   */
  settleUsage(batch: number | null, rows: readonly NodeUsage[]): Set<string> {
    const changed = new Set<string>();
    if (batch === null && rows.length === 0) return changed;
    this.#db.transaction(() => {
      if (batch !== null) {
        for (const r of this.#stmts.outboxKeys.all(batch)) changed.add(r.key_id);
        this.#stmts.dropOutbox.run(batch);
      }
      for (const r of rows)
        if (
          this.#stmts.putFleetUsage.run({
            key: r.keyId,
            day: r.day,
            node: r.nodeId,
            bytes: r.bytes,
          }).changes > 0
        )
          changed.add(r.keyId);
    })();
    return changed;
  }

  /** loadFleetUsage for the given keys only. */
  loadFleetUsageOf(ids: Iterable<string>, fromDay: number): Map<string, Map<number, number>> {
    const out = new Map<string, Map<number, number>>();
    for (const k of ids) {
      const m = new Map<number, number>();
      const before = this.#stmts.fleetUsageOfBefore.get({ d: fromDay, k })?.bytes;
      if (before) m.set(fromDay - 1, before);
      for (const r of this.#stmts.fleetUsageOfSince.all({ d: fromDay, k })) m.set(r.day, r.bytes);
      if (m.size > 0) out.set(k, m);
    }
    return out;
  }

  /** Like loadUsage, over the fleet's usage plus this node's queue. */
  loadFleetUsage(fromDay: number): Map<string, Map<number, number>> {
    const out = new Map<string, Map<number, number>>();
    const get = (id: string): Map<number, number> => {
      let m = out.get(id);
      if (!m) out.set(id, (m = new Map()));
      return m;
    };
    for (const r of this.#stmts.fleetUsageBefore.all({ d: fromDay }))
      get(r.key_id).set(fromDay - 1, r.bytes);
    for (const r of this.#stmts.fleetUsageSince.all({ d: fromDay }))
      get(r.key_id).set(r.day, r.bytes);
    return out;
  }

  /** Per-key usage of one node, or of every node (the dashboard's per-server view). */
  fleetUsageByNode(): { nodeId: string; keyId: string; bytes: number }[] {
    return this.#db
      .prepare<[], { node_id: string; key_id: string; bytes: number }>(
        'SELECT node_id, key_id, SUM(bytes) AS bytes FROM usage_fleet GROUP BY node_id, key_id',
      )
      .all()
      .map((r) => ({ nodeId: r.node_id, keyId: r.key_id, bytes: r.bytes }));
  }

  /**
   * Usage as the key manager keeps it: per key, bytes per day from `fromDay` on, and everything
   * older summed into the day `fromDay - 1`.
   */
  loadUsage(fromDay: number): Map<string, Map<number, number>> {
    const out = new Map<string, Map<number, number>>();
    const get = (id: string): Map<number, number> => {
      let m = out.get(id);
      if (!m) out.set(id, (m = new Map()));
      return m;
    };
    for (const r of this.#stmts.usageBefore.all(fromDay)) get(r.key_id).set(fromDay - 1, r.bytes);
    for (const r of this.#stmts.usageSince.all(fromDay)) get(r.key_id).set(r.day, r.bytes);
    return out;
  }
}

function migrate(db: Database.Database, dir: string): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > MIGRATIONS.length)
    throw new LadderError(
      'ERR_CONFIG',
      `--data ${dir}: the database has schema version ${version}, newer than this Ladder knows (${MIGRATIONS.length}); run a newer Ladder`,
    );
  for (let v = version; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v]!);
      db.pragma(`user_version = ${v + 1}`);
    }).immediate();
  }
}
