// `ladder keys list|create|...` against a data directory (while the server runs) and against the
// management API, as scripts use it (--json) and as people read it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { LADDER_CLI } from '../helpers/peers.js';
import { startOrigin, type Origin } from '../helpers/origin.js';
import {
  dialerFor,
  fetchThrough,
  startOperatorServer,
  tempDataDir,
  type OperatorServer,
} from '../helpers/operator.js';
import { parseRate, parseSize, parseWhen } from '../../src/cli/keys-admin.js';

function ladder(args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [LADDER_CLI, ...args], { timeout: 20_000 }, (e, out, err) =>
      resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out, err }),
    );
  });
}

test('sizes, rates and dates as people write them', () => {
  assert.equal(parseSize('10GB', 'x'), 10e9);
  assert.equal(parseSize('1.5 TB', 'x'), 1.5e12);
  assert.equal(parseSize('2GiB', 'x'), 2 * 1024 ** 3);
  assert.equal(parseSize('500000', 'x'), 500000);
  assert.throws(() => parseSize('ten', '--limit'), /--limit 'ten' is not a size/);
  assert.equal(parseRate('2MB/s'), 2e6);
  assert.throws(() => parseRate('0'), /above 0/);
  assert.equal(parseWhen('2027-01-31'), Date.UTC(2027, 0, 31));
  assert.equal(parseWhen('+30d', 1000), 1000 + 30 * 86_400_000);
  assert.throws(() => parseWhen('soon'), /not a date/);
});

// Eighteen CLI processes one after another: a bound for a hang, loose enough for a loaded machine.
describe('ladder keys against a running server', { timeout: 240_000 }, () => {
  let origin: Origin;
  let srv: OperatorServer;
  const data = tempDataDir();
  before(async () => {
    origin = await startOrigin();
    srv = await startOperatorServer(data.dir);
  });
  after(async () => {
    await srv?.peer.stop();
    await origin?.close();
    data.remove();
  });

  test('--data: create, list, limits, disable while the server runs; the server follows', async () => {
    const made = await ladder([
      'keys',
      'create',
      '--name',
      'cli key',
      '--limit',
      '5GB',
      '--period',
      'month',
      '--expires',
      '+7d',
      '--speed',
      '3MB/s',
      '--devices',
      '2',
      '--data',
      data.dir,
      '--json',
    ]);
    assert.equal(made.code, 0, made.err);
    const k = JSON.parse(made.out) as {
      id: string;
      method: string;
      password: string;
      accessUrl: string;
      ladder: Record<string, unknown>;
    };
    assert.equal(k.ladder.deviceLimit, 2);
    assert.equal(k.ladder.speedLimitBps, 3e6);
    assert.deepEqual(k.ladder.dataLimit, { bytes: 5e9, period: 'month' });
    assert.match(k.accessUrl, new RegExp(`@127\\.0\\.0\\.1:${srv.port}#cli%20key$`));
    // The running server picked the key up (it watches the database).
    const d = dialerFor(srv.port, k);
    let ok = false;
    for (let i = 0; i < 40 && !ok; i++) {
      ok = /^HTTP\/1\.1 200/.test((await fetchThrough(d, origin.port, '/hello')).head);
      if (!ok) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(ok, 'a key made by the CLI works on the running server');

    const list = await ladder(['keys', 'list', '--data', data.dir]);
    assert.equal(list.code, 0);
    assert.match(list.out, /^ID\s+NAME\s+STATE\s+USED/m);
    assert.match(list.out, /cli key\s+active\s+.* of 5\.00 GB \(month\)/);

    assert.equal((await ladder(['keys', 'disable', k.id, '--data', data.dir])).code, 0);
    const api = (await srv.api('GET', `/access-keys/${k.id}`)).body as {
      ladder: { state: string };
    };
    assert.equal(api.ladder.state, 'disabled', 'the API of the running server sees the change');
    assert.equal((await ladder(['keys', 'enable', k.id, '--data', data.dir])).code, 0);
    assert.equal((await ladder(['keys', 'limit', k.id, 'none', '--data', data.dir])).code, 0);
    assert.equal((await ladder(['keys', 'expire', k.id, 'never', '--data', data.dir])).code, 0);
    const shown = JSON.parse(
      (await ladder(['keys', 'show', k.id, '--data', data.dir, '--json'])).out,
    ) as { ladder: Record<string, unknown> };
    assert.equal(shown.ladder.dataLimit, null);
    assert.equal(shown.ladder.expiresMs, null);
  });

  test('--api with the printed certSha256: the same commands remotely; a wrong pin is refused', async () => {
    const remote = ['--api', srv.apiUrl, '--cert-sha256', srv.certSha256];
    const made = await ladder(['keys', 'create', '--name', 'remote', ...remote, '--json']);
    assert.equal(made.code, 0, made.err);
    const id = (JSON.parse(made.out) as { id: string }).id;
    assert.equal((await ladder(['keys', 'rename', id, 'renamed', ...remote])).code, 0);
    assert.equal((await ladder(['keys', 'speed', id, '1MB/s', ...remote])).code, 0);
    const list = JSON.parse((await ladder(['keys', 'list', ...remote, '--json'])).out) as {
      id: string;
      name: string;
      ladder: { speedLimitBps: number };
    }[];
    const k = list.find((x) => x.id === id)!;
    assert.equal(k.name, 'renamed');
    assert.equal(k.ladder.speedLimitBps, 1e6);
    assert.equal((await ladder(['keys', 'delete', id, ...remote])).code, 0);
    const gone = await ladder(['keys', 'delete', id, ...remote]);
    assert.equal(gone.code, 1);
    assert.match(gone.err, /no access key with id/);
    // A wrong pin must change nothing on the server: a delete with it leaves the key in place
    // (test/integration/api-pin.test.ts shows that not a byte of the request is sent).
    const kept = await ladder(['keys', 'create', '--name', 'kept', ...remote, '--json']);
    assert.equal(kept.code, 0, kept.err);
    const keptId = (JSON.parse(kept.out) as { id: string }).id;
    const wrongPin = await ladder([
      'keys',
      'delete',
      keptId,
      '--api',
      srv.apiUrl,
      '--cert-sha256',
      '00'.repeat(32),
    ]);
    assert.equal(wrongPin.code, 1);
    assert.match(wrongPin.err, /not the one given with --cert-sha256/);
    assert.equal(
      (await srv.api('GET', `/access-keys/${keptId}`)).status,
      200,
      'the key is still there',
    );
  });

  test('usage mistakes name the fix and exit 2', async () => {
    const none = await ladder(['keys', 'list']);
    assert.equal(none.code, 2);
    assert.match(none.err, /give --data <dir>.*or --api <url> --cert-sha256/);
    const bad = await ladder(['keys', 'limit', '0', 'lots', '--data', data.dir]);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /'lots' is not a size/);
    const noPin = await ladder(['keys', 'list', '--api', srv.apiUrl]);
    assert.equal(noPin.code, 2);
    const typo = `${data.dir}-typo`;
    const missing = await ladder(['keys', 'list', '--data', typo]);
    assert.equal(missing.code, 2);
    assert.match(missing.err, /no server data there .*start 'ladder server --data/);
    assert.equal(existsSync(typo), false, 'a mistyped --data is not created');
  });
});
