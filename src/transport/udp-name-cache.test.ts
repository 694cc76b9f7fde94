import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NameCachingPacketDialer } from './udp-name-cache.js';
import type { PacketDialer, Target } from './types.js';

function recorder(): { dialer: PacketDialer; sent: Target[]; closed: number } {
  const r = {
    sent: [] as Target[],
    closed: 0,
    dialer: {
      open: () => ({
        send: (_p: Buffer, t: Target) => void r.sent.push(t),
        close: () => void r.closed++,
      }),
    },
  };
  return r;
}

/** A resolver whose answers the test releases by hand. */
function manualLookup(): {
  lookup: (h: string) => Promise<string>;
  asked: string[];
  answer(address: string | null): void;
} {
  const queue: { resolve: (a: string) => void; reject: (e: Error) => void }[] = [];
  const asked: string[] = [];
  return {
    asked,
    lookup: (h) =>
      new Promise((resolve, reject) => {
        asked.push(h);
        queue.push({ resolve, reject });
      }),
    answer(address) {
      const q = queue.shift()!;
      if (address === null) q.reject(new Error('ENOTFOUND'));
      else q.resolve(address);
    },
  };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

test('a session resolves a name once within the TTL, and again after it', async () => {
  const inner = recorder();
  const dns = manualLookup();
  let now = 0;
  const d = new NameCachingPacketDialer(inner.dialer, {
    lookup: dns.lookup,
    ttlMs: 1000,
    now: () => now,
  });
  const s = d.open(() => {});
  s.send(Buffer.from('a'), { host: 'Game.Example', port: 1 });
  s.send(Buffer.from('b'), { host: 'game.example', port: 2 });
  assert.deepEqual(dns.asked, ['game.example'], 'one lookup for datagrams waiting on it');
  dns.answer('198.18.0.5');
  await tick();
  assert.deepEqual(inner.sent, [
    { host: '198.18.0.5', port: 1 },
    { host: '198.18.0.5', port: 2 },
  ]);
  now = 999;
  s.send(Buffer.from('c'), { host: 'game.example', port: 3 });
  assert.equal(dns.asked.length, 1, 'cached');
  assert.equal(inner.sent.length, 3);
  now = 1000;
  s.send(Buffer.from('d'), { host: 'game.example', port: 4 });
  assert.equal(dns.asked.length, 2, 'expired: asked again');
  dns.answer('198.18.0.6');
  await tick();
  assert.deepEqual(inner.sent.at(-1), { host: '198.18.0.6', port: 4 });
  // Another session has its own cache.
  d.open(() => {}).send(Buffer.from('e'), { host: 'game.example', port: 5 });
  assert.equal(dns.asked.length, 3);
});

test('addresses pass through; a failed lookup drops what waited and is retried; caps hold', async () => {
  const inner = recorder();
  const dns = manualLookup();
  const d = new NameCachingPacketDialer(inner.dialer, {
    lookup: dns.lookup,
    maxNames: 2,
    maxPending: 3,
  });
  const s = d.open(() => {});
  s.send(Buffer.from('x'), { host: '198.18.0.1', port: 9 });
  assert.deepEqual(inner.sent, [{ host: '198.18.0.1', port: 9 }]);
  for (let i = 0; i < 10; i++) s.send(Buffer.from('y'), { host: 'nx.example', port: i });
  dns.answer(null);
  await tick();
  assert.equal(inner.sent.length, 1, 'dropped');
  s.send(Buffer.from('z'), { host: 'nx.example', port: 1 });
  assert.equal(dns.asked.length, 2, 'asked again after a failure');
  dns.answer('198.18.0.2');
  await tick();
  assert.equal(inner.sent.length, 2);
  // At most maxNames names: the least recently used is forgotten.
  s.send(Buffer.from('1'), { host: 'a.example', port: 1 });
  dns.answer('198.18.0.3');
  s.send(Buffer.from('2'), { host: 'b.example', port: 1 });
  dns.answer('198.18.0.4');
  await tick();
  s.send(Buffer.from('3'), { host: 'nx.example', port: 1 });
  assert.equal(dns.asked.length, 5, 'nx.example was evicted and is asked again');
  s.close();
  dns.answer('198.18.0.2');
  await tick();
  assert.equal(inner.closed, 1);
  assert.equal(inner.sent.length, 4, 'nothing sent after close');
});
