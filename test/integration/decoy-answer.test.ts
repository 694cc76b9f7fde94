/**
 * The decoy site answers a malformed request the same way whether it gets the connection directly or
 * through a TLS socket over a connection whose first bytes were already read (the one-port server's
 * path). Node's default (write, then destroy at once) lost the answer on the second path for requests
 * of about 1000 bytes and more; the lab's prober found it (test/lab/ladder.test.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createSecureContext, TLSSocket } from 'node:tls';
import { createServer, type AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { DecoySite } from '../../src/server/decoy/decoy-site.js';
import { issueCertificate } from '../../src/server/certificates.js';

const made = issueCertificate({ commonName: 'decoy.test', serial: randomBytes(8) });
const secureContext = createSecureContext({ cert: made.cert, key: made.key });

async function serve(preRead: boolean, decoy: DecoySite) {
  const server = createServer((raw) => {
    raw.on('error', () => raw.destroy());
    const go = (): void => {
      const s = new TLSSocket(raw, { isServer: true, secureContext } as never);
      s.on('error', () => s.destroy());
      s.once('secure', () => decoy.handle(s, Buffer.alloc(0)));
    };
    if (!preRead) return go();
    raw.once('data', (d: Buffer) => {
      raw.pause();
      raw.unshift(d);
      go();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return server;
}

function ask(port: number, payload: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port, rejectUnauthorized: false });
    let got = '';
    // Only a hang reaches this: the answer and its FIN come at once.
    const t = setTimeout(() => finish('TIMEOUT'), 30_000);
    const finish = (how: string) => {
      clearTimeout(t);
      s.destroy();
      resolve(`${how} ${got}`);
    };
    s.on('secureConnect', () => s.write(payload));
    s.on('data', (d: Buffer) => (got += d.toString('latin1')));
    s.on('end', () => finish('FIN'));
    s.on('error', () => finish('ERROR'));
  });
}

test('malformed requests of 1..2000 bytes draw the same 400 directly and after a pre-read', async () => {
  // One fixed clock for both paths, so that the Date headers of the two answers are equal.
  const fixed = Date.now();
  const decoy = new DecoySite({ now: () => fixed });
  const direct = await serve(false, decoy);
  const mux = await serve(true, decoy);
  try {
    for (const n of [1, 100, 999, 1000, 1240, 2000]) {
      const payload = randomBytes(n);
      payload[0] = 0x01; // never a method letter
      const a = await ask((direct.address() as AddressInfo).port, payload);
      const b = await ask((mux.address() as AddressInfo).port, payload);
      assert.match(a, /^FIN HTTP\/1\.1 400 Bad Request\r\n/, `${n} B direct`);
      assert.equal(b, a, `${n} B after a pre-read`);
    }
  } finally {
    direct.close();
    mux.close();
    decoy.close();
  }
});
