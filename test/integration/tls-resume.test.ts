/**
 * TLS session resumption in Ladder's client (src/transport/tls.ts): a second connection to the same
 * server resumes, as a browser's does; a pinned key still refuses another certificate at the same
 * address, because a server that cannot open the ticket gets a full handshake and the pin check.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { issueCertificate } from '../../src/server/certificates.js';
import { tlsConnect } from '../../src/transport/tls.js';

function cert() {
  return issueCertificate({
    commonName: 'localhost',
    altNames: ['localhost'],
    serial: randomBytes(16),
  });
}

function serve(c: ReturnType<typeof cert>, port = 0): Promise<Server> {
  const s = createServer({ cert: c.cert, key: c.key }, (sock) => sock.end('hi'));
  return new Promise((r) => s.listen(port, '127.0.0.1', () => r(s)));
}

async function once(port: number, pin: string): Promise<boolean> {
  const s = await tlsConnect({ host: '127.0.0.1', port }, { sni: 'localhost', pinSha256: pin });
  const reused = s.isSessionReused();
  await new Promise((r) => {
    s.on('data', () => {});
    s.on('end', r);
  });
  s.destroy();
  return reused;
}

test('the second connection resumes; an impostor at the same address still fails the pin', async () => {
  const a = cert();
  const server = await serve(a);
  const port = (server.address() as AddressInfo).port;
  const reused: boolean[] = [];
  for (let i = 0; i < 3; i++) reused.push(await once(port, a.fingerprint256));
  await new Promise<void>((r) => server.close(() => r()));
  assert.equal(reused[0], false);
  assert.ok(reused.slice(1).every(Boolean), `resumed: ${reused.join(',')}`);

  const impostor = await serve(cert(), port);
  try {
    await assert.rejects(once(port, a.fingerprint256), /does not match the key's pin/);
  } finally {
    await new Promise<void>((r) => impostor.close(() => r()));
  }
});
