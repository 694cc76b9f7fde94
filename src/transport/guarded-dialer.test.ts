// The guarded dialers: refused targets never get a connection (a listener on loopback counts them),
// the check sits in net.connect's lookup so every allowed address of a name is tried, and UDP
// datagrams follow the same rules. Names other than `localhost` go through an injected resolver:
// no query leaves the machine.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { once } from 'node:events';
import type { LookupAddress } from 'node:dns';
import { hasCode } from '../errors.js';
import {
  PublicOnlyDialer,
  PublicOnlyPacketDialer,
  guardedLookup,
  resolveAllowed,
  type ResolveAll,
} from './guarded-dialer.js';
import type { PacketDialer, Target } from './types.js';

const fakeNames: Record<string, LookupAddress[]> = {
  'only-loopback.test': [
    { address: '::1', family: 6 },
    { address: '127.0.0.1', family: 4 },
  ],
  'mixed.test': [
    { address: '127.0.0.1', family: 4 },
    { address: '8.8.8.8', family: 4 },
    { address: '::ffff:10.0.0.1', family: 6 },
    { address: '2001:4860:4860::8888', family: 6 },
  ],
  // For the connect tests, where the rule under test lets 127.0.0.1 through and nothing else:
  'bad-then-good.test': [
    { address: '::1', family: 6 },
    { address: '127.0.0.1', family: 4 },
  ],
  'dead-then-live.test': [
    { address: '127.0.0.3', family: 4 },
    { address: '127.0.0.1', family: 4 },
  ],
  'nothing.test': [],
};
const fakeResolve: ResolveAll = (host) => {
  const r = fakeNames[host];
  return r
    ? Promise.resolve(r)
    : Promise.reject(Object.assign(new Error('no'), { code: 'ENOTFOUND' }));
};
/** A rule for connect tests on loopback: only 127.0.0.1 and 127.0.0.3 are "public". */
const loopbackOnly = (ip: string): boolean => ip !== '127.0.0.1' && ip !== '127.0.0.3';

describe('guarded dialers', () => {
  let server: Server;
  let port: number;
  let accepted = 0;
  before(async () => {
    server = createServer((s) => {
      accepted++;
      s.on('error', () => {}); // the dialing side resets
      s.end('hi');
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  test('loopback in every spelling is refused with ERR_DIAL_FORBIDDEN and never connected', async () => {
    const d = new PublicOnlyDialer({ resolve: fakeResolve });
    const before = accepted;
    for (const host of [
      '127.0.0.1',
      '::1',
      '::ffff:127.0.0.1',
      '0.0.0.0',
      '2130706433',
      '0x7f.1',
      '017700000001',
      '127.1',
      '[::1]',
      '::ffff:7f00:1',
      '64:ff9b::7f00:1',
      'fe80::1%lo',
      'only-loopback.test',
    ]) {
      await assert.rejects(
        d.dial({ host, port }),
        (e: unknown) =>
          hasCode(e, 'ERR_DIAL_FORBIDDEN') && !String((e as Error).message).includes(host),
        host,
      );
    }
    assert.equal(accepted, before, 'no connection reached the listener');
  });

  test('localhost through the system resolver (/etc/hosts) is refused', async () => {
    const d = new PublicOnlyDialer();
    await assert.rejects(d.dial({ host: 'localhost', port }), (e) =>
      hasCode(e, 'ERR_DIAL_FORBIDDEN'),
    );
  });

  test('a name with no address is ERR_DIAL_DNS, not forbidden', async () => {
    const d = new PublicOnlyDialer({ resolve: fakeResolve });
    await assert.rejects(d.dial({ host: 'nothing.test', port }), (e) => hasCode(e, 'ERR_DIAL_DNS'));
    await assert.rejects(d.dial({ host: 'unknown.test', port }), (e) => hasCode(e, 'ERR_DIAL_DNS'));
  });

  test('the lookup hands Node every allowed address and only those', async () => {
    const all = await resolveAllowed('mixed.test', { resolve: fakeResolve });
    assert.deepEqual(
      all.map((a) => a.address),
      ['8.8.8.8', '2001:4860:4860::8888'],
    );
    const lookup = guardedLookup({ resolve: fakeResolve });
    const viaCallback = await new Promise<unknown>((resolve, reject) =>
      lookup('mixed.test', { all: true }, (err, addresses) =>
        err ? reject(err) : resolve(addresses),
      ),
    );
    assert.deepEqual(viaCallback, all);
    const first = await new Promise<[string, number | undefined]>((resolve, reject) =>
      lookup('mixed.test', {}, (err, address, family) =>
        err ? reject(err) : resolve([address as string, family]),
      ),
    );
    assert.deepEqual(first, ['8.8.8.8', 4]);
  });

  test('a name with a refused address first still connects to its allowed one', async () => {
    const d = new PublicOnlyDialer({ resolve: fakeResolve, isBlocked: loopbackOnly });
    const s = await d.dial({ host: 'bad-then-good.test', port });
    assert.equal((s as import('node:net').Socket).remoteAddress, '127.0.0.1');
    s.destroy();
  });

  test('Node tries every allowed address: a dead first address does not fail the dial', async () => {
    const d = new PublicOnlyDialer({ resolve: fakeResolve, isBlocked: loopbackOnly });
    const s = await d.dial({ host: 'dead-then-live.test', port });
    assert.equal((s as import('node:net').Socket).remoteAddress, '127.0.0.1');
    s.destroy();
  });

  test('control: with a rule that allows it, a literal connects', async () => {
    const d = new PublicOnlyDialer({ isBlocked: loopbackOnly });
    const s = await d.dial({ host: '127.0.0.1', port });
    s.destroy();
    await assert.rejects(
      new PublicOnlyDialer({ isBlocked: loopbackOnly }).dial({ host: '::1', port }),
      (e) => hasCode(e, 'ERR_DIAL_FORBIDDEN'),
    );
  });
});

test('UDP: datagrams to refused targets are dropped, others pass resolved', async () => {
  const sent: [string, Target][] = [];
  const inner: PacketDialer = {
    open: () => ({
      send: (payload, target) => void sent.push([payload.toString(), target]),
      close: () => {},
    }),
  };
  const s = new PublicOnlyPacketDialer(inner, { resolve: fakeResolve }).open(() => {});
  for (const host of [
    '127.0.0.1',
    '::1',
    '2130706433',
    '[::1]',
    'only-loopback.test',
    '10.0.0.1',
    'nothing.test',
  ])
    s.send(Buffer.from(host), { host, port: 53 });
  s.send(Buffer.from('public'), { host: '8.8.8.8', port: 53 });
  s.send(Buffer.from('named'), { host: 'mixed.test', port: 53 });
  // The injected resolver answers at once: every send has settled when the microtasks have run.
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(sent, [
    ['public', { host: '8.8.8.8', port: 53 }],
    ['named', { host: '8.8.8.8', port: 53 }],
  ]);
  s.close();
});
