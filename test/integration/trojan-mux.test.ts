/**
 * Trojan over Mux.Cool in process (v2ray's trojan outbound with `mux`; the interop with v2ray 4.34
 * itself is interop-v2ray.test.ts): Ladder's Trojan dialer with `mux` through Ladder's Trojan
 * handler on a TLS listener. The shared dialer suite (without half-close: Mux.Cool's End closes a
 * session both ways, as in v2ray), and the pool's rules: sessions share connections up to the
 * concurrency, a burst opens no more connections than it needs, a connection that dies fails its
 * sessions and the next dial opens a fresh one, and a server that is not there fails the dial.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  createServer as createTlsServer,
  type Server as TlsServer,
  type TLSSocket,
} from 'node:tls';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { issueCertificate } from '../../src/server/certificates.js';
import { trojanPasswordHash } from '../../src/codec/trojan.js';
import { TrojanHandler } from '../../src/server/trojan-server.js';
import { DecoySite } from '../../src/server/decoy/decoy-site.js';
import { TrojanDialer } from '../../src/transport/trojan-dialer.js';
import { DirectDialer, DirectPacketDialer } from '../../src/transport/direct.js';
import { DialError } from '../../src/errors.js';
import { dialerSuite } from '../helpers/dialer-suite.js';
import { closedPort, tcpEcho, type Running } from '../helpers/echo.js';

const cert = issueCertificate({
  commonName: 'localhost',
  altNames: ['localhost', '127.0.0.1'],
  serial: randomBytes(16),
});
const PASSWORD = 'mux horse';
/** Trojan connections the server accepted (one per Mux.Cool connection). */
let accepted = 0;
const serverSockets = new Set<TLSSocket>();
let tls: TlsServer;
let port: number;
let echo: Running;
const decoy = new DecoySite();
let ready!: () => void;
const listening = new Promise<void>((r) => (ready = r));

before(async () => {
  echo = await tcpEcho();
  const handler = new TrojanHandler({
    users: [{ id: 'alice', hash: trojanPasswordHash(PASSWORD) }],
    dialer: new DirectDialer(),
    packetDialer: new DirectPacketDialer(),
    fallback: decoy,
    events: { accepted: () => accepted++ },
  });
  tls = createTlsServer(
    { cert: cert.cert, key: cert.key, ALPNProtocols: ['http/1.1'], allowHalfOpen: true },
    (s) => {
      serverSockets.add(s);
      s.once('close', () => serverSockets.delete(s));
      handler.handle(s);
    },
  );
  await new Promise<void>((r) => tls.listen(0, '127.0.0.1', r));
  port = (tls.address() as AddressInfo).port;
  ready();
});
after(async () => {
  tls.close();
  for (const s of serverSockets) s.destroy();
  decoy.close();
  await echo.close();
});

/**
 * A dialer with `mux` sessions per connection, on `muxConnections` connections (1 unless a test
 * says otherwise, so that no connection opened ahead is accepted during a later test's count;
 * `'default'`: the dialer's own default).
 */
function muxDialer(mux: number, to = port, muxConnections: number | 'default' = 1): TrojanDialer {
  return new TrojanDialer(
    { host: '127.0.0.1', port: to },
    {
      password: PASSWORD,
      sni: 'localhost',
      pinSha256: cert.fingerprint256,
      mux,
      ...(muxConnections !== 'default' ? { muxConnections } : {}),
    },
  );
}

/** Writes `msg` on a fresh session to the echo and reads it back (then ends the session). */
async function echoOnce(d: TrojanDialer, msg: string): Promise<string> {
  const s = await d.dial({ host: '127.0.0.1', port: echo.port });
  return roundTrip(s, msg);
}

function roundTrip(s: Duplex, msg: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const t = setTimeout(() => reject(new Error(`echo of ${msg}: got '${got}' in 10 s`)), 10_000);
    s.on('data', (c: Buffer) => {
      got += c.toString();
      if (got.length >= msg.length) {
        clearTimeout(t);
        s.end();
        resolve(got);
      }
    });
    s.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    s.write(msg);
  });
}

dialerSuite(
  'trojan over TLS with Mux.Cool (mux=4)',
  async () => {
    await listening;
    const d = muxDialer(4);
    return { dialer: d, packetDialer: d, close: async () => {} };
  },
  { halfClose: false },
);

test('muxConnections 1 (as v2ray): sessions one after another ride one connection', async () => {
  await listening;
  const d = muxDialer(8, port, 1);
  const before = accepted;
  for (let i = 0; i < 10; i++) assert.equal(await echoOnce(d, `seq ${i}`), `seq ${i}`);
  assert.equal(accepted - before, 1, 'ten sessions, one Trojan connection');
});

test('by default a cold start opens three connections at once, and no more for sessions in a row', async () => {
  await listening;
  const d = muxDialer(8, port, 'default');
  const before = accepted;
  const known = new Set(serverSockets);
  for (let i = 0; i < 10; i++) assert.equal(await echoOnce(d, `seq ${i}`), `seq ${i}`);
  // The two opened ahead may still be in their handshakes: wait for them (bounded, for a failure).
  for (let i = 0; i < 3000 && accepted - before < 3; i++)
    await new Promise((r) => setTimeout(r, 10));
  assert.equal(accepted - before, 3, 'ten sessions, three Trojan connections');
  for (const c of serverSockets) if (!known.has(c)) c.destroy();
});

