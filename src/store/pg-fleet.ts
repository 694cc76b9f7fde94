/**
 * The fleet's shared database (PostgreSQL): its schema, its migrations and every statement the
 * nodes run on it. Used from two places: the replicator on the main thread (fleet-store.ts) and the
 * worker that runs the control plane's writes synchronously (pg-worker.ts).
 *
 * Tables (all prefixed `ladder_`, so the database can be shared with other software):
 * - `ladder_keys`: the access keys, one row each, as the SQLite store has them.
 * - `ladder_settings`: fleet-wide settings (the default data limit, the next key id).
 * - `ladder_usage`: bytes per key, UTC day and node, each row written only by its node; a node adds
 *   its deltas in batches numbered per node, and `ladder_usage_batches` holds the last batch number
 *   applied for each node, in the same transaction, so a batch retried after a lost reply is not
 *   counted twice.
 * - `ladder_nodes`: each node's name, address, port and last heartbeat (the dashboard's fleet view).
 *
 * - `ladder_presence`: per node and key, the devices connected now and the speed the node wants of
 *   the key's cap (only keys with a device limit or a speed cap), rewritten by each node every sync;
 *   rows not refreshed lately are ignored.
 *
 * Every change to a key or a fleet setting sends `NOTIFY ladder_changes` in the same transaction,
 * so listeners hear of it once it is committed: `row:<json>` carries the key's row as written (the
 * listener applies it without reading the table), `key:<id>` says "read key <id> again" (a
 * deletion, or a row too long for a notification's 8000 bytes), `setting:<name>` a fleet setting.
 * @module
 */
import type pg from 'pg';
import {
  checkMethod,
  checkTransports,
  LIMIT_PERIODS,
  type AccessKeyRecord,
  type DataLimit,
} from '../access/access-key.js';
import {
  fromRow,
  toRow,
  type KeyRow,
  type LocalPresence,
  type NodeUsage,
  type RemotePresence,
  type UsageDelta,
} from './key-store.js';

/** The NOTIFY channel of key and setting changes. */
export const CHANGES_CHANNEL = 'ladder_changes';

/** The advisory lock key every node takes to run migrations (one at a time, whoever starts). */
const MIGRATION_LOCK = 0x6c616464; // "ladd"

/**
 * Schema migrations, in order; `ladder_schema.version` is how many have run. Append only: a
 * released migration never changes.
 */
export const PG_MIGRATIONS: readonly string[] = [
  `CREATE TABLE ladder_keys (
     id           TEXT PRIMARY KEY,
     name         TEXT NOT NULL DEFAULT '',
     secret       TEXT NOT NULL,
     method       TEXT NOT NULL,
     created_ms   BIGINT NOT NULL,
     expires_ms   BIGINT,
     limit_bytes  BIGINT,
     limit_period TEXT,
     speed_bps    BIGINT,
     device_limit INTEGER,
     disabled     BOOLEAN NOT NULL DEFAULT false,
     transports   TEXT NOT NULL DEFAULT 'ss,trojan'
   );
   CREATE TABLE ladder_settings (
     name  TEXT PRIMARY KEY,
     value TEXT NOT NULL
   );
   CREATE TABLE ladder_usage (
     key_id     TEXT NOT NULL REFERENCES ladder_keys(id) ON DELETE CASCADE,
     day        INTEGER NOT NULL,
     node_id    TEXT NOT NULL,
     bytes      BIGINT NOT NULL,
     updated_us BIGINT NOT NULL,
     PRIMARY KEY (key_id, day, node_id)
   );
   CREATE INDEX ladder_usage_updated ON ladder_usage (updated_us);
   CREATE TABLE ladder_usage_batches (
     node_id TEXT PRIMARY KEY,
     batch   BIGINT NOT NULL
   );
   CREATE TABLE ladder_nodes (
     node_id     TEXT PRIMARY KEY,
     name        TEXT NOT NULL,
     public_host TEXT NOT NULL,
     port        INTEGER NOT NULL,
     started_ms  BIGINT NOT NULL,
     seen_ms     BIGINT NOT NULL,
     connections INTEGER NOT NULL DEFAULT 0,
     reach       TEXT NOT NULL DEFAULT '{}'
   );`,
  `CREATE TABLE ladder_presence (
     node_id    TEXT NOT NULL,
     key_id     TEXT NOT NULL,
     devices    INTEGER NOT NULL,
     updated_us BIGINT NOT NULL,
     PRIMARY KEY (node_id, key_id)
   );`,
  // Every write of a key takes a new revision, so a resync can tell whether anything changed from
  // the count and the sum of revisions alone, and which rows changed from (id, rev) pairs.
  `CREATE SEQUENCE ladder_keys_rev;
   ALTER TABLE ladder_keys ADD COLUMN rev BIGINT NOT NULL DEFAULT nextval('ladder_keys_rev');
   CREATE FUNCTION ladder_keys_bump() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN NEW.rev := nextval('ladder_keys_rev'); RETURN NEW; END $$;
   CREATE TRIGGER ladder_keys_rev BEFORE UPDATE ON ladder_keys
     FOR EACH ROW EXECUTE FUNCTION ladder_keys_bump();`,
  // What each node wants of a key's speed cap, so the cap is split by demand (key-manager.ts).
  `ALTER TABLE ladder_presence ADD COLUMN demand_bps BIGINT NOT NULL DEFAULT 0;`,
];

