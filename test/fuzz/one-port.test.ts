/**
 * Hostile bytes at the one port that serves Shadowsocks and TLS (port-mux.ts): random input in
 * random pieces, with and without a FIN, of which much is handed from Shadowsocks to the TLS stack
 * (tls-handover.ts) or to nginx's plain-HTTP answer (plain-http-handover.ts), or fed to one as a
 * shadow while too few bytes have come. None may crash the server, leave a connection open (the
 * authentication timeout, or the decoy's lingering close, ends each), or stop it serving: after
 * the barrage a Shadowsocks request and an HTTPS request still work.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { connect as tlsConnect, createSecureContext } from 'node:tls';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { issueCertificate } from '../../src/server/certificates.js';
import { PortMux } from '../../src/server/port-mux.js';
import { SsServer } from '../../src/server/ss-server.js';
import { DecoySite } from '../../src/server/decoy/decoy-site.js';
import { DirectDialer } from '../../src/transport/direct.js';
import { SsStreamDialer } from '../../src/transport/ss-dialer.js';
import { makeCipherKey } from '../../src/crypto/ss-key.js';
import { tcpEcho, type Running } from '../helpers/echo.js';

const AUTH_TIMEOUT_MS = 400;
const key = makeCipherKey('aes-256-gcm', 'fuzz-one-port');
const cert = issueCertificate({
  commonName: 'localhost',
  altNames: ['localhost'],
  serial: randomBytes(16),
});
const decoy = new DecoySite({
  headerTimeoutMs: AUTH_TIMEOUT_MS,
  lingeringTimeoutMs: AUTH_TIMEOUT_MS,
});
let echo: Running;
let mux: PortMux;
let port: number;

before(async () => {
  echo = await tcpEcho();
  const onlyEcho = {
    allow: (host: string, p: number) => host === '127.0.0.1' && p === echo.port,
  };
  mux = new PortMux({
    ss: new SsServer({
      keys: [{ id: 'k', key }],
      dialer: new DirectDialer(onlyEcho),
      authTimeoutMs: AUTH_TIMEOUT_MS,
    }),
    tls: {
      secureContext: createSecureContext({ cert: cert.cert, key: cert.key }),
      handler: { handle: (t) => decoy.handle(t, Buffer.alloc(0)) },
      plainHttp: decoy.handlePlainOnTlsPort,
    },
    authTimeoutMs: AUTH_TIMEOUT_MS,
  });
  port = (await mux.listen('127.0.0.1', 0)).port;
});
after(async () => {
  await mux.close(0);
  decoy.close();
  await echo.close();
});

/**
 * Sends the pieces a few ms apart; resolves with how long the server took to end it, or -1 when
 * it is still open long after every server timer (a bound so that a bug fails instead of hanging,
 * far from any time the server is meant to take, so that a loaded machine does not fail it).
 */
function barrage(pieces: Uint8Array[], fin: boolean): Promise<number> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const s = connect(port, '127.0.0.1');
    const timer = setTimeout(() => {
      s.destroy();
      resolve(-1);
    }, AUTH_TIMEOUT_MS + 40_000);
    const done = (): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(performance.now() - t0);
    };
    s.on('connect', async () => {
      for (const p of pieces) {
        if (s.destroyed) return;
        s.write(p);
        await new Promise((r) => setTimeout(r, 5));
      }
      if (fin && !s.destroyed) s.end();
    });
    s.on('data', () => {});
    s.on('close', done);
    s.on('error', () => {});
  });
}

test('random bytes in random pieces: every connection ends, the port keeps serving both protocols', async () => {
  const samples = fc.sample(
    fc.tuple(
      fc.array(fc.uint8Array({ minLength: 1, maxLength: 120 }), { minLength: 1, maxLength: 4 }),
      fc.boolean(),
      fc.constantFrom(undefined, 0x16, 0x80, 0x47),
    ),
    { numRuns: 120, seed: 4 },
  );
  const ends = await Promise.all(
    samples.map(([pieces, fin, first]) => {
      if (first !== undefined) pieces[0]![0] = first; // a TLS record, SSLv2, an HTTP 'G'
      return barrage(pieces, fin);
    }),
  );
  // Ended by the server (a reaction, or the fixed timeout), never left open.
  ends.forEach((ms, i) => assert.notEqual(ms, -1, `sample ${i} was left open`));

  const d = await new SsStreamDialer({ host: '127.0.0.1', port }, key).dial({
    host: '127.0.0.1',
    port: echo.port,
  });
  const echoed = await new Promise<string>((resolve, reject) => {
    d.once('data', (c: Buffer) => resolve(c.toString()));
    d.once('error', reject);
    d.write('still here');
  });
  d.destroy();
  assert.equal(echoed, 'still here');
  const page = await new Promise<string>((resolve, reject) => {
    const s = tlsConnect(
      { host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false },
      () => s.write('GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'),
    );
    let got = '';
    s.on('data', (c: Buffer) => (got += c.toString()));
    s.on('end', () => resolve(got));
    s.on('error', reject);
  });
  assert.match(page, /^HTTP\/1\.1 200/);
});
