/**
 * docs/probe-resistance.md, tested: every failure before authentication gets one behaviour — no byte
 * back, a FIN (never an RST), and no close before the fixed authentication timeout unless the peer
 * closes first. Probes follow docs/censorship-techniques.md §2: random lengths (NR1/NR2) and the replays R1–R5.
 *
 * The one timing fact asserted is a lower bound set by a timer (the server's close cannot come
 * before its authentication timer fires), which a slow machine cannot break.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { randomBytes } from 'node:crypto';
import { SsServer } from '../../src/server/ss-server.js';
import { DirectDialer } from '../../src/transport/direct.js';
import { makeCipherKey } from '../../src/crypto/ss-key.js';
import { SsTcpClientSession } from '../../src/codec/ss-tcp.js';
import type { ErrorCode } from '../../src/errors.js';
import { tcpEcho, type Running } from '../helpers/echo.js';

const AUTH_TIMEOUT_MS = 1500;
const key2017 = makeCipherKey('aes-256-gcm', 'probe-test-password');
const psk = randomBytes(32).toString('base64');
const key2022 = makeCipherKey('2022-blake3-aes-256-gcm', psk);
let server: SsServer;
let port: number;
let echo: Running;
const probes: ErrorCode[] = [];

before(async () => {
  echo = await tcpEcho();
  server = new SsServer({
    keys: [
      { id: 'a', key: key2017 },
      { id: 'b', key: key2022 },
    ],
    dialer: new DirectDialer(),
    authTimeoutMs: AUTH_TIMEOUT_MS,
    events: { rejected: (code) => probes.push(code) },
  });
  port = (await server.listen('127.0.0.1', 0)).port;
});
after(async () => {
  await server.close(200);
  await echo.close();
});

interface Outcome {
  received: number;
  end: 'fin' | 'rst' | 'none';
  ms: number;
}

/** Sends `bytes` (optionally in pieces), then waits for the server to close (bounded). */
function send(
  pieces: Buffer[],
  options: { endAfter?: boolean; waitMs?: number } = {},
): Promise<Outcome> {
  return new Promise((resolve) => {
    const started = performance.now();
    const s = connect(port, '127.0.0.1');
    let received = 0;
    let end: Outcome['end'] = 'none';
    const finish = (): void => {
      clearTimeout(timer);
      s.destroy();
      resolve({ received, end, ms: performance.now() - started });
    };
    const timer = setTimeout(finish, options.waitMs ?? AUTH_TIMEOUT_MS + 5000);
    s.on('connect', () => {
      for (const p of pieces) s.write(p);
      if (options.endAfter) s.end();
    });
    s.on('data', (d) => (received += d.length));
    s.on('end', () => {
      end = 'fin';
      finish();
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      end = e.code === 'ECONNRESET' ? 'rst' : 'none';
      finish();
    });
  });
}

function validRequest2017(): Buffer {
  return new SsTcpClientSession(key2017, randomBytes).encodeRequest(
    { host: '127.0.0.1', port: echo.port },
    Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
    Date.now(),
  );
}

function assertUniform(o: Outcome, what: string): void {
  assert.equal(o.received, 0, `${what}: the server sent nothing`);
  assert.equal(o.end, 'fin', `${what}: closed with a FIN, not an RST and not left open`);
  assert.ok(
    o.ms >= AUTH_TIMEOUT_MS - 20,
    `${what}: not closed before the authentication timeout (${o.ms.toFixed(0)} ms)`,
  );
}

