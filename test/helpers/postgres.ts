/**
 * A throwaway PostgreSQL for tests and benchmarks: `initdb` into a temporary directory, the server
 * listening on 127.0.0.1 at a free port and on a Unix socket in that directory, never a system
 * service. As root it runs as `nobody` (PostgreSQL refuses to run as root), through setpriv, which
 * execs it, so the PID we hold is the postmaster's own. stop() asks for a fast shutdown (SIGINT) and
 * waits for the exit; remove() also deletes the directory.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './peers.js';

/** Directory of initdb and postgres: Debian's /usr/lib/postgresql/<newest>/bin, or null. */
export function postgresBin(): string | null {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return null;
  const versions = readdirSync(root)
    .filter((v) => /^\d+$/.test(v) && existsSync(join(root, v, 'bin', 'postgres')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(root, versions[0], 'bin') : null;
}

export interface TestPostgres {
  /** postgres://ladder@127.0.0.1:<port>/ladder */
  readonly url: string;
  readonly port: number;
  readonly pid: () => number | undefined;
  /** Stops the server (fast shutdown) and waits for it. */
  stop(): Promise<void>;
  /** Starts it again on the same port and data. */
  start(): Promise<void>;
  /** Stops it and deletes its directory. */
  remove(): Promise<void>;
}

const asNobody = (): string[] =>
  process.getuid?.() === 0
    ? ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', '--']
    : [];

export async function startPostgres(): Promise<TestPostgres> {
  const bin = postgresBin();
  if (!bin) throw new Error('PostgreSQL is not installed (apt-get install postgresql)');
  const top = mkdtempSync(join(tmpdir(), 'ladder-pg-'));
  const data = join(top, 'data');
  if (process.getuid?.() === 0) chownSync(top, 65534, 65534);
  const init = spawnSync(
    asNobody()[0] ?? join(bin, 'initdb'),
    [
      ...asNobody().slice(1),
      ...(asNobody().length ? [join(bin, 'initdb')] : []),
      '-D',
      data,
      '-U',
      'ladder',
      '--auth=trust',
      '-E',
      'UTF8',
      '--no-sync',
    ],
    { encoding: 'utf8' },
  );
  if (init.status !== 0) {
    rmSync(top, { recursive: true, force: true });
    throw new Error(`initdb failed: ${init.stderr}`);
  }
  const port = await freePort();
  let child: ChildProcess | null = null;
  const start = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const argv = [
        ...asNobody(),
        join(bin, 'postgres'),
        '-D',
        data,
        '-k',
        top,
        '-p',
        String(port),
        '-c',
        'listen_addresses=127.0.0.1',
        '-c',
        'fsync=off',
        '-c',
        'max_connections=200',
      ];
      const c = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
      child = c;
      let log = '';
      const timer = setTimeout(() => {
        c.kill('SIGINT');
        reject(new Error(`postgres did not start in 20 s:\n${log}`));
      }, 20_000);
      c.stderr!.on('data', (d: Buffer) => {
        log = (log + d.toString()).slice(-20_000);
        if (/database system is ready to accept connections/.test(log)) {
          clearTimeout(timer);
          resolve();
        }
      });
      c.once('exit', (code) => {
        clearTimeout(timer);
        if (child === c) child = null;
        reject(new Error(`postgres exited with ${code}:\n${log}`));
      });
    });
  const stop = async (): Promise<void> => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGINT'); // fast shutdown: disconnects clients, then exits
    await exited;
  };
  await start();
  spawnSync(
    join(bin, 'createdb'),
    ['-h', '127.0.0.1', '-p', String(port), '-U', 'ladder', 'ladder'],
    { encoding: 'utf8' },
  );
  return {
    url: `postgres://ladder@127.0.0.1:${port}/ladder`,
    port,
    pid: () => child?.pid,
    stop,
    start,
    remove: async () => {
      await stop();
      rmSync(top, { recursive: true, force: true });
    },
  };
}