test('muxSessionsPerConnection 1 (ladder client --mux-sessions 1): a fresh connection per session', async () => {
  await listening;
  const d = new TrojanDialer(
    { host: '127.0.0.1', port },
    {
      password: PASSWORD,
      sni: 'localhost',
      pinSha256: cert.fingerprint256,
      mux: 8,
      muxSessionsPerConnection: 1,
    },
  );
  const before = accepted;
  for (let i = 0; i < 3; i++) assert.equal(await echoOnce(d, `fresh ${i}`), `fresh ${i}`);
  assert.equal(accepted - before, 3);
});

test('a session counts its bytes, as a failover dialer reads them to tell a silent close', async () => {
  await listening;
  const s = (await muxDialer(8).dial({ host: '127.0.0.1', port: echo.port })) as Duplex & {
    bytesRead: number;
    bytesWritten: number;
  };
  assert.equal(await roundTripKeepOpen(s, 'count me'), 'count me');
  assert.deepEqual([s.bytesWritten, s.bytesRead], [8, 8]);
  s.destroy();
});

test('a burst of 12 with mux=4 opens 3 connections, not 12', async () => {
  await listening;
  const d = muxDialer(4, port, 'default');
  const before = accepted;
  // All twelve dial before any connection is up; each keeps its session open until all are in.
  const sessions = await Promise.all(
    Array.from({ length: 12 }, () => d.dial({ host: '127.0.0.1', port: echo.port })),
  );
  const answers = await Promise.all(sessions.map((s, i) => roundTrip(s, `burst ${i}`)));
  answers.forEach((a, i) => assert.equal(a, `burst ${i}`));
  assert.equal(accepted - before, 3);
});

test('a connection that dies fails its sessions; the next dial opens a fresh one', async () => {
  await listening;
  const d = muxDialer(8, port, 1);
  const before = accepted;
  const s = await d.dial({ host: '127.0.0.1', port: echo.port });
  assert.equal(await roundTripKeepOpen(s, 'before'), 'before');
  const closed = new Promise<void>((r) => s.once('close', () => r()));
  s.on('error', () => {});
  // The server side goes away (a restart, a middlebox reset).
  for (const c of serverSockets) c.destroy();
  await closed;
  assert.ok(s.destroyed);
  assert.equal(await echoOnce(d, 'after'), 'after');
  assert.equal(accepted - before, 2, 'a fresh connection for the session after the death');
});

test('no server there: the dial fails with the reason, not a dead session', async () => {
  const d = muxDialer(8, await closedPort());
  await assert.rejects(
    d.dial({ host: '127.0.0.1', port: echo.port }),
    (e: Error) => e instanceof DialError && e.code === 'ERR_SERVER_UNREACHABLE',
  );
  // And again: a failed connection is not kept for the next one.
  await assert.rejects(
    d.dial({ host: '127.0.0.1', port: echo.port }),
    (e: Error) => e instanceof DialError && e.code === 'ERR_SERVER_UNREACHABLE',
  );
});

test('a dial whose caller gives up while the connection opens is aborted', async () => {
  await listening;
  const d = muxDialer(8);
  const ac = new AbortController();
  const p = d.dial({ host: '127.0.0.1', port: echo.port }, ac.signal);
  ac.abort();
  await assert.rejects(p, (e: Error) => e instanceof DialError && e.code === 'ERR_ABORTED');
  // The connection it started still serves the next caller.
  assert.equal(await echoOnce(d, 'next'), 'next');
});

test('muxConnections 3: six sessions spread two a connection; one killed mid-transfer fails only its own', async () => {
  await listening;
  const d = new TrojanDialer(
    { host: '127.0.0.1', port },
    {
      password: PASSWORD,
      sni: 'localhost',
      pinSha256: cert.fingerprint256,
      mux: 8,
      muxConnections: 3,
    },
  );
  const before = accepted;
  const known = new Set(serverSockets);
  // All six arrive while the connections are still opening: the first goes on the first
  // connection, each busy moment opens one more ahead, and the fewest-busy rule spreads them.
  const sessions = await Promise.all(
    Array.from({ length: 6 }, () => d.dial({ host: '127.0.0.1', port: echo.port })),
  );
  for (const [i, s] of sessions.entries())
    assert.equal(await roundTripKeepOpen(s, `live ${i}`), `live ${i}`);
  assert.equal(accepted - before, 3, 'three Trojan connections');
  const mine = [...serverSockets].filter((c) => !known.has(c));
  assert.equal(mine.length, 3);

  // A megabyte through each session's echo; one connection dies before any of it comes back.
  const size = 1 << 20;
  const outcomes = sessions.map(
    (s) =>
      new Promise<'done' | 'failed'>((resolve) => {
        let got = 0;
        s.on('data', (c: Buffer) => {
          got += c.length;
          if (got >= size) resolve('done');
        });
        s.on('error', () => {});
        s.once('close', () => resolve(got >= size ? 'done' : 'failed'));
      }),
  );
  for (const s of sessions) s.write(Buffer.alloc(size, 7));
  mine[0]!.destroy();
  const results = await Promise.all(outcomes);
  assert.deepEqual(
    [results.filter((r) => r === 'failed').length, results.filter((r) => r === 'done').length],
    [2, 4],
    "the killed connection's two sessions fail; the other four carry their megabyte",
  );
  for (const s of sessions) s.destroy();
  assert.equal(await echoOnce(d, 'after'), 'after');
});

function roundTripKeepOpen(s: Duplex, msg: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const t = setTimeout(() => reject(new Error(`echo of ${msg}: got '${got}'`)), 10_000);
    const onData = (c: Buffer): void => {
      got += c.toString();
      if (got.length >= msg.length) {
        clearTimeout(t);
        s.off('data', onData);
        resolve(got);
      }
    };
    s.on('data', onData);
    s.write(msg);
  });
}
