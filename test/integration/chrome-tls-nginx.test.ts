/**
 * fp=chrome against Debian's nginx (OpenSSL) on loopback: a TLS 1.3 server answers an HTTP/1.1
 * request over Ladder's client, and the same from an nginx configured `ssl_protocols TLSv1.2`
 * (ECDHE + AEAD, extended master secret); the later connections resume (TLS 1.3: a new ticket
 * each time; TLS 1.2: nginx's session ticket, offered again; TLS 1.2 with tickets off and a shared
 * session cache: the session id nginx gave, offered in the hello as Chrome does).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromeTlsConnect } from '../../src/transport/chrome-tls.js';
import { ChromeSessionCache } from '../../src/transport/chrome-sessions.js';
import { freePort, hasCommand, waitForPort } from '../helpers/peers.js';
import { makeCert, type TestCert } from '../helpers/tls-cert.js';

const skip =
  hasCommand('nginx') || hasCommand('/usr/sbin/nginx')
    ? false
    : 'nginx is missing (Debian package nginx)';
const NGINX = '/usr/sbin/nginx';

async function startNginx(
  cert: TestCert,
  protocols: string,
  extra: string,
): Promise<{ port: number; stop(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'ladder-nginx-'));
  const port = await freePort();
  writeFileSync(
    join(dir, 'nginx.conf'),
    `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${dir}/b; proxy_temp_path ${dir}/p; fastcgi_temp_path ${dir}/f;
  uwsgi_temp_path ${dir}/u; scgi_temp_path ${dir}/s;
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${cert.certFile};
    ssl_certificate_key ${cert.keyFile};
    ssl_protocols ${protocols};
    ${extra}
    location / { return 200 "hello from nginx\\n"; }
  }
}
`,
  );
  const child: ChildProcess = spawn(NGINX, ['-p', dir, '-c', join(dir, 'nginx.conf')], {
    stdio: 'ignore',
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  await waitForPort(port, 10_000, () => (child.exitCode !== null ? 'nginx exited' : null));
  return {
    port,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

describe('fp=chrome against nginx', { skip, timeout: 60_000 }, () => {
  let cert: TestCert;
  before(() => {
    cert = makeCert();
  });
  after(() => cert.remove());

  for (const [name, protocols, version, extra] of [
    ['TLS 1.3', 'TLSv1.3', 'TLSv1.3', ''],
    ['TLS 1.2 only', 'TLSv1.2', 'TLSv1.2', ''],
    [
      'TLS 1.2, session ids (no tickets)',
      'TLSv1.2',
      'TLSv1.2',
      'ssl_session_tickets off; ssl_session_cache shared:ladder:1m;',
    ],
  ] as const)
    test(`${name}: an HTTP/1.1 request and nginx’s answer, three times`, async () => {
      const n = await startNginx(cert, protocols, extra);
      const sessions = new ChromeSessionCache();
      try {
        const reused: boolean[] = [];
        for (let i = 0; i < 3; i++) {
          const tls = await chromeTlsConnect(
            { host: '127.0.0.1', port: n.port },
            { sni: 'localhost', ca: cert.cert, alpn: ['http/1.1'], timeoutMs: 5000, sessions },
          );
          assert.equal(tls.getProtocol(), version);
          reused.push(tls.isSessionReused());
          const body: Buffer[] = [];
          const ended = new Promise<void>((r) => tls.on('end', r));
          tls.on('data', (d: Buffer) => body.push(d));
          tls.write('GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
          await ended;
          tls.destroy();
          const text = Buffer.concat(body).toString();
          assert.match(text, /^HTTP\/1\.1 200/);
          assert.match(text, /hello from nginx/);
        }
        assert.deepEqual(reused, [false, true, true]);
      } finally {
        await n.stop();
      }
    });
});
