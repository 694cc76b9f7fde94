/**
 * `npm run bench -- --only=operator` (and part of the full run): what keys, limits and accounting
 * cost. Issue #5's target is that throughput with 1,000 keys on the server and accounting on stays
 * within 5% of a single key without accounting.
 *
 *   single:  `ladder server --key URI`, one key given on the command line (no store, no limits)
 *   store:   `ladder server --data DIR` holding 1,000 keys, each with a data limit, usage counted and
 *            written every second; the client uses the key made last (the last one tried by trial
 *            decryption, until the server's per-client hint remembers it)
 *
 * Both run the same method (chacha20-ietf-poly1305, Outline's default) behind a real `ladder client`,
 * measured in alternating rounds: bulk (one curl download through SOCKS5) and concurrency (200
 * connections at once, 1 MiB each, each a fresh Shadowsocks connection and so a fresh trial
 * decryption). Every load is bounded in count and time; every process started is stopped by PID.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatSsUri } from '../src/codec/access-key-uri.js';
import { KeyStore } from '../src/store/key-store.js';
import { KeyManager } from '../src/server/access/key-manager.js';
import { freePort, startLadder, type Peer } from '../test/helpers/peers.js';
import { fetchOnce } from './socks-load.js';

const MB = 1e6;
const TICKS = 100; // USER_HZ: /proc/<pid>/stat counts CPU time in 1/100 s on Linux
const METHOD = 'chacha20-ietf-poly1305';

interface Side {
  name: string;
  socks: number;
  peers: Peer[];
  server: Peer;
}

/** CPU time (user + system, in clock ticks) a process has used so far, from /proc. */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}

function curlMbps(socks: number, originPort: number, bytes: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const c = spawn(
      'curl',
      [
        '-sS',
        '-o',
        '/dev/null',
        '--max-time',
        '120',
        '-w',
        '%{speed_download} %{size_download}',
        '--socks5-hostname',
        `127.0.0.1:${socks}`,
        `http://127.0.0.1:${originPort}/bytes/${bytes}`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.on('close', (code) => {
      const [speed, size] = out.trim().split(' ').map(Number);
      if (code !== 0 || size !== bytes) reject(new Error(`curl failed (${code}) ${out}`));
      else resolve(speed! / MB);
    });
  });
}

async function concurrentMbps(socks: number, originPort: number, n: number): Promise<number> {
  const t0 = performance.now();
  const results = await Promise.all(
    Array.from({ length: n }, () => fetchOnce(socks, originPort, `/bytes/${1024 * 1024}`)),
  );
  const bytes = results.reduce((a, [, b]) => a + b, 0);
  return bytes / MB / ((performance.now() - t0) / 1000);
}

async function client(uri: string): Promise<[Peer, number]> {
  const socks = await freePort();
  const p = await startLadder([
    'client',
    '--server',
    uri,
    '--socks',
    `127.0.0.1:${socks}`,
    '--no-http',
  ]);
  return [p, socks];
}

async function single(): Promise<Side> {
  const port = await freePort();
  const uri = formatSsUri({
    method: METHOD,
    password: 'ladder-bench-single-key',
    host: '127.0.0.1',
    port,
  });
  const server = await startLadder([
    'server',
    '--allow-private-targets',
    '--listen',
    `127.0.0.1:${port}`,
    '--key',
    uri,
    '--no-udp',
  ]);
  const [c, socks] = await client(uri);
  return { name: 'single key, no store', socks, peers: [c, server], server };
}

async function store(dir: string, keys: number): Promise<Side> {
  const port = await freePort();
  const s = KeyStore.open(dir);
  const m = new KeyManager({ store: s, onKeysChanged: () => {} });
  let last = m.create({ name: 'k0', limit: { bytes: 1e15, period: '30d' } });
  for (let i = 1; i < keys; i++)
    last = m.create({ name: `k${i}`, limit: { bytes: 1e15, period: '30d' } });
  s.close();
  const server = await startLadder([
    'server',
    '--allow-private-targets',
    '--listen',
    `127.0.0.1:${port}`,
    '--data',
    dir,
    '--no-api',
    '--no-udp',
  ]);
  const uri = formatSsUri({ method: last.method, password: last.secret, host: '127.0.0.1', port });
  const [c, socks] = await client(uri);
  return {
    name: `${keys} keys in the store, accounting and limits on`,
    socks,
    peers: [c, server],
    server,
  };
}

