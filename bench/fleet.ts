/**
 * `node dist/bench/fleet.js [--keys=10000] [--users=1000] [--seconds=20] [--changes=100]`: a fleet of
 * three `ladder server --store` nodes on one throwaway PostgreSQL (test/helpers/postgres.ts) against
 * one `ladder server --data` node (SQLite), with the same keys. Never run as a test.
 *
 *   propagation: a key disabled or enabled through node 0's API, timed from the PATCH sent until
 *                nodes 1 and 2 show it (their APIs polled every 5 ms from the start, each on its
 *                own: the figure includes up to 5 ms of polling); p50/p99
 *   load:        `users` Shadowsocks connections at once, each with its own key, spread over the
 *                three nodes, each fetching 256 KB again and again for `seconds`; the same per-node
 *                share (users / 3) against the SQLite node
 *   database:    transactions and rows written per second in PostgreSQL during the load
 *                (pg_stat_database), and the nodes' CPU (% of one core) and peak RSS
 * Every load is bounded in count and time; every process is stopped by its PID.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import pg from 'pg';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { DB_FILE, KeyStore } from '../src/store/key-store.js';
import { startPostgres } from '../test/helpers/postgres.js';
import {
  dialerFor,
  fetchThrough,
  startOperatorServer,
  tempDataDir,
  type OperatorServer,
} from '../test/helpers/operator.js';
import { startProcess } from '../test/helpers/peers.js';
import { fileURLToPath } from 'node:url';

const arg = (name: string, def: number): number =>
  Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? def);
const KEYS = arg('keys', 10_000);
const USERS = arg('users', 1000);
const SECONDS = arg('seconds', 20);
const CHANGES = arg('changes', 100);
/** Distinct client addresses the users come from (127.1.x.y), as users behind that many NATs. */
const SOURCES = arg('sources', USERS);
const sourceOf = (i: number): string => {
  const n = i % SOURCES;
  return `127.1.${Math.floor(n / 250)}.${1 + (n % 250)}`;
};
const METHOD = 'chacha20-ietf-poly1305';

function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}
function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
}
const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};

interface Key {
  id: string;
  method: string;
  password: string;
  ladder: { state: string };
}

/** `users` loops, each on its own key and node, fetching 256 KB until the deadline. */
async function load(
  targets: { node: OperatorServer; key: Key; localAddress?: string }[],
  originPort: number,
  seconds: number,
  pids: number[],
): Promise<{
  bytes: number;
  fetches: number;
  errors: number;
  errorKinds: Record<string, number>;
  fetchMs: { p50: number; p99: number };
  cpuPct: number[];
  peakRssMb: number[];
}> {
  const end = Date.now() + seconds * 1000;
  const cpu0 = pids.map(cpuTicks);
  const t0 = performance.now();
  const peak = pids.map(() => 0);
  const sampler = setInterval(
    () => pids.forEach((p, i) => (peak[i] = Math.max(peak[i]!, rssMb(p)))),
    500,
  );
  let bytes = 0;
  let errors = 0;
  const errorKinds: Record<string, number> = {};
  const failed = (kind: string): void => {
    errors++;
    errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
  };
  const fetchMs: number[] = [];
  await Promise.all(
    targets.map(async ({ node, key, localAddress }) => {
      const d = dialerFor(node.port, key, localAddress);
      while (Date.now() < end) {
        const f0 = performance.now();
        try {
          const r = await fetchThrough(d, originPort, '/bytes/262144');
          bytes += r.bodyBytes;
          // What went wrong: no answer at all, a head but a short body, and how the stream ended.
          if (r.bodyBytes !== 262144) failed(`${r.head ? 'short body' : 'no answer'}, ${r.ended}`);
        } catch (err) {
          failed(`dial: ${(err as { code?: string }).code ?? (err as Error).message}`);
        }
        fetchMs.push(performance.now() - f0);
      }
    }),
  );
  clearInterval(sampler);
  const s = (performance.now() - t0) / 1000;
  return {
    bytes,
    fetches: fetchMs.length,
    errors,
    errorKinds,
    fetchMs: { p50: Math.round(pct(fetchMs, 50)), p99: Math.round(pct(fetchMs, 99)) },
    cpuPct: pids.map((p, i) => ((cpuTicks(p) - cpu0[i]!) / 100 / s) * 100),
    peakRssMb: peak,
  };
}