/** Longest `row:` notification sent; PostgreSQL refuses payloads of 8000 bytes or more. */
const MAX_ROW_NOTICE = 7900;

/** A change heard on the channel: a key's new row, a key to read again, or a setting. */
export type ChangeNotice =
  | { kind: 'row'; key: AccessKeyRecord; rev: number | null }
  | { kind: 'key'; id: string }
  | { kind: 'setting'; name: string };

const str = (v: unknown): v is string => typeof v === 'string';
const intOrNull = (v: unknown): v is number | null =>
  v === null || (typeof v === 'number' && Number.isSafeInteger(v));

/**
 * Decodes a `ladder_changes` payload; null for anything malformed (the caller then resyncs). The
 * payload comes from the fleet's own database, but is checked field by field all the same.
 */
export function parseChangeNotice(payload: string): ChangeNotice | null {
  if (payload.startsWith('key:'))
    return payload.length > 4 ? { kind: 'key', id: payload.slice(4) } : null;
  if (payload.startsWith('setting:')) return { kind: 'setting', name: payload.slice(8) };
  if (!payload.startsWith('row:')) return null;
  let r: unknown;
  try {
    r = JSON.parse(payload.slice(4));
  } catch {
    return null;
  }
  if (typeof r !== 'object' || r === null) return null;
  const o = r as Record<string, unknown>;
  if (
    !str(o.id) ||
    o.id === '' ||
    !str(o.name) ||
    !str(o.secret) ||
    !str(o.method) ||
    !str(o.transports) ||
    typeof o.created_ms !== 'number' ||
    !Number.isSafeInteger(o.created_ms) ||
    !intOrNull(o.expires_ms) ||
    !intOrNull(o.limit_bytes) ||
    !(o.limit_period === null || (LIMIT_PERIODS as readonly unknown[]).includes(o.limit_period)) ||
    !intOrNull(o.speed_bps) ||
    !intOrNull(o.device_limit) ||
    (o.disabled !== 0 && o.disabled !== 1) ||
    !(o.rev === undefined || (typeof o.rev === 'number' && Number.isSafeInteger(o.rev)))
  )
    return null;
  try {
    checkMethod(o.method);
    checkTransports(o.transports.split(','));
  } catch {
    return null;
  }
  return {
    kind: 'row',
    rev: typeof o.rev === 'number' ? o.rev : null,
    key: fromRow({
      id: o.id,
      name: o.name,
      secret: o.secret,
      method: o.method,
      created_ms: o.created_ms,
      expires_ms: o.expires_ms,
      limit_bytes: o.limit_bytes,
      limit_period: o.limit_period as string | null,
      speed_bps: o.speed_bps,
      device_limit: o.device_limit,
      disabled: o.disabled,
      transports: o.transports,
    }),
  };
}

/** The notification of a key written as `k` with revision `rev`. */
export function keyNotice(k: AccessKeyRecord, rev: number): string {
  const row = `row:${JSON.stringify({ ...toRow(k), rev })}`;
  return Buffer.byteLength(row) <= MAX_ROW_NOTICE ? row : `key:${k.id}`;
}

