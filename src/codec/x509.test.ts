import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, randomBytes } from 'node:crypto';
import { createServer, connect } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { spawnSync } from 'node:child_process';
import { issueCertificate } from './x509.js';

test('a self-signed leaf parses in Node, names its SANs, and verifies itself', () => {
  const c = issueCertificate({
    commonName: 'ladder',
    altNames: ['localhost', '127.0.0.1', '::1'],
    serial: randomBytes(16),
  });
  const x = new X509Certificate(c.cert);
  assert.equal(x.subject, 'CN=ladder');
  assert.match(x.subjectAltName ?? '', /DNS:localhost/);
  assert.match(x.subjectAltName ?? '', /IP Address:127\.0\.0\.1/);
  assert.match(x.subjectAltName ?? '', /IP Address:0:0:0:0:0:0:0:1/);
  assert.ok(x.verify(x.publicKey));
  assert.ok(x.checkHost('localhost'));
  assert.equal(x.ca, false);
  assert.match(c.fingerprint256, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
});

test('openssl accepts the encoding', (t) => {
  const c = issueCertificate({
    commonName: 'ladder',
    altNames: ['localhost'],
    serial: randomBytes(16),
  });
  const r = spawnSync('openssl', ['x509', '-noout', '-text'], { input: c.cert, encoding: 'utf8' });
  if (r.error) {
    t.skip('openssl is not installed');
    return;
  }
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /ecdsa-with-SHA256/);
  assert.match(r.stdout, /TLS Web Server Authentication/);
});

test('a CA issues a leaf that a TLS client trusting only the CA accepts', async () => {
  const ca = issueCertificate({ commonName: 'Ladder lab CA', isCA: true, serial: randomBytes(16) });
  assert.equal(new X509Certificate(ca.cert).ca, true);
  const leaf = issueCertificate({
    commonName: 'blocked.lab',
    altNames: ['blocked.lab'],
    issuer: { cert: ca.cert, key: ca.keyObject },
    serial: randomBytes(16),
  });
  const x = new X509Certificate(leaf.cert);
  assert.equal(x.issuer, 'CN=Ladder lab CA');
  assert.ok(x.checkIssued(new X509Certificate(ca.cert)));
  const server = createServer({ cert: leaf.cert, key: leaf.key }, (s) => s.end('ok'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const text = await new Promise<string>((resolve, reject) => {
    const s = connect(
      { host: '127.0.0.1', port, servername: 'blocked.lab', ca: ca.cert },
      () => undefined,
    );
    let got = '';
    s.on('data', (d) => (got += d));
    s.on('end', () => resolve(got));
    s.on('error', reject);
  });
  server.close();
  assert.equal(text, 'ok');
});