async function main(): Promise<void> {
  const pgs = await startPostgres();
  // The origin in its own process: in this one, 1,000 client loops kept it from accepting in
  // time, its listen queue overflowed and the nodes' dials to it hit their 10 s deadline.
  const originScript = fileURLToPath(new URL('./origin-process.js', import.meta.url));
  const originProc = await startProcess(
    [process.execPath, originScript],
    /origin listening on (\d+)/,
  );
  const origin = { port: Number(originProc.match[1]), close: () => originProc.stop() };
  const dirs = [tempDataDir(), tempDataDir(), tempDataDir(), tempDataDir()];
  const nodes: OperatorServer[] = [];
  try {
    // Every user comes from 127.0.0.1: the per-source pre-authentication cap must let them all in.
    const caps = [
      '--max-connections',
      String(USERS + 100),
      '--max-unauthenticated-per-source',
      String(USERS + 100),
    ];
    const extra = ['--store', pgs.url, '--no-udp', ...caps];
    nodes.push(await startOperatorServer(dirs[0]!.dir, extra, undefined, undefined, 120_000));
    // The keys go straight into PostgreSQL (as a migration from another panel would).
    const c = new pg.Client({ connectionString: pgs.url });
    c.on('error', () => undefined); // the database is stopped at the end, maybe before c.end()
    await c.connect();
    await c.query(
      `INSERT INTO ladder_keys (id, name, secret, method, created_ms, limit_bytes, limit_period)
       SELECT 'b' || g, 'bench ' || g, md5(g::text || random()::text), $1, $2, 1e15, '30d'
       FROM generate_series(1, $3) AS g`,
      [METHOD, Date.now(), KEYS],
    );
    await c.query(`SELECT pg_notify('ladder_changes', 'key:b1')`);
    // FLEET_BENCH_DEBUG=file: node 1 runs with NODE_DEBUG=ladder:fleet,ladder:keys (or
    // FLEET_BENCH_DEBUG_NS), its output kept there.
    const prof = process.env.FLEET_BENCH_DEBUG;
    nodes.push(
      ...(await Promise.all(
        [1, 2].map((i) =>
          startOperatorServer(
            dirs[i]!.dir,
            extra,
            undefined,
            prof && i === 1
              ? {
                  ...process.env,
                  NODE_DEBUG: process.env.FLEET_BENCH_DEBUG_NS ?? 'ladder:fleet,ladder:keys',
                }
              : undefined,
            120_000,
          ),
        ),
      )),
    );
    // Node 0 learns the bulk insert at its next full resync; wait until every node has every key.
    for (const n of nodes)
      for (const deadline = Date.now() + 60_000; ;) {
        const r = await n.api('GET', `/access-keys/b${KEYS}`);
        if (r.status === 200) break;
        if (Date.now() > deadline) throw new Error('keys did not reach every node in 60 s');
        await new Promise((r) => setTimeout(r, 200));
      }
    const keys = (await c.query('SELECT id, secret FROM ladder_keys ORDER BY id LIMIT $1', [USERS]))
      .rows as { id: string; secret: string }[];

    // Propagation
    const times: number[] = [];
    const patchTimes: number[] = [];
    for (let i = 0; i < CHANGES; i++) {
      const id = `b${1 + ((i * 7919) % KEYS)}`;
      const disabled = i % 2 === 0;
      const want = disabled ? 'disabled' : 'active';
      const t0 = performance.now();
      // Nodes 1 and 2 are polled from the moment the PATCH leaves, each on its own: they hear of
      // the change at node 0's commit, not when node 0 answers.
      const patched = nodes[0]!
        .api('PATCH', `/ladder/v1/access-keys/${id}`, { disabled })
        .then(() => patchTimes.push(performance.now() - t0));
      await Promise.all(
        nodes.slice(1).map(async (n) => {
          for (const deadline = Date.now() + 10_000; ;) {
            const r = await n.api('GET', `/access-keys/${id}`);
            if ((r.body as Key).ladder?.state === want) return;
            if (Date.now() > deadline) throw new Error(`change ${i} not seen in 10 s`);
            await new Promise((r) => setTimeout(r, 5));
          }
        }),
      );
      times.push(performance.now() - t0);
      await patched;
      if (disabled)
        await nodes[0]!.api('PATCH', `/ladder/v1/access-keys/${id}`, { disabled: false });
    }

    // Load on the fleet
    const stat = async (): Promise<{ x: number; t: number }> => {
      const r = await c.query<{ x: string; t: string }>(
        `SELECT xact_commit AS x, tup_inserted + tup_updated + tup_deleted AS t FROM pg_stat_database WHERE datname = 'ladder'`,
      );
      return { x: Number(r.rows[0]!.x), t: Number(r.rows[0]!.t) };
    };
    const targets = keys.map((k, i) => ({
      node: nodes[i % 3]!,
      key: { id: k.id, method: METHOD, password: k.secret, ladder: { state: 'active' } },
      localAddress: sourceOf(i),
    }));
    const s0 = await stat();
    const w0 = performance.now();
    const fleet = await load(
      targets,
      origin.port,
      SECONDS,
      nodes.map((n) => n.peer.pid),
    );
    const s1 = await stat();
    if (prof) writeFileSync(prof, nodes[1]!.peer.output());
    const ws = (performance.now() - w0) / 1000;
    await c.end();
    for (const n of nodes) await n.peer.stop();
    nodes.length = 0;

    // The same per-node share against one SQLite node with the same number of keys
    {
      // One transaction for all keys (the key manager commits each on its own, with an fsync).
      KeyStore.open(dirs[3]!.dir).close();
      const db = new Database(join(dirs[3]!.dir, DB_FILE));
      const ins = db.prepare(
        `INSERT INTO access_keys (id, name, secret, method, created_ms, limit_bytes, limit_period)
         VALUES (?, ?, ?, ?, ?, 1e15, '30d')`,
      );
      db.transaction(() => {
        for (let i = 1; i <= KEYS; i++)
          ins.run(`b${i}`, `bench ${i}`, randomBytes(12).toString('hex'), METHOD, Date.now());
      })();
      db.close();
    }
    const lite = await startOperatorServer(
      dirs[3]!.dir,
      ['--no-udp', ...caps],
      undefined,
      undefined,
      120_000,
    );
    nodes.push(lite);
    const liteKeys = [];
    for (let i = 0; i < Math.ceil(USERS / 3); i++)
      liteKeys.push({
        node: lite,
        key: (await lite.api('GET', `/access-keys/b${i + 1}`)).body as Key,
        localAddress: sourceOf(i * 3),
      });
    const sqlite = await load(liteKeys, origin.port, SECONDS, [lite.peer.pid]);

    const out = {
      keys: KEYS,
      users: USERS,
      sources: SOURCES,
      seconds: SECONDS,
      propagationMs: {
        changes: CHANGES,
        p50: pct(times, 50),
        p99: pct(times, 99),
        max: Math.max(...times),
        patchP50: pct(patchTimes, 50),
        patchP99: pct(patchTimes, 99),
      },
      database: {
        transactionsPerS: (s1.x - s0.x) / ws,
        rowsWrittenPerS: (s1.t - s0.t) / ws,
      },
      fleet: {
        mbPerS: fleet.bytes / 1e6 / SECONDS,
        fetches: fleet.fetches,
        errors: fleet.errors,
        errorKinds: fleet.errorKinds,
        fetchMs: fleet.fetchMs,
        cpuPctPerNode: fleet.cpuPct.map((x) => Math.round(x)),
        peakRssMbPerNode: fleet.peakRssMb.map((x) => Math.round(x)),
      },
      sqliteOneNode: {
        users: liteKeys.length,
        mbPerS: sqlite.bytes / 1e6 / SECONDS,
        fetches: sqlite.fetches,
        errors: sqlite.errors,
        errorKinds: sqlite.errorKinds,
        fetchMs: sqlite.fetchMs,
        cpuPct: Math.round(sqlite.cpuPct[0]!),
        peakRssMb: Math.round(sqlite.peakRssMb[0]!),
      },
    };
    console.log(JSON.stringify(out, null, 2));
  } catch (err) {
    console.error('bench failed:', err);
    for (const n of nodes) console.error(n.peer.output().slice(-2000));
    process.exitCode = 1;
  } finally {
    for (const n of nodes) await n.peer.stop();
    await origin.close();
    await pgs.remove();
    for (const d of dirs) d.remove();
  }
}

await main();
