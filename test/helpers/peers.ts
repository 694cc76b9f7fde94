/**
 * Start real processes for tests and benchmarks — Ladder's own CLI and Debian's peers — wait until
 * they are ready, and stop exactly them (by PID) afterwards, even when a test fails.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, connect, type AddressInfo } from 'node:net';
import { accessSync, constants, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The built CLI, found relative to this compiled file (dist/test/helpers → dist/src/cli). */
export const LADDER_CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

const running = new Set<ChildProcess>();
const tempDirs = new Set<string>();
// Last resort when a test or bench dies without stopping what it started: exactly our children, by
// PID. 'exit' does not fire when a signal ends the process (Ctrl-C on the bench, the test runner's
// timeout), so SIGINT and SIGTERM clean up too and then take their default course.
function killAll(): void {
  for (const p of running) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
}
process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    killAll();
    process.kill(process.pid, signal);
  });
}

export interface Peer {
  readonly pid: number;
  readonly output: () => string;
  stop(): Promise<void>;
}

/**
 * How long a process may take to print its ready line: a bound for a hang, not a measurement (a
 * server that makes its certificate and opens its database took over 10 s at load 11).
 */
const READY_TIMEOUT_MS = 60_000;

/** Spawns argv[0] with the rest (never through a shell); resolves when `ready` matches its output. */
export function startProcess(
  argv: string[],
  ready: RegExp,
  options: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<Peer & { match: RegExpMatchArray }> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: options.env ?? process.env,
    });
    running.add(child);
    let out = '';
    let done = false;
    const stop = async (): Promise<void> => {
      if (child.exitCode !== null || child.signalCode !== null) {
        running.delete(child);
        return;
      }
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(t);
      running.delete(child);
    };
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      void stop();
      reject(
        new Error(
          `${argv[0]} did not print ${ready} within ${options.timeoutMs ?? READY_TIMEOUT_MS} ms; output:\n${out}`,
        ),
      );
    }, options.timeoutMs ?? READY_TIMEOUT_MS);
    const onOut = (d: Buffer): void => {
      out += d.toString();
      if (out.length > 200_000) out = out.slice(-100_000);
      const m = ready.exec(out);
      if (m && !done) {
        done = true;
        clearTimeout(timer);
        resolve({ pid: child.pid!, output: () => out, stop, match: m });
      }
    };
    child.stdout!.on('data', onOut);
    child.stderr!.on('data', onOut);
    child.on('error', (err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      reject(err);
    });
    child.on('exit', (code) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      reject(new Error(`${argv[0]} exited with ${code} before it was ready; output:\n${out}`));
    });
  });
}

/** A free TCP port on 127.0.0.1 (bound, read, released). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/**
 * Resolves once something accepts TCP connections on 127.0.0.1:port. `abandon` is asked between
 * attempts and, when it returns a reason (the process that should listen has exited), polling stops
 * with that reason rather than running out the timeout.
 */
export async function waitForPort(
  port: number,
  timeoutMs = 10_000,
  abandon: () => string | null = () => null,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        r(true);
      });
      s.once('error', () => r(false));
    });
    if (ok) return;
    const reason = abandon();
    if (reason !== null) throw new Error(reason);
    if (Date.now() > deadline)
      throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Whether an executable of this name is on PATH (looked up here, no shell involved). */
export function hasCommand(name: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/**
 * The ladder CLI as a process. `LADDER_NODE_ARGS` (space-separated) adds flags for Node itself,
 * e.g. `--cpu-prof --cpu-prof-dir=/tmp/p` (which NODE_OPTIONS does not take): bench/latency-phases.ts.
 */
export function startLadder(
  args: string[],
  ready = /listening/,
  options: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
) {
  const nodeArgs = (process.env.LADDER_NODE_ARGS ?? '').split(' ').filter(Boolean);
  return startProcess([process.execPath, ...nodeArgs, LADDER_CLI, ...args], ready, options);
}

/** shadowsocks-libev `ss-server` or `ss-local` from a JSON config written to a temp dir. */
export async function startLibev(
  binary: 'ss-server' | 'ss-local',
  config: Record<string, unknown>,
  extraArgs: string[] = [],
): Promise<Peer> {
  const dir = mkdtempSync(join(tmpdir(), 'ladder-libev-'));
  tempDirs.add(dir);
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify(config), { mode: 0o600 });
  const port = Number(binary === 'ss-server' ? config.server_port : config.local_port);
  const child = spawn(binary, ['-c', file, ...extraArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d));
  child.stderr!.on('data', (d: Buffer) => (out += d));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(t);
    }
    running.delete(child);
    rmSync(dir, { recursive: true, force: true });
    tempDirs.delete(dir);
  };
  try {
    // libev prints nothing reliable when ready, so readiness is its port accepting; if it exits
    // first (a bad config), say so at once rather than after the port timeout.
    await waitForPort(port, 10_000, () =>
      child.exitCode !== null || child.signalCode !== null
        ? `exited with ${child.exitCode ?? child.signalCode} before listening`
        : null,
    );
  } catch (err) {
    await stop();
    throw new Error(`${binary} did not start: ${(err as Error).message}\n${out}`, { cause: err });
  }
  return { pid: child.pid!, output: () => out, stop };
}

/**
 * A peer daemon from Debian (trojan, v2ray, ss-local with a plugin, ...) with its JSON config written
 * to a temp dir (mode 0600: configs hold passwords); ready when `port` on 127.0.0.1 accepts. The
 * config may name `@DIR@`, replaced by that temp dir (for certificate paths placed there).
 */
export async function startDaemon(
  argv: (configFile: string) => string[],
  config: Record<string, unknown>,
  port: number,
  options: { files?: Record<string, string | Buffer>; env?: NodeJS.ProcessEnv } = {},
): Promise<Peer & { dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'ladder-peer-'));
  tempDirs.add(dir);
  for (const [name, body] of Object.entries(options.files ?? {}))
    writeFileSync(join(dir, name), body, { mode: 0o600 });
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify(config).replaceAll('@DIR@', dir), { mode: 0o600 });
  const args = argv(file);
  const child = spawn(args[0]!, args.slice(1), {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: options.env ?? process.env,
  });
  running.add(child);
  let out = '';
  const keep = (d: Buffer): void => {
    out += d.toString();
    if (out.length > 200_000) out = out.slice(-100_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(t);
    }
    running.delete(child);
    rmSync(dir, { recursive: true, force: true });
    tempDirs.delete(dir);
  };
  try {
    await waitForPort(port, 10_000, () =>
      child.exitCode !== null || child.signalCode !== null
        ? `exited with ${child.exitCode ?? child.signalCode} before listening`
        : null,
    );
  } catch (err) {
    await stop();
    throw new Error(`${args[0]} did not start: ${(err as Error).message}\n${out}`, { cause: err });
  }
  return { pid: child.pid!, output: () => out, stop, dir };
}
