/**
 * A fleet: three real `ladder server` processes on one real PostgreSQL (test/helpers/postgres.ts),
 * each with its own data directory (its cache). Key changes made through one node's API take
 * effect on every node within 1 s.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startPostgres, postgresBin, type TestPostgres } from '../helpers/postgres.js';
import {
  dialerFor,
  fetchThrough,
  startOperatorServer,
  tempDataDir,
  type OperatorServer,
} from '../helpers/operator.js';
import { startOrigin, type Origin } from '../helpers/origin.js';

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
      ...(await Promise.all(dirs.map((d) => startOperatorServer(d.dir, ['--store', pg.url])))),
    );
  });

  after(async () => {
    await Promise.all(nodes.map((n) => n.peer.stop()));
    await origin?.close();
    await pg?.remove();
    for (const d of dirs) d.remove();
  });

  const state = async (n: OperatorServer, id: string): Promise<string | null> => {
    const r = await n.api('GET', `/access-keys/${encodeURIComponent(id)}`);
    return r.status === 200 ? (r.body as Key).ladder.state : null;
  };

  test('a key created, disabled, enabled and deleted on one node takes effect on all within 1 s', async () => {
    const made = await nodes[0]!.api('POST', '/access-keys', { name: 'fleet' });
    assert.equal(made.status, 201);
    const key = made.body as Key;
    for (const n of nodes) {
      await within('created key seen', 1000, async () => (await state(n, key.id)) === 'active');
      const r = await fetchThrough(dialerFor(n.port, key), origin.port, '/hello');
      assert.match(r.head, /^HTTP\/1\.1 200/, 'the key works on every node');
    }

    const patch = (n: OperatorServer, body: object) =>
      n.api('PATCH', `/ladder/v1/access-keys/${key.id}`, body);
    assert.equal((await patch(nodes[1]!, { disabled: true })).status, 200);
    for (const n of nodes)
      await within('disable seen', 1000, async () => (await state(n, key.id)) === 'disabled');

    assert.equal((await patch(nodes[2]!, { disabled: false })).status, 200);
    for (const n of nodes)
      await within('enable seen', 1000, async () => (await state(n, key.id)) === 'active');

    assert.equal((await nodes[1]!.api('DELETE', `/access-keys/${key.id}`)).status, 204);
    for (const n of nodes)
      await within('delete seen', 1000, async () => (await state(n, key.id)) === null);
  });

  test('ids are unique across the fleet when nodes create keys at once', async () => {
    const made = await Promise.all(
      nodes.flatMap((n) => [1, 2, 3].map(() => n.api('POST', '/access-keys', {}))),
    );
    const ids = made.map((m) => (m.body as Key).id);
    assert.equal(new Set(ids).size, ids.length);
    for (const id of ids)
      for (const n of nodes)
        await within('key seen', 1000, async () => (await state(n, id)) === 'active');
  });
});
