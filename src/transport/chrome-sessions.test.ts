import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ChromeSessionCache,
  MAX_TICKET_LIFETIME_S,
  MAX_TLS12_SESSION_S,
  type ChromeSession,
  type ChromeSession12,
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

const session12 = (n: number, receivedMs = 0, lifetimeS = 0, id = 0): ChromeSession12 => ({
  ticket: Buffer.alloc(n === 0 ? 0 : 8, n),
  sessionId: Buffer.alloc(id === 0 ? 0 : 32, id),
  master: Buffer.alloc(48, n),
  suite: 0xc02f,
  receivedMs,
  lifetimeS,
  chain: [],
});

test('TLS 1.2: reused until replaced, dropped, expired or displaced by a TLS 1.3 session', () => {
  const c = new ChromeSessionCache();
  c.add12('k', session12(1));
  assert.equal(c.get12('k', 10)?.ticket[0], 1);
  assert.equal(c.get12('k', 20)?.ticket[0], 1, 'not single-use');
  c.add12('k', session12(2));
  assert.equal(c.get12('k', 20)?.ticket[0], 2, 'a new ticket replaces the old');
  c.add12('k', session12(0));
  assert.equal(c.get12('k', 20), undefined, 'neither a ticket nor a session id: none');
  c.add12('k', session12(3));
  c.drop12('k');
  assert.equal(c.get12('k', 20), undefined);
  // No hint (0): two hours; a longer hint is capped at two hours; a shorter one is kept.
  c.add12('k', session12(4));
  assert.ok(c.get12('k', MAX_TLS12_SESSION_S * 1000 - 1));
  assert.equal(c.get12('k', MAX_TLS12_SESSION_S * 1000), undefined);
  c.add12('k', session12(5, 0, 10 * MAX_TLS12_SESSION_S));
  assert.equal(c.get12('k', MAX_TLS12_SESSION_S * 1000), undefined);
  c.add12('k', session12(6, 0, 60));
  assert.equal(c.get12('k', 60_000), undefined);
  c.add12('k', session12(7));
  c.add('k', session(1));
  assert.equal(c.get12('k', 10), undefined, 'the server speaks TLS 1.3 now');
});

test('TLS 1.2: a session the server keeps by id (no ticket) is kept and reused like a ticket', () => {
  const c = new ChromeSessionCache();
  c.add12('k', session12(0, 0, 0, 9));
  assert.equal(c.get12('k', 10)?.sessionId[0], 9);
  assert.equal(c.get12('k', 20)?.sessionId[0], 9, 'not single-use');
  assert.equal(c.get12('k', 20)?.ticket.length, 0);
  c.add12('k', session12(3, 0, 0, 9));
  assert.equal(c.get12('k', 20)?.ticket[0], 3, 'a session with a ticket replaces it');
  assert.ok(c.get12('k', MAX_TLS12_SESSION_S * 1000 - 1));
  c.add12('k', session12(0, 0, 0, 9));
  assert.equal(c.get12('k', MAX_TLS12_SESSION_S * 1000), undefined, 'two hours at most');
});
