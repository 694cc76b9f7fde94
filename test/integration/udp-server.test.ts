/**
 * The Shadowsocks UDP relay against hostile datagrams: AEAD-2017 replays and reflections from other
 * addresses, a trial-decryption budget under a junk flood, and session eviction in activity order.
 * Loopback only; every wait is for an event (a counted probe, a datagram), never a sleep.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { SsServer } from '../../src/server/ss-server.js';
import { DirectDialer, DirectPacketDialer } from '../../src/transport/direct.js';
import { makeCipherKey, type SsCipherKey } from '../../src/crypto/ss-key.js';
import { decodeUdp2017, encodeUdp2017 } from '../../src/codec/ss-udp.js';
import type { AccessGate } from '../../src/server/access/gate.js';
import type { ErrorCode } from '../../src/errors.js';

interface Target {
  port: number;
  received: Buffer[];
  close(): void;
}

/** A UDP echo on 127.0.0.1 that keeps every datagram it got. */
async function countingEcho(): Promise<Target> {
  const sock = createSocket('udp4');
  const received: Buffer[] = [];
  sock.on('message', (msg, r) => {
    received.push(msg);
    sock.send(msg, r.port, r.address);
  });
  sock.bind(0, '127.0.0.1');
  await once(sock, 'listening');
  return { port: sock.address().port, received, close: () => sock.close() };
}

async function clientSocket(address: string): Promise<UdpSocket> {
  const s = createSocket('udp4');
  s.bind(0, address);
  await once(s, 'listening');
  return s;
}

/** Probe codes as the server counts them, with a way to wait for the next of a code. */
function probeLog(): {
  events: { probe(code: ErrorCode): void };
  next(code: ErrorCode): Promise<void>;
  count(code: ErrorCode): number;
} {
  const counts = new Map<ErrorCode, number>();
  const waiters: { code: ErrorCode; resolve: () => void }[] = [];
  return {
    events: {
      probe(code) {
        counts.set(code, (counts.get(code) ?? 0) + 1);
        for (const w of waiters.filter((x) => x.code === code)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve();
        }
      },
    },
    next: (code) => new Promise((resolve) => waiters.push({ code, resolve })),
    count: (code) => counts.get(code) ?? 0,
  };
}

async function roundTrip(
  sock: UdpSocket,
  key: SsCipherKey,
  serverPort: number,
  targetPort: number,
  payload: Buffer,
): Promise<{ sent: Buffer; reply: Buffer }> {
  const sent = encodeUdp2017(key, randomBytes(key.keySize), {
    target: { host: '127.0.0.1', port: targetPort },
    payload,
  });
  const got = once(sock, 'message') as Promise<[Buffer]>;
  sock.send(sent, serverPort, '127.0.0.1');
  const [reply] = await got;
  const d = decodeUdp2017(key, reply);
  assert.ok(d, 'the reply opens with the key');
  assert.deepEqual(d.payload, payload);
  return { sent, reply };
}

test(
  'AEAD-2017 UDP: a replayed datagram or a reflected reply, from any address, is neither forwarded nor answered',
  { timeout: 20_000 },
  async (t) => {
    const key = makeCipherKey('chacha20-ietf-poly1305', 'udp-replay-test');
    const log = probeLog();
    const server = new SsServer({
      keys: [{ id: 'k', key }],
      dialer: new DirectDialer(),
      packetDialer: new DirectPacketDialer(),
      events: log.events,
    });
    const { port } = await server.listen('127.0.0.1', 0);
    const echo = await countingEcho();
    const a = await clientSocket('127.0.0.1');
    const b = await clientSocket('127.0.0.2');
    t.after(async () => {
      a.close();
      b.close();
      echo.close();
      await server.close(0);
    });
    const first = await roundTrip(a, key, port, echo.port, Buffer.from('first'));
    assert.equal(echo.received.length, 1);
    const bReplies: Buffer[] = [];
    b.on('message', (m) => bReplies.push(m));

    // The captured request, from another address and from the same one.
    for (const [sock, what] of [
      [b, 'replay from elsewhere'],
      [a, 'replay from the same socket'],
    ] as const) {
      const refused = log.next('ERR_REPLAY_CLIENT');
      sock.send(first.sent, port, '127.0.0.1');
      await refused;
      assert.equal(echo.received.length, 1, what);
    }
    // The server's own reply, sent back to it as a request.
    const reflected = log.next('ERR_REPLAY_CLIENT');
    b.send(first.reply, port, '127.0.0.1');
    await reflected;

    // A fresh datagram from b goes through; in order after the replays on loopback, it shows that
    // nothing of them reached the target or came back.
    b.removeAllListeners('message');
    await roundTrip(b, key, port, echo.port, Buffer.from('marker'));
    assert.equal(echo.received.length, 2);
    assert.deepEqual(echo.received.map(String), ['first', 'marker']);
    assert.equal(bReplies.length, 0, 'no answer to a replay');
    assert.equal(log.count('ERR_REPLAY_CLIENT'), 3);
  },
);

