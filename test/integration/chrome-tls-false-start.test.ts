/**
 * TLS 1.2 False Start as Chrome (BoringSSL) does it, against real servers: a relay between the
 * fp=chrome client and the server holds the server's ChangeCipherSpec and Finished until the client
 * has sent application data after its own Finished (test/helpers/tls-relay.ts). With False Start
 * the request passes first and the answer comes back; without it the relay lets the server's
 * Finished go after a bounded number of idle event-loop turns and the recorded order shows it.
 * BoringSSL's conditions: TLS 1.2, ECDHE, an AEAD suite and ALPN negotiated; without ALPN the client
 * waits for the server's Finished.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server, type TlsOptions } from 'node:tls';
import { chromeTlsConnect } from '../../src/transport/chrome-tls.js';
import { startNginx, NGINX_BIN } from '../helpers/nginx.js';
import { tlsRelay } from '../helpers/tls-relay.js';
import { makeCert, type TestCert } from '../helpers/tls-cert.js';

const FALSE_START = ['client-finished', 'client-data', 'server-finish'];
const WAITED = ['client-finished', 'server-finish', 'client-data'];

/** One fresh handshake through a holding relay: the text the server answered and the order seen. */
async function exchange(
  port: number,
  cert: TestCert,
  alpn: string[],
  request: string,
): Promise<{ answer: string; log: string[]; alpn: string | false }> {
  const relay = await tlsRelay(port, { holdServerFinish: true });
  try {
    const tls = await chromeTlsConnect(
      { host: '127.0.0.1', port },
      { sni: 'localhost', ca: cert.cert, alpn, sessions: null, socket: relay.socket },
    );
    assert.equal(tls.getProtocol(), 'TLSv1.2');
    const got: Buffer[] = [];
    const ended = new Promise<void>((resolve, reject) => {
      tls.on('end', resolve);
      tls.on('error', reject);
    });
    tls.on('data', (d: Buffer) => got.push(d));
    tls.end(request);
    await ended;
    tls.destroy();
    return { answer: Buffer.concat(got).toString(), log: [...relay.log], alpn: tls.alpnProtocol };
  } finally {
    relay.close();
  }
}

describe('fp=chrome TLS 1.2 False Start', { timeout: 60_000 }, () => {
  let cert: TestCert;
  before(() => {
    cert = makeCert();
  });
  after(() => cert.remove());

  test(
    'nginx (TLS 1.2, ALPN http/1.1): the request passes before the server’s Finished',
    { skip: existsSync(NGINX_BIN) ? false : 'nginx is missing (Debian package nginx)' },
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'ladder-false-start-'));
      const root = join(dir, 'root');
      mkdirSync(root);
      writeFileSync(join(root, 'index.html'), 'hello from nginx\n');
      const n = await startNginx({
        dir,
        root,
        tls: { cert: cert.certFile, key: cert.keyFile },
        http: ['ssl_protocols TLSv1.2;', 'keepalive_timeout 0;'],
      });
      try {
        const r = await exchange(
          n.tlsPort!,
          cert,
          ['http/1.1'],
          'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n',
        );
        assert.equal(r.alpn, 'http/1.1');
        assert.match(r.answer, /^HTTP\/1\.1 200/);
        assert.match(r.answer, /hello from nginx/);
        assert.deepEqual(r.log, FALSE_START);
      } finally {
        await n.stop();
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );

  async function nodeServer(opts: TlsOptions): Promise<{ port: number; close(): Promise<void> }> {
    const server: Server = createServer(
      { cert: cert.cert, key: cert.key, maxVersion: 'TLSv1.2', allowHalfOpen: true, ...opts },
      (s) => {
        s.on('error', () => s.destroy());
        s.pipe(s);
      },
    );
    server.on('tlsClientError', () => {});
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return {
      port: (server.address() as AddressInfo).port,
      close: () => new Promise<void>((r) => server.close(() => r())),
    };
  }

  for (const cipher of ['ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-CHACHA20-POLY1305'])
    test(`Node TLS 1.2 (${cipher}, ALPN h2): the data passes first and is echoed`, async () => {
      const srv = await nodeServer({ ciphers: cipher, ALPNProtocols: ['h2'] });
      try {
        const r = await exchange(srv.port, cert, ['h2', 'http/1.1'], 'ping');
        assert.equal(r.alpn, 'h2');
        assert.equal(r.answer, 'ping');
        assert.deepEqual(r.log, FALSE_START);
      } finally {
        await srv.close();
      }
    });

  test('no ALPN negotiated: no False Start, the client waits for the Finished', async () => {
    const srv = await nodeServer({});
    try {
      const r = await exchange(srv.port, cert, ['h2', 'http/1.1'], 'ping');
      assert.equal(r.alpn, false);
      assert.equal(r.answer, 'ping');
      assert.deepEqual(r.log, WAITED);
    } finally {
      await srv.close();
    }
  });
});