/** Runs pending migrations under an advisory lock, so nodes starting together take turns. */
export async function migratePg(c: pg.ClientBase): Promise<number> {
  await c.query('BEGIN');
  try {
    await c.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await c.query('CREATE TABLE IF NOT EXISTS ladder_schema (version INTEGER NOT NULL)');
    const r = await c.query<{ version: number }>('SELECT version FROM ladder_schema');
    let version = r.rows[0]?.version ?? 0;
    if (r.rows.length === 0) await c.query('INSERT INTO ladder_schema (version) VALUES (0)');
    if (version > PG_MIGRATIONS.length)
      throw new Error(
        `the fleet database has schema version ${version}, newer than this Ladder knows (${PG_MIGRATIONS.length}); run a newer Ladder`,
      );
    for (; version < PG_MIGRATIONS.length; version++) await c.query(PG_MIGRATIONS[version]!);
    await c.query('UPDATE ladder_schema SET version = $1', [version]);
    await c.query('COMMIT');
    return version;
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** PostgreSQL's BIGINT arrives as a string; keys' numbers are all safe integers. */
function keyFromPg(r: Record<string, unknown>): AccessKeyRecord {
  const n = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
  return fromRow({
    id: String(r.id),
    name: String(r.name),
    secret: String(r.secret),
    method: String(r.method),
    created_ms: Number(r.created_ms),
    expires_ms: n(r.expires_ms),
    limit_bytes: n(r.limit_bytes),
    limit_period: r.limit_period === null ? null : String(r.limit_period),
    speed_bps: n(r.speed_bps),
    device_limit: n(r.device_limit),
    disabled: r.disabled === true ? 1 : 0,
    transports: String(r.transports),
  } satisfies KeyRow);
}

function keyParams(k: AccessKeyRecord): unknown[] {
  const r = toRow(k);
  return [
    r.id,
    r.name,
    r.secret,
    r.method,
    r.created_ms,
    r.expires_ms,
    r.limit_bytes,
    r.limit_period,
    r.speed_bps,
    r.device_limit,
    r.disabled === 1,
    r.transports,
  ];
}

async function inTransaction<T>(c: pg.ClientBase, fn: () => Promise<T>): Promise<T> {
  await c.query('BEGIN');
  try {
    const v = await fn();
    await c.query('COMMIT');
    return v;
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

const notify = (c: pg.ClientBase, what: string): Promise<unknown> =>
  c.query('SELECT pg_notify($1, $2)', [CHANGES_CHANNEL, what]);

/** Keys with their revisions: all of them, or those of `ids`. */
export async function keysPg(
  c: pg.ClientBase,
  ids?: readonly string[],
): Promise<{ key: AccessKeyRecord; rev: number }[]> {
  const r =
    ids === undefined
      ? await c.query('SELECT * FROM ladder_keys')
      : await c.query('SELECT * FROM ladder_keys WHERE id = ANY($1::text[])', [ids]);
  return r.rows.map((x: Record<string, unknown>) => ({ key: keyFromPg(x), rev: Number(x.rev) }));
}

/** How many keys there are and the sum of their revisions: equal sums mean nothing changed. */
export async function keysSummaryPg(c: pg.ClientBase): Promise<{ count: number; revSum: bigint }> {
  const r = await c.query<{ n: string; s: string }>(
    'SELECT count(*) AS n, coalesce(sum(rev), 0)::text AS s FROM ladder_keys',
  );
  return { count: Number(r.rows[0]!.n), revSum: BigInt(r.rows[0]!.s) };
}

/** Every key's id and revision. */
export async function keyRevsPg(c: pg.ClientBase): Promise<Map<string, number>> {
  const r = await c.query<{ id: string; rev: string }>('SELECT id, rev FROM ladder_keys');
  return new Map(r.rows.map((x) => [x.id, Number(x.rev)]));
}

/** Inserts a key; false if its id is taken. */
export function insertKeyPg(c: pg.ClientBase, k: AccessKeyRecord): Promise<boolean> {
  return inTransaction(c, async () => {
    const r = await c.query(
      `INSERT INTO ladder_keys (id, name, secret, method, created_ms, expires_ms, limit_bytes, limit_period, speed_bps, device_limit, disabled, transports)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (id) DO NOTHING
       RETURNING rev`,
      keyParams(k),
    );
    if (r.rowCount !== 1) return false;
    await notify(c, keyNotice(k, Number((r.rows[0] as { rev: string }).rev)));
    return true;
  });
}

export function updateKeyPg(c: pg.ClientBase, k: AccessKeyRecord): Promise<boolean> {
  return inTransaction(c, async () => {
    const r = await c.query(
      `UPDATE ladder_keys SET name = $2, secret = $3, method = $4, created_ms = $5, expires_ms = $6,
         limit_bytes = $7, limit_period = $8, speed_bps = $9, device_limit = $10, disabled = $11,
         transports = $12 WHERE id = $1 RETURNING rev`,
      keyParams(k),
    );
    if (r.rowCount !== 1) return false;
    await notify(c, keyNotice(k, Number((r.rows[0] as { rev: string }).rev)));
    return true;
  });
}

export function deleteKeyPg(c: pg.ClientBase, id: string): Promise<boolean> {
  return inTransaction(c, async () => {
    const r = await c.query('DELETE FROM ladder_keys WHERE id = $1', [id]);
    await notify(c, `key:${id}`);
    return r.rowCount === 1;
  });
}

/**
 * Takes the fleet's next free decimal key id (Outline numbers its keys 0, 1, 2, ...): the
 * settings row is locked, so two nodes creating keys at once get different ids.
 */
export function nextKeyIdPg(c: pg.ClientBase): Promise<string> {
  return inTransaction(c, async () => {
    await c.query(
      `INSERT INTO ladder_settings (name, value) VALUES ('next_key_id', '0') ON CONFLICT (name) DO NOTHING`,
    );
    const r = await c.query<{ value: string }>(
      `SELECT value FROM ladder_settings WHERE name = 'next_key_id' FOR UPDATE`,
    );
    let next = Number(r.rows[0]?.value ?? '0');
    for (;;) {
      const taken = await c.query('SELECT 1 FROM ladder_keys WHERE id = $1', [String(next)]);
      if (taken.rowCount === 0) break;
      next++;
    }
    await c.query(`UPDATE ladder_settings SET value = $1 WHERE name = 'next_key_id'`, [
      String(next + 1),
    ]);
    return String(next);
  });
}

export async function getDefaultLimitPg(c: pg.ClientBase): Promise<DataLimit | null> {
  const r = await c.query<{ value: string }>(
    `SELECT value FROM ladder_settings WHERE name = 'access_key_data_limit'`,
  );
  const v = r.rows[0]?.value;
  return v ? (JSON.parse(v) as DataLimit) : null;
}

export function setDefaultLimitPg(c: pg.ClientBase, limit: DataLimit | null): Promise<void> {
  return inTransaction(c, async () => {
    if (limit === null)
      await c.query(`DELETE FROM ladder_settings WHERE name = 'access_key_data_limit'`);
    else
      await c.query(
        `INSERT INTO ladder_settings (name, value) VALUES ('access_key_data_limit', $1)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value`,
        [JSON.stringify(limit)],
      );
    await notify(c, 'setting:access_key_data_limit');
  });
}

/**
 * Adds one numbered batch of a node's usage: the deltas are added to its rows (an UPSERT, so nodes
 * never overwrite each other) unless the batch was applied already. Rows of deleted keys are
 * skipped. Returns whether the batch was new.
 */
export function addUsageBatchPg(
  c: pg.ClientBase,
  nodeId: string,
  batch: number,
  deltas: readonly UsageDelta[],
): Promise<boolean> {
  return inTransaction(c, async () => {
    const r = await c.query(
      `INSERT INTO ladder_usage_batches (node_id, batch) VALUES ($1, $2)
       ON CONFLICT (node_id) DO UPDATE SET batch = excluded.batch
       WHERE ladder_usage_batches.batch < excluded.batch`,
      [nodeId, batch],
    );
    if (r.rowCount !== 1) return false;
    if (deltas.length === 0) return true;
    await c.query(
      `INSERT INTO ladder_usage (key_id, day, node_id, bytes, updated_us)
       SELECT d.key_id, d.day, $1, d.bytes, (extract(epoch FROM clock_timestamp()) * 1e6)::bigint
       FROM unnest($2::text[], $3::int[], $4::bigint[]) AS d(key_id, day, bytes)
       WHERE EXISTS (SELECT 1 FROM ladder_keys k WHERE k.id = d.key_id)
       ON CONFLICT (key_id, day, node_id) DO UPDATE
         SET bytes = ladder_usage.bytes + excluded.bytes, updated_us = excluded.updated_us`,
      [nodeId, deltas.map((d) => d.keyId), deltas.map((d) => d.day), deltas.map((d) => d.bytes)],
    );
    return true;
  });
}

/**
 * Usage rows changed after `sinceUs` (the database's clock, microseconds), and the newest change
 * seen. Callers read again from a little before the newest they saw: a transaction that commits
 * late may carry an older timestamp, and reading a row twice is harmless (rows hold totals).
 */
export async function usageSincePg(
  c: pg.ClientBase,
  sinceUs: number,
): Promise<{ rows: NodeUsage[]; newestUs: number }> {
  const r = await c.query<{
    key_id: string;
    day: number;
    node_id: string;
    bytes: string;
    updated_us: string;
  }>('SELECT key_id, day, node_id, bytes, updated_us FROM ladder_usage WHERE updated_us > $1', [
    sinceUs,
  ]);
  let newestUs = sinceUs;
  const rows = r.rows.map((x) => {
    newestUs = Math.max(newestUs, Number(x.updated_us));
    return { keyId: x.key_id, day: x.day, nodeId: x.node_id, bytes: Number(x.bytes) };
  });
  return { rows, newestUs };
}

/** A node's row in the fleet list. */
export interface FleetNode {
  nodeId: string;
  name: string;
  publicHost: string;
  port: number;
  startedMs: number;
  seenMs: number;
  connections: number;
  /** How clients reach the node's transports (the admin service's Reachability, as JSON). */
  reach: string;
}

export async function heartbeatPg(c: pg.ClientBase, n: FleetNode): Promise<FleetNode[]> {
  await c.query(
    `INSERT INTO ladder_nodes (node_id, name, public_host, port, started_ms, seen_ms, connections, reach)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
     ON CONFLICT (node_id) DO UPDATE SET name = excluded.name, public_host = excluded.public_host,
       port = excluded.port, started_ms = excluded.started_ms, seen_ms = excluded.seen_ms,
       connections = excluded.connections, reach = excluded.reach`,
    [n.nodeId, n.name, n.publicHost, n.port, n.startedMs, n.seenMs, n.connections, n.reach],
  );
  const r = await c.query('SELECT * FROM ladder_nodes ORDER BY started_ms, node_id');
  return r.rows.map((x: Record<string, unknown>) => ({
    nodeId: String(x.node_id),
    name: String(x.name),
    publicHost: String(x.public_host),
    port: Number(x.port),
    startedMs: Number(x.started_ms),
    seenMs: Number(x.seen_ms),
    connections: Number(x.connections),
    reach: String(x.reach),
  }));
}

/**
 * Replaces this node's presence rows with `local` (key id -> devices connected here and the speed
 * it wants), and returns the other nodes' rows refreshed within `staleMs`, summed per key.
 */
export async function presencePg(
  c: pg.ClientBase,
  nodeId: string,
  local: ReadonlyMap<string, LocalPresence>,
  staleMs: number,
): Promise<Map<string, RemotePresence>> {
  const ids = [...local.keys()];
  await c.query(
    'DELETE FROM ladder_presence WHERE node_id = $1 AND NOT (key_id = ANY($2::text[]))',
    [nodeId, ids],
  );
  if (ids.length > 0)
    await c.query(
      `INSERT INTO ladder_presence (node_id, key_id, devices, demand_bps, updated_us)
       SELECT $1, d.key_id, d.devices, d.demand, (extract(epoch FROM clock_timestamp()) * 1e6)::bigint
       FROM unnest($2::text[], $3::int[], $4::bigint[]) AS d(key_id, devices, demand)
       ON CONFLICT (node_id, key_id) DO UPDATE
         SET devices = excluded.devices, demand_bps = excluded.demand_bps,
             updated_us = excluded.updated_us`,
      [
        nodeId,
        ids,
        ids.map((id) => local.get(id)!.devices),
        ids.map((id) => Math.max(0, Math.round(local.get(id)!.demandBps))),
      ],
    );
  const r = await c.query<{ key_id: string; devices: string; nodes: string; demand: string }>(
    `SELECT key_id, SUM(devices) AS devices, COUNT(*) AS nodes, SUM(demand_bps) AS demand
     FROM ladder_presence
     WHERE node_id <> $1 AND devices > 0
       AND updated_us > (extract(epoch FROM clock_timestamp()) * 1e6)::bigint - $2::bigint * 1000
     GROUP BY key_id`,
    [nodeId, staleMs],
  );
  return new Map(
    r.rows.map((x) => [
      x.key_id,
      { devices: Number(x.devices), nodes: Number(x.nodes), demandBps: Number(x.demand) },
    ]),
  );
}

/** Removes a node from the fleet list (a blocked server that was replaced). */
export async function forgetNodePg(c: pg.ClientBase, nodeId: string): Promise<boolean> {
  const r = await c.query('DELETE FROM ladder_nodes WHERE node_id = $1', [nodeId]);
  await c.query('DELETE FROM ladder_usage_batches WHERE node_id = $1', [nodeId]);
  await c.query('DELETE FROM ladder_presence WHERE node_id = $1', [nodeId]);
  return r.rowCount === 1;
}
