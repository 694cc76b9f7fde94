/**
 * Trojan over TLS (issue #4 groundwork): Ladder's Trojan dialer through Ladder's Trojan handler on a
 * TLS listener with a self-signed certificate pinned by SHA-256; and everything without the password
 * — an HTTPS request, a wrong password, random bytes — lands on the decoy web site with its bytes intact.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  createServer as createTlsServer,
  connect as tlsConnectRaw,
  type Server as TlsServer,
} from 'node:tls';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { issueCertificate } from '../../src/server/certificates.js';
import { trojanPasswordHash } from '../../src/codec/trojan.js';
import { TrojanHandler } from '../../src/server/trojan-server.js';
import { DecoySite } from '../../src/server/decoy/decoy-site.js';
import { TrojanDialer } from '../../src/transport/trojan-dialer.js';
import { DirectDialer, DirectPacketDialer } from '../../src/transport/direct.js';
import { dialerSuite } from '../helpers/dialer-suite.js';

const cert = issueCertificate({
  commonName: 'localhost',
  altNames: ['localhost', '127.0.0.1'],
  serial: randomBytes(16),
});
const fallbacks: string[] = [];
let tls: TlsServer;
let port: number;
const decoy = new DecoySite();
let ready!: () => void;
const listening = new Promise<void>((r) => (ready = r));

before(async () => {
  const handler = new TrojanHandler({
    users: [{ id: 'alice', hash: trojanPasswordHash('correct horse') }],
    dialer: new DirectDialer(),
    packetDialer: new DirectPacketDialer(),
    fallback: decoy,
    handshakeTimeoutMs: 2000,
    events: { fallback: (code) => fallbacks.push(code) },
  });
  tls = createTlsServer(
    { cert: cert.cert, key: cert.key, ALPNProtocols: ['http/1.1'], allowHalfOpen: true },
    (s) => handler.handle(s),
  );
  await new Promise<void>((r) => tls.listen(0, '127.0.0.1', r));
  port = (tls.address() as AddressInfo).port;
  ready();
});
after(() => {
  tls.close();
  decoy.close();
});

dialerSuite('trojan over TLS (pinned self-signed certificate)', async () => {
  await listening;
  const d = new TrojanDialer(
    { host: '127.0.0.1', port },
    { password: 'correct horse', sni: 'localhost', pinSha256: cert.fingerprint256 },
  );
  return { dialer: d, packetDialer: d, close: async () => {} };
});

function httpsGet(path: string, extra: Buffer | null = null): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnectRaw(
      { host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false },
      () => {
        if (extra) s.write(extra);
        else s.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
      },
    );
    let got = '';
    s.on('data', (d) => (got += d));
    s.on('end', () => resolve(got));
    s.on('error', reject);
    setTimeout(() => {
      s.destroy();
      resolve(got);
    }, 5000);
  });
}

test('an ordinary HTTPS request gets the decoy web site', async () => {
  const page = await httpsGet('/');
  assert.match(page, /^HTTP\/1\.1 200/);
  assert.match(page, /Notes from the workshop/);
  assert.match(await httpsGet('/nothing-here'), /^HTTP\/1\.1 404/);
});

test('a wrong password gets what the decoy gives to the same bytes', async () => {
  const wrong = Buffer.concat([
    trojanPasswordHash('wrong'),
    Buffer.from('\r\n\x01\x01\x7f\x00\x00\x01\x00\x50\r\n'),
  ]);
  const before = fallbacks.length;
  const reply = await httpsGet('', wrong);
  assert.match(reply, /^HTTP\/1\.1 400/, 'the decoy answers garbage as a web server does');
  assert.ok(fallbacks.slice(before).includes('ERR_CIPHER'));
});

test('random bytes go to the decoy too', async () => {
  const reply = await httpsGet('', randomBytes(300));
  assert.match(reply, /^HTTP\/1\.1 400/);
});
