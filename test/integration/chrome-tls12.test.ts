/**
 * Ladder's fp=chrome TLS client against TLS 1.2 servers (Node TLS, i.e. OpenSSL, with maxVersion
 * TLSv1.2): every ECDHE + AEAD suite Chrome offers with an ECDSA or an RSA certificate, the groups
 * X25519, P-256 and P-384, RSA-PSS and PKCS#1 ServerKeyExchange signatures, a CertificateRequest
 * answered with no certificate, a session ticket, bulk data both ways through a half-close, and
 * the same trust checks as TLS 1.3 (pin, CA + host name, wrong host). Resumption as BoringSSL
 * offers it: by the session id alone when the server issues no ticket, by the ticket (beside a
 * random session id) when it issues both.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { constants, createHash, randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { createServer, type Server, type TLSSocket, type TlsOptions } from 'node:tls';
import { EXT, type ClientHelloInfo } from '../../src/codec/tls-client-hello.js';
import { chromeTlsConnect } from '../../src/transport/chrome-tls.js';
import { ChromeSessionCache } from '../../src/transport/chrome-sessions.js';
import { tlsRelay } from '../helpers/tls-relay.js';
import { makeCert, type TestCert } from '../helpers/tls-cert.js';

async function tls12Server(
  opts: TlsOptions,
  onConn: (s: TLSSocket) => void = (s) => s.pipe(s),
): Promise<{ port: number; server: Server; close(): Promise<void> }> {
  const server = createServer(
    { allowHalfOpen: true, maxVersion: 'TLSv1.2', ...opts } as TlsOptions,
    (s) => {
      s.on('error', () => s.destroy());
      onConn(s);
    },
  );
  server.on('tlsClientError', () => {});
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    server,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

async function echo(port: number, o: Parameters<typeof chromeTlsConnect>[1], size = 1000) {
  const tls = await chromeTlsConnect({ host: '127.0.0.1', port }, { timeoutMs: 5000, ...o });
  const data = randomBytes(size);
  const got: Buffer[] = [];
  const ended = new Promise<void>((r) => tls.on('end', r));
  tls.on('data', (d: Buffer) => got.push(d));
  tls.end(data);
  await ended;
  tls.destroy();
  const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
  assert.equal(sha(Buffer.concat(got)), sha(data), 'the echo is the data sent');
  return tls;
}

describe('fp=chrome TLS client against TLS 1.2 servers (Node TLS)', () => {
  let ec: TestCert;
  let rsa: TestCert;
  before(() => {
    ec = makeCert();
    rsa = makeCert('rsa');
  });
  after(() => {
    ec.remove();
    rsa.remove();
  });

  const cases: [string, 'ec' | 'rsa', string, TlsOptions][] = [
    ['ECDHE-ECDSA-AES128-GCM-SHA256', 'ec', 'X25519', {}],
    ['ECDHE-ECDSA-AES256-GCM-SHA384', 'ec', 'P-256', {}],
    ['ECDHE-ECDSA-CHACHA20-POLY1305', 'ec', 'P-384', {}],
    ['ECDHE-RSA-AES128-GCM-SHA256', 'rsa', 'X25519', { sigalgs: 'rsa_pss_rsae_sha256' }],
    ['ECDHE-RSA-AES256-GCM-SHA384', 'rsa', 'P-256', { sigalgs: 'rsa_pkcs1_sha384' }],
    ['ECDHE-RSA-CHACHA20-POLY1305', 'rsa', 'X25519', { sigalgs: 'rsa_pkcs1_sha256' }],
  ];
  for (const [cipher, kind, curve, extra] of cases)
    test(`${cipher} over ${curve}${extra.sigalgs ? `, ${extra.sigalgs}` : ''}: 256 KiB echoed`, async () => {
      const c = kind === 'ec' ? ec : rsa;
      const srv = await tls12Server({
        cert: c.cert,
        key: c.key,
        ciphers: cipher,
        ecdhCurve: curve,
        ALPNProtocols: ['h2', 'http/1.1'],
        ...extra,
      });
      try {
        const tls = await echo(srv.port, { sni: 'localhost', pinSha256: c.pin }, 256 * 1024);
        assert.equal(tls.getProtocol(), 'TLSv1.2');
        assert.equal(tls.alpnProtocol, 'h2');
      } finally {
        await srv.close();
      }
    });

  test('trust by CA and host name; the server asks for a certificate and gets none', async () => {
    const srv = await tls12Server({
      cert: ec.cert,
      key: ec.key,
      requestCert: true,
      rejectUnauthorized: false,
    });
    try {
      const tls = await echo(srv.port, { sni: 'localhost', ca: ec.cert });
      assert.equal(tls.getProtocol(), 'TLSv1.2');
    } finally {
      await srv.close();
    }
  });

  test('a CertificateRequest: the empty Certificate and the ClientKeyExchange in records of their own', async () => {
    // BoringSSL packs handshake messages into shared records only once they are encrypted
    // (tls_add_message): before the ChangeCipherSpec each message is a record of its own.
    const srv = await tls12Server({
      cert: ec.cert,
      key: ec.key,
      requestCert: true,
      rejectUnauthorized: false,
    });
    const relay = await tlsRelay(srv.port);
    try {
      const tls = await chromeTlsConnect(
        { host: '127.0.0.1', port: srv.port },
        { sni: 'localhost', pinSha256: ec.pin, socket: relay.socket, sessions: null },
      );
      tls.destroy();
      const [hello, cert, cke, ccs, fin] = relay.clientRecords;
      assert.equal(hello?.type, 22);
      assert.deepEqual(cert, { type: 22, length: 7 }, 'Certificate: 0b 000003 000000');
      assert.equal(cke?.type, 22);
      assert.deepEqual(ccs, { type: 20, length: 1 });
      assert.equal(fin?.type, 22);
    } finally {
      relay.close();
      await srv.close();
    }
  });

  test('the server speaks first, right after the handshake', async () => {
    const srv = await tls12Server({ cert: ec.cert, key: ec.key }, (s) => s.end('hello'));
    try {
      const tls = await chromeTlsConnect(
        { host: '127.0.0.1', port: srv.port },
        { sni: 'localhost', pinSha256: ec.pin, timeoutMs: 5000 },
      );
      const got: Buffer[] = [];
      tls.on('data', (d: Buffer) => got.push(d));
      await new Promise((r) => tls.on('end', r));
      tls.destroy();
      assert.equal(Buffer.concat(got).toString(), 'hello');
    } finally {
      await srv.close();
    }
  });

  for (const tickets of [false, true])
    test(`resumption with a session cache, tickets ${tickets ? 'on' : 'off'}: ${
      tickets ? 'the ticket and a random id' : 'the server’s session id'
    } offered`, async () => {
      // Node's TLS server keeps sessions by id only through these two events (an external cache).
      const kept = new Map<string, Buffer>();
      const ids: Buffer[] = [];
      const srv = await tls12Server({
        cert: ec.cert,
        key: ec.key,
        ALPNProtocols: ['http/1.1'],
        ...(tickets ? {} : { secureOptions: constants.SSL_OP_NO_TICKET }),
      });
      srv.server.on('newSession', (id: Buffer, data: Buffer, cb: () => void) => {
        ids.push(Buffer.from(id));
        kept.set(id.toString('hex'), data);
        cb();
      });
      srv.server.on('resumeSession', (id: Buffer, cb: (e: null, d: Buffer | null) => void) =>
        cb(null, kept.get(id.toString('hex')) ?? null),
      );
      const sessions = new ChromeSessionCache();
      try {
        const hellos: ClientHelloInfo[] = [];
        const given: Buffer[] = [];
        const reused: boolean[] = [];
        for (let i = 0; i < 3; i++) {
          const relay = await tlsRelay(srv.port);
          try {
            const tls = await chromeTlsConnect(
              { host: '127.0.0.1', port: srv.port },
              { sni: 'localhost', pinSha256: ec.pin, socket: relay.socket, sessions },
            );
            reused.push(tls.isSessionReused());
            const echoed = new Promise<Buffer>((r) => tls.once('data', r));
            tls.write('ping');
            assert.equal((await echoed).toString(), 'ping');
            tls.destroy();
            hellos.push(relay.hello()!);
            given.push(relay.serverSessionId()!);
          } finally {
            relay.close();
          }
        }
        assert.deepEqual(reused, [false, true, true]);
        if (!tickets) {
          assert.equal(ids.length, 1, 'one session made, then resumed');
          assert.deepEqual(given[0], ids[0]);
        }
        const ticketOf = (i: number): number =>
          hellos[i]!.extensionData.get(EXT.SESSION_TICKET)!.length;
        assert.equal(ticketOf(0), 0);
        for (const i of [1, 2]) {
          if (tickets) {
            assert.ok(ticketOf(i) > 0, 'the ticket is offered');
            assert.equal(hellos[i]!.sessionId.length, 32);
            assert.notDeepEqual(Buffer.from(hellos[i]!.sessionId), given[0], 'beside a random id');
            assert.notDeepEqual(hellos[i]!.sessionId, hellos[0]!.sessionId);
          } else {
            assert.equal(ticketOf(i), 0, 'session_ticket stays empty');
            assert.deepEqual(
              Buffer.from(hellos[i]!.sessionId),
              given[0],
              'the server’s id offered',
            );
          }
        }
      } finally {
        await srv.close();
      }
    });

  type Opts = Parameters<typeof chromeTlsConnect>[1];
  const refusals: [string, () => Opts, () => TlsOptions, RegExp, string][] = [
    [
      'wrong host',
      () => ({ sni: 'www.example.com', ca: ec.cert }),
      () => ({}),
      /not for www\.example\.com/,
      'ERR_TLS_CERT',
    ],
    [
      'untrusted chain (system roots)',
      () => ({ sni: 'localhost' }),
      () => ({}),
      /trusted root/,
      'ERR_TLS_CERT',
    ],
    [
      'wrong pin',
      () => ({ sni: 'localhost', pinSha256: 'ab'.repeat(32) }),
      () => ({}),
      /pin/,
      'ERR_TLS_CERT',
    ],
    [
      'a CBC-only server',
      () => ({ sni: 'localhost', pinSha256: rsa.pin }),
      () => ({ cert: rsa.cert, key: rsa.key, ciphers: 'ECDHE-RSA-AES128-SHA' }),
      /CBC or RSA key transport.*fp=node/,
      'ERR_TLS_PROTOCOL',
    ],
  ];
  for (const [name, opts, serverOpts, message, code] of refusals)
    test(`refused: ${name}`, async () => {
      const srv = await tls12Server({ cert: ec.cert, key: ec.key, ...serverOpts() });
      try {
        await assert.rejects(
          chromeTlsConnect({ host: '127.0.0.1', port: srv.port }, { timeoutMs: 5000, ...opts() }),
          (e: Error & { code?: string }) => {
            assert.match(e.message, message);
            assert.equal(e.code, code);
            return true;
          },
        );
      } finally {
        await srv.close();
      }
    });
});
