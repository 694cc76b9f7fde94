import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createHash, randomBytes } from 'node:crypto';
import { createServer, connect } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { spawnSync } from 'node:child_process';
import { issueCertificate, snakeoilCertificate, SNAKEOIL_DAYS } from '../server/certificates.js';

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

test('the default self-signed certificate looks like Debian snakeoil: host name, 10 years, random serial', (t) => {
  const now = Date.UTC(2026, 4, 17, 9, 30, 12, 345);
  const c = snakeoilCertificate('vps-1234.example.net', now);
  const x = new X509Certificate(c.cert);
  assert.equal(x.subject, 'CN=vps-1234.example.net');
  assert.equal(x.issuer, 'CN=vps-1234.example.net');
  assert.equal(x.subjectAltName, 'DNS:vps-1234.example.net');
  assert.doesNotMatch(`${x.subject} ${x.subjectAltName}`, /localhost|127\.0\.0\.1/);
  assert.equal(new Date(x.validFrom).getTime(), Date.UTC(2026, 4, 17, 9, 30, 12));
  assert.equal(
    new Date(x.validTo).getTime() - new Date(x.validFrom).getTime(),
    SNAKEOIL_DAYS * 86_400_000,
  );
  assert.equal(x.publicKey.asymmetricKeyDetails?.modulusLength, 2048);
  assert.ok(x.serialNumber.length >= 38 && x.serialNumber.length <= 40, x.serialNumber);
  assert.notEqual(
    snakeoilCertificate('h', now).fingerprint256,
    snakeoilCertificate('h', now).fingerprint256,
  );
  const r = spawnSync('openssl', ['x509', '-noout', '-text'], { input: c.cert, encoding: 'utf8' });
  if (r.error) {
    t.skip('openssl is not installed');
    return;
  }
  // the extensions of `openssl req -x509` with ssl-cert's ssleay.cnf, and nothing else
  const exts = [...r.stdout.matchAll(/^ {12}X509v3 ([A-Za-z ]+):/gm)].map((m) => m[1]);
  assert.deepEqual(exts, [
    'Basic Constraints',
    'Subject Alternative Name',
    'Subject Key Identifier',
  ]);
  assert.match(r.stdout, /sha256WithRSAEncryption/);
  const ski = /Subject Key Identifier:\s*\n\s*([0-9A-F:]+)/.exec(r.stdout)?.[1];
  const pub = spawnSync('openssl', ['x509', '-noout', '-pubkey'], {
    input: c.cert,
    encoding: 'utf8',
  }).stdout;
  const der = spawnSync('openssl', ['pkey', '-pubin', '-outform', 'DER'], { input: pub }).stdout;
  // SPKI DER of RSA 2048: the key bits follow a 24-byte prefix (SEQ, algId, BIT STRING header)
  const expected = createHash('sha1')
    .update(der.subarray(24))
    .digest('hex')
    .toUpperCase()
    .match(/../g)!
    .join(':');
  assert.equal(ski, expected);
});

test('decodeCertificateParts: the TBSCertificate and signature it returns verify with the key', async () => {
  const { decodeCertificateParts } = await import('./x509.js');
  const { verify } = await import('node:crypto');
  const c = issueCertificate({
    commonName: 'ladder',
    altNames: ['localhost'],
    serial: randomBytes(16),
  });
  const x = new X509Certificate(c.cert);
  const p = decodeCertificateParts(x.raw);
  assert.equal(p.signatureAlgorithm.oid, '1.2.840.10045.4.3.2');
  assert.deepEqual(p.tbsSignatureAlgorithm, p.signatureAlgorithm);
  assert.equal(p.keyAlgorithm.oid, '1.2.840.10045.2.1');
  assert.equal(p.keyAlgorithm.params, true);
  assert.ok(verify('sha256', p.tbs, { key: x.publicKey, dsaEncoding: 'der' }, p.signature));
  const spki = x.publicKey.export({ type: 'spki', format: 'der' });
  assert.deepEqual(Buffer.from(p.publicKey), spki.subarray(spki.length - p.publicKey.length));
  assert.throws(
    () => decodeCertificateParts(Buffer.concat([x.raw, Buffer.from([0])])),
    /after its end/,
  );
});
