/**
 * A fleet: three real `ladder server` processes on one real PostgreSQL (test/helpers/postgres.ts),
 * each with its own data directory (its cache). Key changes made through one node's API take
 * effect on every node. How fast is measured by bench/fleet.ts; the waits here are deadlines for a
 * loaded machine (PROPAGATE_MS), not timings.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startPostgres, postgresBin, type TestPostgres } from '../helpers/postgres.js';
import {
  dialerFor,
  fetchThrough,
  rawExchange,
  startOperatorServer,
  tempDataDir,
  type OperatorServer,
} from '../helpers/operator.js';
import { startOrigin, type Origin } from '../helpers/origin.js';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pgLib from 'pg';
import { parseLadderKey } from '../../src/codec/ladder-key.js';
import { randomBytes } from 'node:crypto';
import { SsTcpClientSession } from '../../src/codec/ss-tcp.js';
import { makeCipherKey } from '../../src/crypto/ss-key.js';
import { USAGE_FLUSH_BYTES } from '../../src/server/access/key-manager.js';

/** Request and response headers of one fetchThrough: usage counts them too. */
const HEADERS_SLACK = 2_000;
/** How long a server may take to start on a loaded machine (a deadline, not a measurement). */
const START_MS = 60_000;
/**
 * How long a change (a key, usage) may take to reach every node on a loaded machine: a deadline,
 * not a measurement (bench/fleet.ts measures propagation).
 */
const PROPAGATE_MS = 20_000;
/**
 * Bytes a server has counted but not yet written to the client when it dies: what the relay
 * holds between reading the origin and the client's socket (a few reads of 64 KiB at most).
 */
const RELAY_SLACK = 1024 * 1024;

function requestBytes(key: { method: string; password: string }, originPort: number): Buffer {
  const s = new SsTcpClientSession(makeCipherKey(key.method, key.password), randomBytes);
  return s.encodeRequest(
    { host: '127.0.0.1', port: originPort },
    Buffer.from('GET /hello HTTP/1.1\r\nHost: x\r\n\r\n'),
    Date.now(),
  );
}

interface Key {
  id: string;
  method: string;
  password: string;
  ladder: { state: string; usedBytes: number; totalBytes: number };
}

