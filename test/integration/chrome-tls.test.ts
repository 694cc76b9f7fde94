/**
 * Ladder's fp=chrome TLS client (src/transport/chrome-tls.ts) against Node's TLS server (OpenSSL):
 * every TLS 1.3 suite, ECDSA and RSA-PSS certificates, a HelloRetryRequest, trust by pin, by CA
 * and the host name, bulk data both ways with half-close, and the refusals: wrong host, untrusted
 * chain, wrong pin. TLS 1.2 servers: chrome-tls12.test.ts.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { randomBytes, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { createServer, type Server, type TlsOptions } from 'node:tls';
import { chromeTlsConnect } from '../../src/transport/chrome-tls.js';
import { makeCert, type TestCert } from '../helpers/tls-cert.js';

const CHROME_TLS_MODULE = fileURLToPath(
  new URL('../../src/transport/chrome-tls.js', import.meta.url),
);

async function nodeServer(
  opts: TlsOptions,
  onConn: (s: import('node:tls').TLSSocket) => void = (s) => s.pipe(s),
): Promise<{ port: number; server: Server; close(): Promise<void> }> {
  const server = createServer({ allowHalfOpen: true, ...opts } as TlsOptions, (s) => {
    s.on('error', () => s.destroy());
    onConn(s);
  });
  server.on('tlsClientError', () => {});
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    server,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

function rsaCert(dir: string): { cert: string; key: string } {
  const r = spawnSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '2',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost',
      '-keyout',
      join(dir, 'rsa.key'),
      '-out',
      join(dir, 'rsa.pem'),
    ],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(r.stderr);
  return {
    cert: readFileSync(join(dir, 'rsa.pem'), 'utf8'),
    key: readFileSync(join(dir, 'rsa.key'), 'utf8'),
  };
}

async function echoRoundTrip(port: number, o: Parameters<typeof chromeTlsConnect>[1], size = 1000) {
  const tls = await chromeTlsConnect({ host: '127.0.0.1', port }, { timeoutMs: 5000, ...o });
  const data = randomBytes(size);
  const got: Buffer[] = [];
  const ended = new Promise<void>((r) => tls.on('end', r));
  tls.on('data', (d: Buffer) => got.push(d));
  tls.end(data);
  await ended;
  tls.destroy();
  return { tls, sent: data, got: Buffer.concat(got) };
}

describe('fp=chrome TLS client against Node TLS', () => {
  let cert: TestCert;
  before(() => {
    cert = makeCert();
  });
  after(() => cert.remove());

  for (const suite of [
    'TLS_AES_128_GCM_SHA256',
    'TLS_AES_256_GCM_SHA384',
    'TLS_CHACHA20_POLY1305_SHA256',
  ]) {
    test(`${suite}: handshake, ALPN h2, 256 KiB echoed through a half-close`, async () => {
      const srv = await nodeServer({
        cert: cert.cert,
        key: cert.key,
        ciphers: suite,
        ALPNProtocols: ['h2', 'http/1.1'],
      });
      try {
        const r = await echoRoundTrip(
          srv.port,
          { sni: 'localhost', pinSha256: cert.pin },
          256 * 1024,
        );
        assert.equal(r.tls.alpnProtocol, 'h2');
        assert.equal(
          createHash('sha256').update(r.got).digest('hex'),
          createHash('sha256').update(r.sent).digest('hex'),
        );
      } finally {
        await srv.close();
      }
    });
  }

  test('trust by CA and host name; a session ticket is announced', async () => {
    const srv = await nodeServer({ cert: cert.cert, key: cert.key });
    try {
      const tls = await chromeTlsConnect(
        { host: '127.0.0.1', port: srv.port },
        { sni: 'localhost', ca: cert.cert },
      );
      const ticket = new Promise((r) => tls.once('session', r));
      tls.write('x');
      assert.ok(Buffer.isBuffer(await ticket));
      tls.destroy();
    } finally {
      await srv.close();
    }
  });

  test('unref(): an open connection no longer keeps the process alive (idle pools rely on it)', async () => {
    // The server holds the connection open; a child process connects, unrefs and should then end
    // on its own, as it does with a net.Socket. Without the forwarding it would stay until killed.
    // It ends its side when the child's ends: a half-open socket that no longer reads keeps no event
    // loop alive, so srv.close() would wait for it while nothing else runs (the test cancelled).
    const srv = await nodeServer({ cert: cert.cert, key: cert.key }, (s) => {
      s.on('end', () => s.end());
      s.resume();
    });
    const script = `
      import { chromeTlsConnect } from ${JSON.stringify(CHROME_TLS_MODULE)};
      const tls = await chromeTlsConnect({ host: '127.0.0.1', port: ${srv.port} },
        { sni: 'localhost', pinSha256: ${JSON.stringify(cert.pin)} });
      tls.unref();
      console.log('unref');
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    // A hang bound, not a timing: the child has nothing left to do once it prints.
    const bound = setTimeout(() => child.kill('SIGKILL'), 120_000);
    try {
      const [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
      assert.equal(out.trim(), 'unref');
      assert.deepEqual([code, signal], [0, null], 'the child ended by itself');
    } finally {
      clearTimeout(bound);
      child.kill('SIGKILL');
      await srv.close();
    }
  });

  test('an RSA certificate: RSA-PSS CertificateVerify', async () => {
    const rsa = rsaCert(cert.dir);
    const srv = await nodeServer({ cert: rsa.cert, key: rsa.key });
    try {
      const r = await echoRoundTrip(srv.port, { sni: 'localhost', ca: rsa.cert });
      assert.deepEqual(r.got, r.sent);
    } finally {
      await srv.close();
    }
  });

  test('a server that wants P-256: HelloRetryRequest, then the handshake', async () => {
    const srv = await nodeServer({ cert: cert.cert, key: cert.key, ecdhCurve: 'P-256' });
    try {
      const r = await echoRoundTrip(srv.port, { sni: 'localhost', pinSha256: cert.pin });
      assert.deepEqual(r.got, r.sent);
    } finally {
      await srv.close();
    }
  });

  const refusals: [
    string,
    (port: number) => Parameters<typeof chromeTlsConnect>[1],
    TlsOptions,
    RegExp,
    string,
  ][] = [
    [
      'wrong host',
      () => ({ sni: 'www.example.com', ca: cert.cert }),
      {},
      /not for www\.example\.com/,
      'ERR_TLS_CERT',
    ],
    [
      'untrusted chain (system roots)',
      () => ({ sni: 'localhost' }),
      {},
      /trusted root/,
      'ERR_TLS_CERT',
    ],
    [
      'wrong pin',
      () => ({ sni: 'localhost', pinSha256: 'ab'.repeat(32) }),
      {},
      /pin/,
      'ERR_TLS_CERT',
    ],
  ];
  for (const [name, opts, serverOpts, message, code] of refusals)
    test(`refused: ${name}`, async () => {
      const srv = await nodeServer({ cert: cert.cert, key: cert.key, ...serverOpts });
      try {
        await assert.rejects(
          chromeTlsConnect(
            { host: '127.0.0.1', port: srv.port },
            { timeoutMs: 5000, ...opts(srv.port) },
          ),
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