export interface OperatorBenchResult {
  bulkMBps: Record<string, number>;
  concurrentMBps: Record<string, number>;
  /** Median over rounds of store/single within each round (paired: both ran minutes apart at most). */
  bulkRatio: number;
  concurrentRatio: number;
  bulkRatioRuns: number[];
  concurrentRatioRuns: number[];
  /** Server CPU time per GB carried, over every timed run (steadier than MB/s on a shared machine). */
  serverCpuMsPerGB: Record<string, number>;
  serverCpuRatio: number;
}

export async function runOperatorBench(
  originPort: number,
  quick: boolean,
): Promise<OperatorBenchResult> {
  const reps = quick ? 1 : 7;
  const bulk = quick ? 128 * 1024 * 1024 : 512 * 1024 * 1024;
  const conc = quick ? 50 : 200;
  const tmp = mkdtempSync(join(tmpdir(), 'ladder-bench-store-'));
  const sides: Side[] = [];
  try {
    sides.push(await single());
    console.error('bench operator: making 1000 keys in a fresh store...');
    sides.push(await store(join(tmp, 'data'), 1000));
    const b: Record<string, number[]> = {};
    const c: Record<string, number[]> = {};
    const cpu: Record<string, { ticks: number; bytes: number }> = {};
    for (const s of sides) {
      await curlMbps(s.socks, originPort, 8 * 1024 * 1024); // warm up: JIT, and the hint for the key
      b[s.name] = [];
      c[s.name] = [];
      cpu[s.name] = { ticks: 0, bytes: 0 };
    }
    for (let r = 0; r < reps; r++)
      for (const s of sides) {
        const t0 = cpuTicks(s.server.pid);
        b[s.name]!.push(await curlMbps(s.socks, originPort, bulk));
        c[s.name]!.push(await concurrentMbps(s.socks, originPort, conc));
        cpu[s.name]!.ticks += cpuTicks(s.server.pid) - t0;
        cpu[s.name]!.bytes += bulk + conc * 1024 * 1024;
      }
    const tick = 1000 / TICKS;
    const serverCpuMsPerGB = Object.fromEntries(
      Object.entries(cpu).map(([k, v]) => [k, (v.ticks * tick) / (v.bytes / 1e9)]),
    );
    const med = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
    const bulkMBps = Object.fromEntries(Object.entries(b).map(([k, v]) => [k, med(v)]));
    const concurrentMBps = Object.fromEntries(Object.entries(c).map(([k, v]) => [k, med(v)]));
    const [a, z] = sides.map((s) => s.name) as [string, string];
    // Paired: each round's store figure against the single-key figure of the same round, so that
    // the machine's slow swings (other work) cancel out; then the median of those ratios.
    const round3 = (x: number): number => Math.round(x * 1000) / 1000;
    const bulkRatioRuns = b[z]!.map((x, i) => round3(x / b[a]![i]!));
    const concurrentRatioRuns = c[z]!.map((x, i) => round3(x / c[a]![i]!));
    return {
      bulkMBps,
      concurrentMBps,
      bulkRatio: med(bulkRatioRuns),
      concurrentRatio: med(concurrentRatioRuns),
      bulkRatioRuns,
      concurrentRatioRuns,
      serverCpuMsPerGB,
      serverCpuRatio: serverCpuMsPerGB[z]! / serverCpuMsPerGB[a]!,
    };
  } finally {
    for (const s of sides) for (const p of s.peers) await p.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

export function printOperatorBench(r: OperatorBenchResult): void {
  console.log(
    '\nKeys and accounting (issue #5 target: 1,000 keys with accounting within 5% of one key without)',
  );
  for (const name of Object.keys(r.bulkMBps))
    console.log(
      `  ${name.padEnd(46)} bulk ${r.bulkMBps[name]!.toFixed(0).padStart(5)} MB/s   200x1MiB ${r.concurrentMBps[name]!.toFixed(0).padStart(5)} MB/s   server CPU ${r.serverCpuMsPerGB[name]!.toFixed(0).padStart(5)} ms/GB`,
    );
  console.log(
    `  ratio store/single (median of per-round ratios): bulk ${r.bulkRatio.toFixed(3)} (${r.bulkRatioRuns.join(', ')}), concurrency ${r.concurrentRatio.toFixed(3)} (${r.concurrentRatioRuns.join(', ')}), server CPU per byte ${r.serverCpuRatio.toFixed(3)}`,
  );
}