/** Polls `check` every 20 ms until it is true; returns how long it took, or throws at the deadline. */
async function within(what: string, ms: number, check: () => Promise<boolean>): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    if (await check()) return performance.now() - t0;
    if (performance.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const skip = postgresBin() ? false : 'PostgreSQL is not installed (.ci/run installs postgresql)';

describe('fleet: three servers on one PostgreSQL', { skip }, () => {
  let pg: TestPostgres;
  let origin: Origin;
  const dirs: { dir: string; remove(): void }[] = [];
  const nodes: OperatorServer[] = [];

  before(async () => {
    pg = await startPostgres();
    origin = await startOrigin();
    for (let i = 0; i < 3; i++) dirs.push(tempDataDir());
    // Started together: the migrations must take turns (advisory lock).
    nodes.push(
      ...(await Promise.all(
        dirs.map((d) =>
          startOperatorServer(d.dir, ['--store', pg.url], undefined, undefined, START_MS),
        ),
      )),
    );
  });

  after(async () => {
    await Promise.all(nodes.map((n) => n.peer.stop()));
    await origin?.close();
    await pg?.remove();
    for (const d of dirs) d.remove();
  });

  /** The fleet's total for a key, read from PostgreSQL itself. */
  const pgTotal = async (id: string): Promise<number> => {
    const c = new pgLib.Client({ connectionString: pg.url });
    await c.connect();
    try {
      const r = await c.query<{ s: string | null }>(
        'SELECT SUM(bytes) AS s FROM ladder_usage WHERE key_id = $1',
        [id],
      );
      return Number(r.rows[0]?.s ?? 0);
    } finally {
      await c.end();
    }
  };
  /** Bytes of a key waiting in a node's on-disk outbox. */
  const outbox = (dir: string, id: string): number => {
    const db = new Database(join(dir, 'ladder.db'), { readonly: true });
    try {
      const r = db
        .prepare<[string], { s: number | null }>(
          'SELECT SUM(bytes) AS s FROM usage_outbox WHERE key_id = ?',
        )
        .get(id);
      return r?.s ?? 0;
    } finally {
      db.close();
    }
  };
  const metric = async (n: OperatorServer, name: string): Promise<string | undefined> => {
    const text = await (await fetch(`${n.metricsUrl!}`)).text();
    return new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1];
  };

  const state = async (n: OperatorServer, id: string): Promise<string | null> => {
    const r = await n.api('GET', `/access-keys/${encodeURIComponent(id)}`);
    return r.status === 200 ? (r.body as Key).ladder.state : null;
  };

  test('a key created, disabled, enabled and deleted on one node takes effect on all nodes', async () => {
    const made = await nodes[0]!.api('POST', '/access-keys', { name: 'fleet' });
    assert.equal(made.status, 201);
    const key = made.body as Key;
    for (const n of nodes) {
      await within(
        'created key seen',
        PROPAGATE_MS,
        async () => (await state(n, key.id)) === 'active',
      );
      const r = await fetchThrough(dialerFor(n.port, key), origin.port, '/hello');
      assert.match(r.head, /^HTTP\/1\.1 200/, 'the key works on every node');
    }

    const patch = (n: OperatorServer, body: object) =>
      n.api('PATCH', `/ladder/v1/access-keys/${key.id}`, body);
    assert.equal((await patch(nodes[1]!, { disabled: true })).status, 200);
    for (const n of nodes)
      await within(
        'disable seen',
        PROPAGATE_MS,
        async () => (await state(n, key.id)) === 'disabled',
      );

    assert.equal((await patch(nodes[2]!, { disabled: false })).status, 200);
    for (const n of nodes)
      await within('enable seen', PROPAGATE_MS, async () => (await state(n, key.id)) === 'active');

    assert.equal((await nodes[1]!.api('DELETE', `/access-keys/${key.id}`)).status, 204);
    for (const n of nodes)
      await within('delete seen', PROPAGATE_MS, async () => (await state(n, key.id)) === null);
  });

  test('ids are unique across the fleet when nodes create keys at once', async () => {
    const made = await Promise.all(
      nodes.flatMap((n) => [1, 2, 3].map(() => n.api('POST', '/access-keys', {}))),
    );
    const ids = made.map((m) => (m.body as Key).id);
    assert.equal(new Set(ids).size, ids.length);
    for (const id of ids)
      for (const n of nodes)
        await within('key seen', PROPAGATE_MS, async () => (await state(n, id)) === 'active');
  });

  test('a data limit holds across two nodes, and usage is counted once', async () => {
    const key = (await nodes[0]!.api('POST', '/access-keys', { name: 'limited' })).body as Key;
    assert.equal(
      (
        await nodes[0]!.api('PUT', `/access-keys/${key.id}/data-limit`, {
          limit: { bytes: 4_000_000 },
        })
      ).status,
      204,
    );
    await within(
      'key seen',
      PROPAGATE_MS,
      async () => (await state(nodes[1]!, key.id)) === 'active',
    );
    const first = await fetchThrough(dialerFor(nodes[0]!.port, key), origin.port, '/bytes/3000000');
    assert.equal(first.bodyBytes, 3_000_000);
    // Node 1 learns the limit and node 0's usage from the database (flush, push, read).
    await within('usage seen on the other node', PROPAGATE_MS, async () => {
      const r = await nodes[1]!.api('GET', `/access-keys/${key.id}`);
      const k = r.body as Key & { dataLimit?: { bytes: number } };
      return k.dataLimit?.bytes === 4_000_000 && k.ladder.usedBytes >= 3_000_000;
    });
    const second = await fetchThrough(
      dialerFor(nodes[1]!.port, key),
      origin.port,
      '/bytes/3000000',
    );
    assert.ok(second.bodyBytes < 3_000_000, 'node 1 cut the key off at the fleet-wide limit');
    const carried = first.bodyBytes + second.bodyBytes;
    // Node 1 stops within one read of crossing the limit (its own counting is live).
    assert.ok(carried <= 4_000_000 + 1_100_000, `carried ${carried}`);
    for (const n of nodes)
      await within(
        'over-limit everywhere',
        PROPAGATE_MS,
        async () => (await state(n, key.id)) === 'over-limit',
      );
    await within(
      'usage in the database',
      PROPAGATE_MS,
      async () => (await pgTotal(key.id)) >= carried,
    );
    const total = await pgTotal(key.id);
    assert.ok(
      total <= carried + 2 * HEADERS_SLACK,
      `database total ${total} vs carried ${carried}`,
    );
  });

  test('a device limit counts the devices on every node', async () => {
    const key = (
      await nodes[0]!.api('POST', '/ladder/v1/access-keys', {
        name: 'one device',
        deviceLimit: 1,
        speedLimitBps: 200_000,
      })
    ).body as Key & { ladder: { devices: number } };
    const devices = async (n: OperatorServer): Promise<number> =>
      ((await n.api('GET', `/access-keys/${key.id}`)).body as typeof key).ladder.devices;
    for (const n of nodes)
      await within('key seen', PROPAGATE_MS, async () => (await state(n, key.id)) === 'active');
    // One device stays connected to node 0 (a capped download that outlasts the test).
    const hold = fetchThrough(dialerFor(nodes[0]!.port, key), origin.port, '/bytes/4000000000');
    await within(
      'node 1 hears of the device on node 0',
      20_000,
      async () => (await devices(nodes[1]!)) === 1,
    );
    assert.deepEqual(
      await rawExchange(nodes[1]!.port, requestBytes(key, origin.port), 800),
      { received: 0, serverClosed: false },
      'node 1 refuses a second device as a wrong key is refused',
    );
    assert.equal(
      (await nodes[0]!.api('PATCH', `/ladder/v1/access-keys/${key.id}`, { disabled: true })).status,
      200,
    );
    await hold;
    assert.equal(
      (await nodes[0]!.api('PATCH', `/ladder/v1/access-keys/${key.id}`, { disabled: false }))
        .status,
      200,
    );
    await within('the device has gone', 20_000, async () => (await devices(nodes[1]!)) === 0);
    await within(
      'enabled on node 1',
      PROPAGATE_MS,
      async () => (await state(nodes[1]!, key.id)) === 'active',
    );
    assert.match(
      (await fetchThrough(dialerFor(nodes[1]!.port, key), origin.port, '/hello')).head,
      /^HTTP\/1\.1 200/,
      'node 1 lets a device in once the other has gone',
    );
  });

  test('kill -9 mid-transfer loses at most the documented bound of usage', async (t) => {
    const key = (await nodes[1]!.api('POST', '/access-keys', { name: 'kill mid-transfer' }))
      .body as Key;
    await within(
      'key seen',
      PROPAGATE_MS,
      async () => (await state(nodes[1]!, key.id)) === 'active',
    );
    const pid = nodes[1]!.peer.pid;
    const KILL_AT = 3 * USAGE_FLUSH_BYTES;
    // A download far longer than the test; the node is killed once the client has 3 flushes' worth.
    const s = await dialerFor(nodes[1]!.port, key).dial({ host: '127.0.0.1', port: origin.port });
    s.write('GET /bytes/4000000000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    const carried = await new Promise<number>((resolve) => {
      let n = 0;
      let killed = false;
      s.on('data', (c: Buffer) => {
        n += c.length;
        if (!killed && n >= KILL_AT) {
          killed = true;
          process.kill(pid, 'SIGKILL');
        }
      });
      s.on('error', () => undefined);
      s.on('close', () => resolve(n));
    });
    await nodes[1]!.peer.stop();
    nodes[1] = await startOperatorServer(
      dirs[1]!.dir,
      ['--store', pg.url],
      nodes[1]!.port,
      undefined,
      START_MS,
    );
    // Once the outbox the killed node left on disk is empty, all it kept is in the database.
    await within(
      'outbox pushed',
      20_000,
      async () =>
        (await metric(nodes[1]!, 'ladder_store_up')) === '1' && outbox(dirs[1]!.dir, key.id) === 0,
    );
    const total = await pgTotal(key.id);
    const lost = carried - total;
    t.diagnostic(`carried ${carried}, database ${total}, lost ${lost} bytes`);
    assert.ok(
      lost <= USAGE_FLUSH_BYTES + 65_536 + HEADERS_SLACK,
      `carried ${carried}, database ${total}: lost ${lost} bytes`,
    );
    assert.ok(
      total <= carried + RELAY_SLACK + HEADERS_SLACK,
      `counted twice? ${total} > ${carried}`,
    );
  });

  test('database restart under load and kill -9 of a node: serving goes on, usage is caught up exactly', async () => {
    const a = (await nodes[0]!.api('POST', '/access-keys', { name: 'load' })).body as Key;
    const b = (await nodes[2]!.api('POST', '/access-keys', { name: 'killed' })).body as Key;
    assert.equal(
      (await nodes[0]!.api('PATCH', `/ladder/v1/access-keys/${a.id}`, { speedLimitBps: 1_500_000 }))
        .status,
      200,
    );
    for (const n of nodes) {
      await within('keys seen', PROPAGATE_MS, async () => (await state(n, a.id)) === 'active');
      await within('keys seen', PROPAGATE_MS, async () => (await state(n, b.id)) === 'active');
    }
    await within(
      'store up',
      PROPAGATE_MS,
      async () => (await metric(nodes[0]!, 'ladder_store_up')) === '1',
    );
    // A capped download runs through node 0 across the whole outage.
    const load = fetchThrough(dialerFor(nodes[0]!.port, a), origin.port, '/bytes/6000000');

    await pg.stop();
    await within(
      'outage seen',
      10_000,
      async () => (await metric(nodes[0]!, 'ladder_store_up')) === '0',
    );
    assert.match(nodes[0]!.peer.output(), /fleet store unreachable/);
    assert.doesNotMatch(
      nodes[0]!.peer.output(),
      new RegExp(`:${pg.port}\\b`),
      'no database address in logs',
    );
    // Key changes are refused while the database is away, with a clear status.
    const refused = await nodes[1]!.api('POST', '/access-keys', {});
    assert.equal(refused.status, 503);

    // Node 2 carries bytes while the database is down, buffers them on disk, and is killed.
    const during = await fetchThrough(dialerFor(nodes[2]!.port, b), origin.port, '/bytes/2000000');
    assert.equal(during.bodyBytes, 2_000_000);
    await within(
      'usage on disk',
      PROPAGATE_MS,
      async () => outbox(dirs[2]!.dir, b.id) >= 2_000_000,
    );
    process.kill(nodes[2]!.peer.pid, 'SIGKILL');
    await nodes[2]!.peer.stop();
    // Started again while the database is still down: it serves from its cache.
    nodes[2] = await startOperatorServer(
      dirs[2]!.dir,
      ['--store', pg.url],
      nodes[2]!.port,
      undefined,
      START_MS,
    );
    assert.match(nodes[2]!.peer.output(), /unreachable at start.*serving the \d+ keys cached/);
    const cached = await fetchThrough(dialerFor(nodes[2]!.port, b), origin.port, '/bytes/1000000');
    assert.equal(cached.bodyBytes, 1_000_000);

    await pg.start();
    for (const n of nodes)
      await within('store back', 10_000, async () => (await metric(n, 'ladder_store_up')) === '1');
    const loaded = await load;
    assert.equal(loaded.bodyBytes, 6_000_000, 'the download ran through the outage');

    for (const [id, carried, dir] of [
      [a.id, loaded.bodyBytes, dirs[0]!.dir],
      [b.id, during.bodyBytes + cached.bodyBytes, dirs[2]!.dir],
    ] as const) {
      await within(
        'outbox drained',
        10_000,
        async () => outbox(dir, id) === 0 && (await pgTotal(id)) >= carried,
      );
      const total = await pgTotal(id);
      assert.ok(
        total <= carried + 2 * HEADERS_SLACK,
        `key ${id}: database ${total}, carried ${carried}`,
      );
    }
    assert.equal(
      (await nodes[1]!.api('POST', '/access-keys', {})).status,
      201,
      'changes work again',
    );
  });

  test('every node shows the fleet, and bundles list every server', async () => {
    interface Fleet {
      fleet: boolean;
      storeReachable: boolean;
      servers: { id: string; port: number; self: boolean; healthy: boolean; bytes: number }[];
    }
    let fleet: Fleet | undefined;
    await within('three healthy servers listed', 10_000, async () => {
      fleet = (await nodes[1]!.api('GET', '/ladder/v1/fleet')).body as Fleet;
      return fleet.servers.filter((x) => x.healthy).length === 3;
    });
    assert.equal(fleet!.fleet, true);
    assert.equal(fleet!.storeReachable, true);
    assert.equal(fleet!.servers.filter((x) => x.self).length, 1);
    assert.deepEqual(new Set(fleet!.servers.map((x) => x.port)), new Set(nodes.map((n) => n.port)));
    assert.ok(
      fleet!.servers.some((x) => x.bytes > 0),
      'per-server usage',
    );
    const key = (await nodes[0]!.api('POST', '/access-keys', { name: 'bundle' })).body as Key & {
      ladder: { bundleUrl: string };
    };
    const ports = parseLadderKey(key.ladder.bundleUrl).transports.map((t) =>
      Number(/:(\d+)(?:[/?#]|$)/.exec(t.replace(/^[a-z]+:\/\/[^@]*@/, 'x://'))?.[1]),
    );
    assert.equal(ports[0], nodes[0]!.port, 'this server first');
    assert.deepEqual(new Set(ports), new Set(nodes.map((n) => n.port)));
  });
});
