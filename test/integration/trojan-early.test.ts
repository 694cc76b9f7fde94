/**
 * The Trojan dialer's early answer (src/transport/trojan-dialer.ts): once a TLS handshake with the
 * server has succeeded in the last minute, dial() hands out the stream at once and the handshake
 * runs while the caller answers its client. Tested here: the first dial still waits (an unreachable
 * server is reported at dial time, issue #2); nothing leaves before the certificate has passed its
 * pin, even when the caller wrote already; a failed early handshake destroys the stream and makes
 * the next dial wait and report the failure.
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
import { issueCertificate } from '../../src/codec/x509.js';
import { TrojanDialer } from '../../src/transport/trojan-dialer.js';
import { DialError } from '../../src/errors.js';

const good = issueCertificate({
  commonName: 'localhost',
  altNames: ['localhost'],
  serial: randomBytes(16),
});
const other = issueCertificate({
  commonName: 'localhost',
  altNames: ['localhost'],
  serial: randomBytes(16),
});
/** What each accepted TLS connection received, in order of acceptance. */
const received: Buffer[][] = [];
const sockets = new Set<TLSSocket>();
let tls: TlsServer;
let port: number;

before(async () => {
  tls = createTlsServer({ cert: good.cert, key: good.key, allowHalfOpen: true }, (s) => {
    const got: Buffer[] = [];
    received.push(got);
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('data', (d: Buffer) => {
      got.push(d);
      s.write('ok'); // a Trojan server would relay; any answer will do here
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => tls.listen(0, '127.0.0.1', r));
  port = (tls.address() as AddressInfo).port;
});
after(() => {
  tls.close();
  for (const s of sockets) s.destroy();
});

function dialer(): TrojanDialer {
  return new TrojanDialer(
    { host: '127.0.0.1', port },
    { password: 'pw', sni: 'localhost', pinSha256: good.fingerprint256 },
  );
}

/** Writes `msg`, waits for the answer or the end; resolves with what came back. */
function exchange(s: Duplex, msg: string): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    const t = setTimeout(() => done(), 5000);
    const done = (): void => {
      clearTimeout(t);
      s.destroy();
      resolve(got);
    };
    s.on('data', (d: Buffer) => {
      got += d.toString();
      done();
    });
    s.on('close', done);
    s.on('error', () => {});
    s.write(msg);
  });
}

test('the first dial waits for the handshake; later ones are handed out before it ends', async () => {
  const d = dialer();
  const first = d.dial({ host: 'example.com', port: 80 });
  const s1 = (await first) as TLSSocket;
  assert.ok(s1.encrypted && !s1.pending, 'the first stream comes with its handshake done');
  assert.equal(await exchange(s1, 'one'), 'ok');
  const s2 = (await d.dial({ host: 'example.com', port: 80 })) as TLSSocket;
  assert.ok(s2.pending || s2.connecting, 'the second is handed out while its handshake runs');
  assert.equal(await exchange(s2, 'two'), 'ok');
  // Header and payload arrived together, the header first.
  const last = Buffer.concat(received.at(-1)!).toString('latin1');
  assert.match(last, /^[0-9a-f]{56}\r\n\x01\x03\x0bexample\.com\x00\x50\r\ntwo$/);
});

test('nothing leaves an early stream before the certificate passes its pin', async () => {
  const d = dialer();
  assert.equal(await exchange(await d.dial({ host: 'example.com', port: 80 }), 'warm'), 'ok');
  // Now the server shows another certificate (a man in the middle, as far as the pin knows).
  tls.setSecureContext({ cert: other.cert, key: other.key });
  try {
    const before = received.length;
    const s = await d.dial({ host: 'example.com', port: 80 });
    const got = await exchange(s, 'secret request');
    assert.equal(got, '', 'no answer: the stream was destroyed');
    for (const r of received.slice(before))
      assert.equal(Buffer.concat(r).length, 0, 'no byte sent');
    // And the failure makes the next dial wait and say why.
    await assert.rejects(
      d.dial({ host: 'example.com', port: 80 }),
      (e: Error) => e instanceof DialError && /pin/.test(e.message),
    );
  } finally {
    tls.setSecureContext({ cert: good.cert, key: good.key });
  }
});

test('a server gone since the last handshake: one early stream dies, then dials report it', async () => {
  // A server of its own, closed halfway through.
  const conns = new Set<TLSSocket>();
  const own = createTlsServer({ cert: good.cert, key: good.key }, (s) => {
    conns.add(s);
    s.on('data', () => s.write('ok'));
    s.on('error', () => {});
  });
  await new Promise<void>((r) => own.listen(0, '127.0.0.1', r));
  const d = new TrojanDialer(
    { host: '127.0.0.1', port: (own.address() as AddressInfo).port },
    { password: 'pw', sni: 'localhost', pinSha256: good.fingerprint256 },
  );
  assert.equal(await exchange(await d.dial({ host: 'example.com', port: 80 }), 'warm'), 'ok');
  const closed = new Promise<void>((r) => own.close(() => r()));
  for (const s of conns) s.destroy();
  await closed;
  const s = await d.dial({ host: 'example.com', port: 80 });
  assert.equal(await exchange(s, 'anyone?'), '');
  await assert.rejects(
    d.dial({ host: 'example.com', port: 80 }),
    (e: Error) => e instanceof DialError && e.code === 'ERR_SERVER_UNREACHABLE',
  );
});

test('early: false waits for every handshake', async () => {
  const d = new TrojanDialer(
    { host: '127.0.0.1', port },
    { password: 'pw', sni: 'localhost', pinSha256: good.fingerprint256, early: false },
  );
  for (let i = 0; i < 2; i++) {
    const s = (await d.dial({ host: 'example.com', port: 80 })) as TLSSocket;
    assert.ok(!s.pending && !s.connecting);
    assert.equal(await exchange(s, 'x'), 'ok');
  }
});
