import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ChromeSessionCache,
  MAX_TICKET_LIFETIME_S,
  type ChromeSession,
} from './chrome-sessions.js';

const session = (n: number, receivedMs = 0, lifetimeS = 3600): ChromeSession => ({
  ticket: Buffer.from([n]),
  psk: Buffer.alloc(32, n),
  suite: 0x1301,
  ageAdd: 0,
  receivedMs,
  lifetimeS,
  chain: [],
  alpn: false,
});

test('one-time use: a session taken is gone; the newest first, at most two per key', () => {
  const c = new ChromeSessionCache();
  for (const n of [1, 2, 3]) c.add('k', session(n));
  assert.equal(c.take('k', 10)?.ticket[0], 3);
  assert.equal(c.take('k', 10)?.ticket[0], 2);
  assert.equal(c.take('k', 10), undefined, 'the oldest was dropped, the others used');
  assert.equal(c.size, 0);
});

test('keys are separate, and their number is bounded (oldest key dropped)', () => {
  const c = new ChromeSessionCache(2);
  c.add('a', session(1));
  c.add('b', session(2));
  c.add('c', session(3));
  assert.equal(c.size, 2);
  assert.equal(c.take('a', 0), undefined);
  assert.equal(c.take('c', 0)?.ticket[0], 3);
});

test('expired tickets are never offered: own lifetime, the 7-day cap, lifetime 0 not kept', () => {
  const c = new ChromeSessionCache();
  c.add('k', session(1, 0, 10));
  assert.equal(c.take('k', 10_000), undefined, 'at its lifetime');
  c.add('k', session(2, 0, 30 * 86400));
  assert.equal(c.take('k', MAX_TICKET_LIFETIME_S * 1000), undefined, 'past seven days');
  c.add('k', session(3, 0, 0));
  assert.equal(c.take('k', 1), undefined, 'lifetime 0: not kept');
  c.add('k', session(4, 1000, 10));
  assert.equal(c.take('k', 999), undefined, 'a clock that went back: not offered');
});
