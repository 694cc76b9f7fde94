import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { PassThrough, type Duplex } from 'node:stream';
import { AuthError, DialError } from '../errors.js';
import { makeCipherKey } from '../crypto/ss-key.js';
import { FailoverDialer } from './failover.js';
import { SsStreamDialer } from './ss-dialer.js';
import type { StreamDialer } from './types.js';

/**
 * A loopback server: `echo` answers what it gets; `silent` reads and closes without a byte; `web`
 * answers as a web server does to bytes it cannot parse (what a server that does not know the key
 * sends back when it imitates one).
 */
async function server(
  kind: 'echo' | 'silent' | 'web',
): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const s: Server = createServer((c) => {
    sockets.add(c);
    c.on('error', () => {});
    c.on('data', (d) => {
      if (kind === 'echo') c.write(d);
      else if (kind === 'silent') c.end();
      else c.end(WEB_400);
    });
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

const WEB_400 =
  'HTTP/1.1 400 Bad Request\r\nServer: nginx\r\nContent-Type: text/html\r\nContent-Length: 44\r\n' +
  'Connection: close\r\n\r\n<html><body>400 Bad Request</body></html>\r\n';

test('a transport whose dial fails is passed over at once, and the one that works is kept', async () => {
  const good = await server('echo');
  const log: string[] = [];
  const switches: string[] = [];
  const f = new FailoverDialer(
    [
      { name: 'dead', stream: to(1, log, 'dead') },
      { name: 'good', stream: to(good.port, log, 'good') },
    ],
    // Speed measurement off: these tests read the exact sequence of dials.
    { onSwitch: (to) => switches.push(to), remeasureMs: 0 },
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
    { silentLimit: 2, remeasureMs: 0 },
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

test(
  'answers that fail authentication count as silence: a Shadowsocks key the server does not know',
  { timeout: 20_000 },
  async () => {
    const web = await server('web');
    const good = await server('echo');
    const log: string[] = [];
    const wrongKey = new SsStreamDialer(
      { host: '127.0.0.1', port: web.port },
      makeCipherKey('chacha20-ietf-poly1305', 'not-a-key-of-this-server'),
      { firstPayloadWaitMs: 0 },
    );
    const f = new FailoverDialer(
      [
        {
          name: 'refused',
          stream: {
            dial: (t, signal) => {
              log.push('refused');
              return wrongKey.dial(t, signal);
            },
          },
        },
        { name: 'good', stream: to(good.port, log, 'good') },
      ],
      { silentLimit: 2, remeasureMs: 0 },
    );
    for (let i = 0; i < 2; i++) {
      const d = await f.dial(T);
      const errors: Error[] = [];
      d.on('error', (e) => errors.push(e));
      assert.equal(await roundTrip(d), '', 'no plaintext comes out of the answer');
      assert.ok(
        errors.some((e) => e instanceof AuthError),
        `an AuthError (got ${String(errors)})`,
      );
    }
    await new Promise((r) => setImmediate(r));
    assert.equal(f.current, 'good', 'two garbled answers in a row: the next transport');
    assert.equal(await roundTrip(await f.dial(T)), 'ping');
    assert.deepEqual(log, ['refused', 'refused', 'good']);
    await web.close();
    await good.close();
  },
);

test('after the cooldown the first transport is tried again; all down: the last error', async () => {
  let now = 0;
  const log: string[] = [];
  const f = new FailoverDialer(
    [
      { name: 'a', stream: to(1, log, 'a') },
      { name: 'b', stream: to(2, log, 'b') },
    ],
    { cooldownMs: 1000, now: () => now, remeasureMs: 0 },
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

test('with several servers, the fastest that works is measured and used; a blocked one is left', async () => {
  // Each fake dial waits until the test releases it, and the clock is the test's: connect times
  // are exactly what the test sets, whatever the machine's load.
  let clock = 0;
  const pending: { name: string; done: (ok: boolean) => void }[] = [];
  const fake = (name: string): StreamDialer => ({
    dial: () =>
      new Promise<Duplex>((resolve, reject) =>
        pending.push({
          name,
          done: (ok) =>
            ok
              ? resolve(new PassThrough())
              : reject(new DialError('ERR_SERVER_UNREACHABLE', `${name}: refused`)),
        }),
      ),
  });
  const settle = () => new Promise((r) => setImmediate(r));
  const release = async (name: string, at: number, ok = true): Promise<void> => {
    for (let i = 0; i < 50 && !pending.some((p) => p.name === name); i++) await settle();
    const j = pending.findIndex((p) => p.name === name);
    assert.ok(j >= 0, `${name} was dialled`);
    clock = at;
    pending.splice(j, 1)[0]!.done(ok);
    await settle();
  };
  const switches: string[] = [];
  const f = new FailoverDialer(
    [
      { name: 'slow', stream: fake('slow') },
      { name: 'mid', stream: fake('mid') },
      { name: 'fast', stream: fake('fast') },
    ],
    { now: () => clock, onSwitch: (to, why) => switches.push(`${to}: ${why}`) },
  );
  const first = f.dial(T);
  await release('slow', 200); // started at 0: 200 ms
  (await first).destroy();
  // The first dial measures the others alongside, on the same target.
  await release('fast', 210); // started at 200: 10 ms
  await release('mid', 240); // 40 ms
  assert.deepEqual(
    f.stats().map((x) => [x.name, x.connectMs]),
    [
      ['slow', 200],
      ['mid', 40],
      ['fast', 10],
    ],
  );
  assert.equal(f.current, 'fast', 'the fastest is preferred');
  assert.match(switches.at(-1)!, /^fast: faster: connects in 10 ms/);
  const second = f.dial(T);
  await release('fast', 245);
  (await second).destroy();
  assert.equal(pending.length, 0, 'measured once, not on every dial');

  // Blocked: its dial fails, it is counted and cooled down, and the next fastest takes over.
  const third = f.dial(T);
  await release('fast', 250, false);
  await release('mid', 290);
  (await third).destroy();
  assert.equal(f.current, 'mid');
  const st = f.stats();
  assert.equal(st[2]!.failures, 1);
  assert.equal(st[2]!.down, true);
});

test('rotation: after the one in use carried rotateAfterBytes, new connections take the next transport that is up', async () => {
  // Streams whose wire counts the test sets: the volume is exactly what the test says.
  const wire = (read: number, written: number): Duplex =>
    Object.assign(new PassThrough(), { bytesRead: read, bytesWritten: written });
  let next = { read: 0, written: 0 };
  let refuse = new Set<string>();
  const used: string[] = [];
  // A fake clock: c connects faster than b, so an order by speed would differ from key order.
  let clock = 0;
  const fake = (name: string): StreamDialer => ({
    dial: () => {
      clock += name === 'b' ? 5 : 1;
      if (refuse.has(name))
        return Promise.reject(new DialError('ERR_SERVER_UNREACHABLE', `${name}: refused`));
      used.push(name);
      return Promise.resolve(wire(next.read, next.written));
    },
  });
  const switches: string[] = [];
  const make = (rotateAfterBytes?: number) =>
    new FailoverDialer(
      ['a', 'b', 'c'].map((name) => ({ name, stream: fake(name) })),
      {
        remeasureMs: 0,
        now: () => clock,
        ...(rotateAfterBytes !== undefined ? { rotateAfterBytes } : {}),
        onSwitch: (to, why) => switches.push(`${to}: ${why}`),
      },
    );
  const closed = (d: Duplex) =>
    new Promise<void>((r) => {
      d.once('close', () => r());
      d.destroy();
    });

  const f = make(1000);
  next = { read: 600, written: 100 };
  const a1 = await f.dial(T); // a: 700, open
  next = { read: 250, written: 0 };
  const a2 = await f.dial(T); // a: 950 < 1000, still a; its open streams count
  next = { read: 50, written: 0 };
  const a3 = await f.dial(T); // a: 1000
  assert.deepEqual(used, ['a', 'a', 'a']);
  next = { read: 900, written: 100 };
  const b1 = await f.dial(T); // a reached 1000 with its streams open: b
  assert.equal(used.at(-1), 'b');
  assert.match(switches.at(-1)!, /^b: rotation: 1000 bytes/);
  await Promise.all([a1, a2, a3].map(closed)); // closed, their bytes stay counted
  next = { read: 0, written: 0 };
  await closed(b1); // b carried 1000 too
  const b2 = await f.dial(T);
  assert.equal(used.at(-1), 'c', 'b carried its share');
  refuse = new Set(['a']);
  await closed(b2);
  next = { read: 2000, written: 0 };
  await closed(await f.dial(T)); // c: 2000
  next = { read: 0, written: 0 };
  const after = await f.dial(T); // rotation to a: refused, so a cools down and b (next in key order) takes it
  assert.deepEqual(used.slice(-2), ['c', 'b']);
  await closed(after);
  refuse = new Set();
  assert.equal(f.current, 'b');
  assert.equal(f.stats()[0]!.down, true);
  await closed(await f.dial(T)); // b counts from when it became current again: stays
  assert.equal(used.at(-1), 'b');

  // Without rotation every connection stays on the first that works, whatever it carried.
  used.length = 0;
  const g = make();
  next = { read: 1_000_000, written: 0 };
  for (let i = 0; i < 4; i++) await closed(await g.dial(T));
  assert.deepEqual(used, ['a', 'a', 'a', 'a']);
  assert.throws(() => make(0), /rotateAfterBytes 0 must be a positive integer/);
});
