import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { DialError } from '../errors.js';
import { FailoverDialer } from './failover.js';
import type { StreamDialer } from './types.js';

/** A loopback server: `echo` answers what it gets; `silent` reads and closes without a byte. */
async function server(kind: 'echo' | 'silent'): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const s: Server = createServer((c) => {
    sockets.add(c);
    c.on('error', () => {});
    c.on('data', (d) => (kind === 'echo' ? c.write(d) : c.end()));
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return {
    port: (s.address() as AddressInfo).port,
    close: () =>
      new Promise((r) => {
        for (const c of sockets) c.destroy();
        s.close(() => r());
      }),
  };
}

/** A dialer that connects to a fixed loopback port, whatever the target. */
function to(port: number, log: string[], name: string): StreamDialer {
  return {
    dial: () =>
      new Promise<Duplex>((resolve, reject) => {
        log.push(name);
        const c = connect(port, '127.0.0.1');
        c.once('connect', () => resolve(c));
        c.once('error', () => reject(new DialError('ERR_SERVER_UNREACHABLE', `${name}: refused`)));
      }),
  };
}

async function roundTrip(d: Duplex): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    d.on('data', (b: Buffer) => (got += b.toString()));
    d.on('close', () => resolve(got));
    d.write('ping');
    setTimeout(() => d.end(), 50);
    d.on('end', () => d.destroy());
  });
}

const T = { host: '198.18.0.1', port: 80 };

test('a transport whose dial fails is passed over at once, and the one that works is kept', async () => {
  const good = await server('echo');
  const log: string[] = [];
  const switches: string[] = [];
  const f = new FailoverDialer(
    [
      { name: 'dead', stream: to(1, log, 'dead') },
      { name: 'good', stream: to(good.port, log, 'good') },
    ],
    { onSwitch: (to) => switches.push(to) },
  );
  assert.equal(await roundTrip(await f.dial(T)), 'ping');
  assert.deepEqual(log, ['dead', 'good']);
  assert.equal(f.current, 'good');
  assert.equal(await roundTrip(await f.dial(T)), 'ping');
  assert.deepEqual(
    log,
    ['dead', 'good', 'good'],
    'the dead one is not tried again while cooling down',
  );
  assert.deepEqual(switches, ['good']);
  await good.close();
});

test('silence after the first data (as FET blocking does) moves to the next transport after the limit', async () => {
  const silent = await server('silent');
  const good = await server('echo');
  const log: string[] = [];
  const f = new FailoverDialer(
    [
      { name: 'blocked', stream: to(silent.port, log, 'blocked') },
      { name: 'good', stream: to(good.port, log, 'good') },
    ],
    { silentLimit: 2 },
  );
  assert.equal(await roundTrip(await f.dial(T)), '');
  assert.equal(f.current, 'blocked', 'one silent close is not yet a verdict');
  assert.equal(await roundTrip(await f.dial(T)), '');
  await new Promise((r) => setImmediate(r));
  assert.equal(f.current, 'good');
  assert.equal(await roundTrip(await f.dial(T)), 'ping');
  await silent.close();
  await good.close();
});

test('after the cooldown the first transport is tried again; all down: the last error', async () => {
  let now = 0;
  const log: string[] = [];
  const f = new FailoverDialer(
    [
      { name: 'a', stream: to(1, log, 'a') },
      { name: 'b', stream: to(2, log, 'b') },
    ],
    { cooldownMs: 1000, now: () => now },
  );
  await assert.rejects(f.dial(T), { code: 'ERR_SERVER_UNREACHABLE' });
  assert.deepEqual(log, ['a', 'b'], 'each tried once per request, no loop');
  now = 500;
  await assert.rejects(f.dial(T));
  assert.equal(
    log.length,
    4,
    'cooling-down transports are still tried, last, when nothing else is left',
  );
  now = 5000;
  log.length = 0;
  await assert.rejects(f.dial(T));
  assert.deepEqual(
    log,
    ['a', 'b'],
    'the preferred one (the last switched to: a, when b failed) first',
  );
});
