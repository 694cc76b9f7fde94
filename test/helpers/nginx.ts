/**
 * Debian's nginx as a child process on loopback, serving a directory, with a configuration written
 * to a temporary directory: the reference the decoy site is compared with, byte for byte.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, createServer, type AddressInfo } from 'node:net';

export const NGINX_BIN = '/usr/sbin/nginx';

export interface NginxOptions {
  /** Working directory for the configuration, logs and temporary files. */
  dir: string;
  /** Document root. */
  root: string;
  /** Extra lines inside `http { }` (timeouts). */
  http?: string[];
  /** PEM files: also listen with TLS. */
  tls?: { cert: string; key: string };
}

export interface RunningNginx {
  port: number;
  tlsPort?: number;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Resolves once something accepts on the port (bounded: 200 tries, 50 ms apart). */
async function accepting(port: number, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`nginx exited with ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nginx did not listen on ${port}`);
}

export async function startNginx(o: NginxOptions): Promise<RunningNginx> {
  if (!existsSync(NGINX_BIN))
    throw new Error(`${NGINX_BIN} is missing: apt-get install nginx-light (.ci/run installs it)`);
  const port = await freePort();
  const tlsPort = o.tls ? await freePort() : undefined;
  for (const d of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'])
    mkdirSync(join(o.dir, d), { recursive: true });
  const conf = join(o.dir, 'nginx.conf');
  writeFileSync(
    conf,
    [
      'master_process off;',
      'worker_processes 1;',
      `error_log ${join(o.dir, 'error.log')};`,
      'events { worker_connections 1024; }',
      'http {',
      '  include /etc/nginx/mime.types;',
      '  default_type application/octet-stream;',
      '  access_log off;',
      '  sendfile on;',
      '  tcp_nopush on;',
      `  client_body_temp_path ${join(o.dir, 'body')};`,
      `  proxy_temp_path ${join(o.dir, 'proxy')};`,
      `  fastcgi_temp_path ${join(o.dir, 'fastcgi')};`,
      `  uwsgi_temp_path ${join(o.dir, 'uwsgi')};`,
      `  scgi_temp_path ${join(o.dir, 'scgi')};`,
      ...(o.http ?? []).map((l) => `  ${l}`),
      '  server {',
      `    listen 127.0.0.1:${port};`,
      ...(o.tls
        ? [
            `    listen 127.0.0.1:${tlsPort} ssl;`,
            `    ssl_certificate ${o.tls.cert};`,
            `    ssl_certificate_key ${o.tls.key};`,
          ]
        : []),
      `    root ${o.root};`,
      '    index index.html;',
      '  }',
      '}',
      '',
    ].join('\n'),
  );
  const child = spawn(
    NGINX_BIN,
    ['-p', o.dir, '-c', conf, '-g', `daemon off; pid ${join(o.dir, 'nginx.pid')};`],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  try {
    await accepting(port, child);
    if (tlsPort !== undefined) await accepting(tlsPort, child);
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`${(err as Error).message}: ${stderr}`, { cause: err });
  }
  return {
    port,
    ...(tlsPort !== undefined ? { tlsPort } : {}),
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}
