/**
 * The pre-authentication module's parts on their own: how a source is counted, the guard's deadline
 * and caps on in-memory streams with manual timers, the first-bytes loop, and the per-key cap gate.
 * (Every real front passes test/helpers/pre-auth-suite.ts: test/integration/pre-auth.test.ts.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  PreAuthGuard,
  isPreAuth,
  linkPreAuth,
  readFirstBytes,
  settlePreAuth,
  sourceOf,
} from '../src/server/pre-auth.js';
import { CountingGate, PerKeyCapGate } from '../src/server/access/gate.js';
import { duplexPair } from './helpers/duplex-pair.js';
import { ManualTimers } from './helpers/pre-auth-suite.js';

test('sourceOf: IPv4 by address, IPv6 by /64, IPv4-mapped as IPv4', () => {
  const cases: [string | undefined, string][] = [
    ['192.0.2.7', '192.0.2.7'],
    ['::ffff:192.0.2.7', '192.0.2.7'],
    ['::FFFF:192.0.2.7', '192.0.2.7'],
    ['2001:db8:1:2:3:4:5:6', '20010db800010002'],
    ['2001:db8:1:2::1', '20010db800010002'],
    ['2001:DB8:1:2:ffff::', '20010db800010002'],
    ['2001:db8::1', '20010db800000000'],
    ['::1', '0000000000000000'],
    ['::', '0000000000000000'],
    ['fe80::1%eth0', 'fe80000000000000'],
    ['::192.0.2.1', '0000000000000000'],
    ['64:ff9b::192.0.2.1', '0064ff9b00000000'],
    ['1:2:3:4:5:6:192.0.2.1', '0001000200030004'],
    ['', ''],
    [undefined, ''],
    ['not an address', ''],
  ];
  for (const [a, want] of cases) assert.equal(sourceOf(a), want, String(a));
});

test('fuzz: sourceOf never throws; one /64 is one source, whatever the low 64 bits', () => {
  fc.assert(
    fc.property(fc.string(), (s) => {
      assert.equal(typeof sourceOf(s), 'string');
    }),
    { numRuns: 2000 },
  );
  const group = fc.integer({ min: 0, max: 0xffff }).map((n) => n.toString(16));
  fc.assert(
    fc.property(
      fc.array(group, { minLength: 4, maxLength: 4 }),
      fc.array(group, { minLength: 4, maxLength: 4 }),
      fc.array(group, { minLength: 4, maxLength: 4 }),
      (high, lowA, lowB) => {
        const a = sourceOf([...high, ...lowA].join(':'));
        assert.equal(a, sourceOf([...high, ...lowB].join(':')));
        assert.equal(a, high.map((g) => g.padStart(4, '0')).join(''));
      },
    ),
  );
  fc.assert(
    fc.property(fc.ipV6(), (a) => {
      assert.match(sourceOf(a), /^([0-9a-f]{16}|\d+\.\d+\.\d+\.\d+)$/);
    }),
  );
});

test('guard: the deadline destroys the connection at its time, not a tick before', () => {
  const timers = new ManualTimers();
  const expired: number[] = [];
  const guard = new PreAuthGuard({
    deadlineMs: 1000,
    timers,
    events: { expired: () => expired.push(1) },
  });
  const [server] = duplexPair();
  const ticket = guard.admit(server, '192.0.2.1');
  assert.ok(ticket);
  assert.equal(isPreAuth(server), true);
  timers.advance(999);
  assert.equal(server.destroyed, false);
  assert.equal(guard.pending, 1);
  timers.advance(1);
  assert.equal(server.destroyed, true);
  assert.equal(guard.pending, 0);
  assert.deepEqual(expired, [1]);
});

test('guard: settling through a linked stream ends the deadline; settling twice is harmless', () => {
  const timers = new ManualTimers();
  const guard = new PreAuthGuard({ deadlineMs: 1000, timers });
  const [server] = duplexPair();
  const [tls] = duplexPair();
  guard.admit(server, '2001:db8::1');
  linkPreAuth(server, tls);
  assert.equal(isPreAuth(tls), true);
  settlePreAuth(tls);
  settlePreAuth(tls);
  settlePreAuth(server);
  assert.equal(guard.pending, 0);
  assert.equal(guard.pendingFrom('2001:db8::2'), 0);
  timers.advance(10_000);
  assert.equal(server.destroyed, false);
  // A stream no guard admitted settles nothing.
  const [other] = duplexPair();
  settlePreAuth(other);
  assert.equal(isPreAuth(other), false);
});

test('guard: caps per /32, per /64 and in total; a close frees the place', () => {
  const timers = new ManualTimers();
  const refused: string[] = [];
  const guard = new PreAuthGuard({
    maxPerSource: 2,
    maxTotal: 6,
    timers,
    events: { refused: (cap) => refused.push(cap) },
  });
  const admit = (a: string): boolean => guard.admit(duplexPair()[0], a) !== null;
  assert.equal(admit('192.0.2.1'), true);
  assert.equal(admit('192.0.2.1'), true);
  assert.equal(admit('192.0.2.1'), false);
  assert.equal(admit('192.0.2.2'), true);
  assert.equal(admit('2001:db8:0:1::1'), true);
  assert.equal(admit('2001:db8:0:1::2'), true);
  assert.equal(admit('2001:db8:0:1:ffff::'), false);
  assert.deepEqual(refused, ['source', 'source']);
  const [last] = duplexPair();
  assert.ok(guard.admit(last, '2001:db8:0:2::1'));
  assert.equal(admit('198.51.100.1'), false);
  assert.deepEqual(refused, ['source', 'source', 'total']);
  last.destroy();
  return new Promise<void>((resolve) =>
    setImmediate(() => {
      assert.equal(guard.pending, 5);
      assert.equal(admit('198.51.100.1'), true);
      resolve();
    }),
  );
});

test('readFirstBytes: decides on each read, stops before acting, stage timer and end', () => {
  const timers = new ManualTimers();
  const [server, client] = duplexPair();
  const seen: string[] = [];
  return new Promise<void>((resolve) => {
    const fb = readFirstBytes(server, {
      head: Buffer.from('ab'),
      timers,
      stageTimeoutMs: 100,
      onBytes: (f) => {
        seen.push(f.q.peek(f.q.length).toString());
        if (f.q.length >= 4) {
          f.stop();
          assert.equal(server.listenerCount('data'), 0);
          assert.equal(server.isPaused(), true);
          timers.advance(1000); // the stage timer is off
          assert.deepEqual(seen, ['ab', 'abcd']);
          resolve();
        }
      },
      onTimeout: () => assert.fail('stage timer after a decision'),
      onEnd: () => assert.fail('end after a decision'),
    });
    assert.equal(fb.stopped, false);
    client.write('cd');
  });
});

test('readFirstBytes: the stage timer and the end each stop the loop once', () => {
  const timers = new ManualTimers();
  const [a] = duplexPair();
  let timeouts = 0;
  const fa = readFirstBytes(a, {
    timers,
    stageTimeoutMs: 50,
    onBytes: () => {},
    onTimeout: () => timeouts++,
    onEnd: () => assert.fail('no end'),
  });
  timers.advance(49);
  assert.equal(timeouts, 0);
  timers.advance(1);
  assert.equal(timeouts, 1);
  assert.equal(fa.stopped, true);
  const [b, peer] = duplexPair();
  return new Promise<void>((resolve) => {
    readFirstBytes(b, {
      timers,
      onBytes: () => {},
      onEnd: (fb) => {
        assert.equal(fb.q.peek(fb.q.length).toString(), 'x');
        resolve();
      },
    });
    peer.end('x');
  });
});

test('PerKeyCapGate: a key past its cap is refused until one of its leases closes', () => {
  const gate = new PerKeyCapGate(new CountingGate(), 2);
  const a = gate.open('k', '192.0.2.1', 'tcp');
  const b = gate.open('k', '192.0.2.2', 'udp');
  assert.ok(a && b);
  assert.equal(gate.open('k', '192.0.2.3', 'tcp'), null);
  assert.ok(gate.open('other', '192.0.2.3', 'tcp'));
  a.close();
  a.close();
  assert.equal(gate.openFor('k'), 1);
  assert.ok(gate.open('k', '192.0.2.3', 'tcp'));
  // A refusal by the gate inside is passed on and costs no place.
  const none = new PerKeyCapGate({ open: () => null }, 1);
  assert.equal(none.open('k', '', 'tcp'), null);
  assert.equal(none.openFor('k'), 0);
});