test(
  'UDP trial budget: junk past the budget is dropped untried; a client whose key is known keeps working',
  { timeout: 20_000 },
  async (t) => {
    const keys = Array.from({ length: 100 }, (_, i) => ({
      id: `k${i}`,
      key: makeCipherKey('aes-256-gcm', `budget-key-${i}`),
    }));
    const user = keys[57]!;
    const log = probeLog();
    const mono = 0; // frozen: no bucket refills during the test
    const server = new SsServer({
      keys,
      dialer: new DirectDialer(),
      packetDialer: new DirectPacketDialer(),
      events: log.events,
      monotonicNow: () => mono,
      // One full trial of a 60 KB datagram against every key, after the user's small one, spends
      // the global budget (a bucket admits while its balance is positive); prefix shares for 3.
      udpTrialBudget: {
        globalBytesPerSec: 100 * 60_000,
        perPrefixBytesPerSec: 3 * 100 * 60_000,
        hintedBytesPerSec: 1_000_000,
      },
    });
    const { port } = await server.listen('127.0.0.1', 0);
    const echo = await countingEcho();
    const userSock = await clientSocket('127.0.0.1');
    const attacker = await clientSocket('127.0.0.9');
    t.after(async () => {
      userSock.close();
      attacker.close();
      echo.close();
      await server.close(0);
    });
    // The user's first datagram is a full trial (its source has no hint yet): one of the two.
    await roundTrip(userSock, user.key, port, echo.port, Buffer.from('hello'));
    // One junk datagram is tried in full; after it the global bucket is spent.
    const tried = log.next('ERR_CIPHER');
    attacker.send(randomBytes(60_000), port, '127.0.0.1');
    await tried;
    for (let i = 0; i < 5; i++) {
      const dropped = log.next('ERR_UDP_BUDGET');
      attacker.send(randomBytes(60_000), port, '127.0.0.1');
      await dropped;
    }
    assert.equal(log.count('ERR_CIPHER'), 1, 'only the first junk datagram was tried');
    // The user's key is the hint for its address: tried first, refunded when it opens.
    for (let i = 0; i < 20; i++)
      await roundTrip(userSock, user.key, port, echo.port, Buffer.from(`again ${i}`));
    assert.equal(echo.received.length, 21);
  },
);

test(
  'UDP sessions: past the cap, the least recently active one is evicted',
  { timeout: 20_000 },
  async (t) => {
    const key = makeCipherKey('aes-128-gcm', 'eviction-test');
    const opened: string[] = [];
    const closed: string[] = [];
    let n = 0;
    const gate: AccessGate = {
      open() {
        const name = `s${n++}`;
        opened.push(name);
        return {
          up: () => 0,
          down: () => 0,
          onRevoke: () => {},
          close: () => closed.push(name),
        };
      },
    };
    const server = new SsServer({
      keys: [{ id: 'k', key }],
      dialer: new DirectDialer(),
      packetDialer: new DirectPacketDialer(),
      maxUdpSessions: 2,
      gate,
    });
    const { port } = await server.listen('127.0.0.1', 0);
    const echo = await countingEcho();
    const socks = await Promise.all([1, 2, 3].map((i) => clientSocket(`127.0.0.${i}`)));
    t.after(async () => {
      for (const s of socks) s.close();
      echo.close();
      await server.close(0);
    });
    const [s0, s1, s2] = socks as [UdpSocket, UdpSocket, UdpSocket];
    await roundTrip(s0, key, port, echo.port, Buffer.from('0'));
    await roundTrip(s1, key, port, echo.port, Buffer.from('1'));
    // s0 is active again, so s1 is now the least recently active.
    await roundTrip(s0, key, port, echo.port, Buffer.from('0 again'));
    await roundTrip(s2, key, port, echo.port, Buffer.from('2'));
    assert.deepEqual(opened, ['s0', 's1', 's2']);
    assert.deepEqual(closed, ['s1']);
    assert.equal(server.udpSessions, 2);
  },
);
