// `ladder probe` on a TLS transport whose server shows a certificate other than the key's pin: the
// attempt is classed `tls-cert` (docs/probe.md), with both TLS clients (fp=node and fp=chrome), and
// the verdict names the certificate, not an unknown failure. A real TLS server on loopback.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { issueCertificate } from '../../src/server/certificates.js';
import { attemptOnce, transportVerdict, type CheckEnv } from '../../src/probe/transport-check.js';
import { transportsFromKey } from '../../src/probe/transports.js';
import { ConnectionBudget } from '../../src/probe/manners.js';
import type { Resolver } from '../../src/probe/dns-client.js';

const cert = () =>
  issueCertificate({ commonName: 'localhost', altNames: ['localhost'], serial: randomBytes(16) });

let server: Server;
let port = 0;
const served = cert();
const other = cert();

before(async () => {
  server = createServer({ cert: served.cert, key: served.key }, (s) => s.destroy());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  port = (server.address() as AddressInfo).port;
});
after(() => new Promise<void>((r) => server.close(() => r())));

const noResolver: Resolver = {
  engine: 'udp',
  address: '127.0.0.1',
  lookup: () => Promise.reject(new Error('no lookups in this test')),
};

function env(): CheckEnv {
  return {
    now: () => performance.now(),
    timeoutMs: 10_000,
    attempts: 1,
    backoffBaseMs: 0,
    sleep: () => Promise.resolve(),
    resolver: noResolver,
    dnsGraceMs: 0,
    checkUrl: new URL('http://127.0.0.1:9/'),
    throughputMaxBytes: 0,
    throughputMaxMs: 0,
    controlResolver: { host: '127.0.0.1', port: 53 },
    budget: new ConnectionBudget(10),
  };
}

for (const fp of ['node', 'chrome'] as const) {
  test(`fp=${fp}: a certificate that does not match the pin is tls-cert`, async () => {
    const pin = other.fingerprint256.replace(/:/g, '').toLowerCase();
    const key = `trojan://pw@127.0.0.1:${port}?sni=localhost&pin=${pin}&fp=${fp}`;
    const t = transportsFromKey(key)[0]!;
    const a = await attemptOnce(t, '127.0.0.1', 1, env());
    assert.equal(a.tcp.failure, null);
    assert.equal(a.kind, 'tls-cert', `failure: ${a.tls?.failure}`);
    assert.equal(a.tls?.failure, 'ssl_invalid_certificate');
    const v = transportVerdict({ transport: t, address: '127.0.0.1', attempts: [a] });
    assert.equal(v.technique, 'tls-cert');
    assert.match(v.explanation, /certificate does not verify/);
  });
}

test('the matching pin passes the TLS step (the check fails later, at the data)', async () => {
  const pin = served.fingerprint256.replace(/:/g, '').toLowerCase();
  const t = transportsFromKey(`trojan://pw@127.0.0.1:${port}?sni=localhost&pin=${pin}&fp=node`)[0]!;
  const a = await attemptOnce(t, '127.0.0.1', 1, env());
  assert.equal(a.tls?.failure, null);
  assert.notEqual(a.kind, 'tls-cert');
});