const cases: [string, () => Buffer[]][] = [
  ['NR1 random 1 byte', () => [randomBytes(1)]],
  ['NR1 random 49 bytes', () => [randomBytes(49)]],
  ['NR2 random 221 bytes', () => [randomBytes(221)]],
  ['random 1000 bytes', () => [randomBytes(1000)]],
  ['random 2000 bytes, in 7 pieces', () => Array.from({ length: 7 }, () => randomBytes(2000 / 7))],
  [
    'R2: valid request, byte 0 changed',
    () => {
      const r = validRequest2017();
      r[0]! ^= 0xff;
      return [r];
    },
  ],
  [
    'R3: valid request, bytes 0-7 changed',
    () => {
      const r = validRequest2017();
      for (let i = 0; i < 8; i++) r[i]! ^= 0x5a;
      return [r];
    },
  ],
  [
    'R4: valid request, byte 62 changed',
    () => {
      const r = validRequest2017();
      r[62]! ^= 1;
      return [r];
    },
  ],
  [
    'R5: valid request, bytes 16 and 17 changed',
    () => {
      const r = validRequest2017();
      r[16]! ^= 1;
      r[17]! ^= 1;
      return [r];
    },
  ],
  [
    'a request under a key the server does not have',
    () => [
      new SsTcpClientSession(
        makeCipherKey('aes-256-gcm', 'not-a-key-of-this-server'),
        randomBytes,
      ).encodeRequest({ host: '127.0.0.1', port: 9 }, Buffer.from('x'), Date.now()),
    ],
  ],
  [
    'a 2022 request 100 s in the past',
    () => [
      new SsTcpClientSession(key2022, randomBytes).encodeRequest(
        { host: '127.0.0.1', port: echo.port },
        Buffer.from('x'),
        Date.now() - 100_000,
      ),
    ],
  ],
  [
    'the first half of a valid request',
    () => {
      const r = validRequest2017();
      return [r.subarray(0, r.length >> 1)];
    },
  ],
];

test('every pre-authentication failure gets the same treatment', async () => {
  const outcomes = await Promise.all(
    cases.map(async ([what, make]) => [what, await send(make())] as const),
  );
  for (const [what, o] of outcomes) assertUniform(o, what);
});

test('R1: an identical replay of a request that worked is treated like a probe', async () => {
  const req = validRequest2017();
  const first = await send([Buffer.from(req)], { waitMs: 800 });
  assert.ok(first.received > 0, 'the original request got its echo back');
  const before = probes.length;
  assertUniform(await send([req]), 'R1 replay');
  assert.ok(
    probes.slice(before).includes('ERR_REPLAY_CLIENT'),
    'the replay was counted as ERR_REPLAY_CLIENT',
  );
});

test("reflection: the server's own response sent back to it is treated like a probe", async () => {
  // Record the raw (encrypted) response to a valid AEAD-2017 request...
  const response = await new Promise<Buffer>((resolve) => {
    const s = connect(port, '127.0.0.1');
    const parts: Buffer[] = [];
    s.on('connect', () => s.write(validRequest2017()));
    s.on('data', (d: Buffer) => {
      parts.push(d);
      s.destroy();
      resolve(Buffer.concat(parts));
    });
  });
  assert.ok(response.length > 32);
  // ...and replay it to the server as if it were a request.
  const before = probes.length;
  assertUniform(await send([response]), 'reflected response');
  assert.ok(
    probes.slice(before).includes('ERR_REPLAY_SERVER'),
    `counted as ERR_REPLAY_SERVER (got ${probes.slice(before).join(', ')})`,
  );
});

test('a prober that closes first gets a FIN back, and nothing else', async () => {
  // A server whose own timeout is far away: the FIN we get can only be the answer to ours.
  const patient = new SsServer({
    keys: [{ id: 'a', key: key2017 }],
    dialer: new DirectDialer(),
    authTimeoutMs: 600_000,
  });
  const p = (await patient.listen('127.0.0.1', 0)).port;
  const saved = port;
  port = p;
  try {
    const o = await send([randomBytes(77)], { endAfter: true, waitMs: 30_000 });
    assert.equal(o.received, 0);
    assert.equal(o.end, 'fin');
  } finally {
    port = saved;
    await patient.close(100);
  }
});

test('probe counters carry codes, never addresses', () => {
  assert.ok(probes.length > 0);
  for (const c of probes) assert.match(c, /^ERR_[A-Z0-9_]+$/);
  assert.ok(probes.includes('ERR_CIPHER'));
  assert.ok(probes.includes('ERR_SS2022_BAD_TIMESTAMP'), 'the stale 2022 request is named as such');
});
