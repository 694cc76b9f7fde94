/**
 * A hand tool, not part of `npm run bench`: where one proxied request's time goes. For each setup
 * (the node floor, the Shadowsocks rows of ss-setups.ts and the TLS rows of tls-setups.ts, chosen
 * with --setups=<name part>,...), N requests one after
 * another, each on a fresh connection, with every step timed by a minimal SOCKS5 client:
 *
 *   connect   TCP connect to the SOCKS port
 *   greeting  greeting sent -> method reply
 *   connect   CONNECT sent -> reply (a client that opens its tunnel first spends its handshake here)
 *   first     GET sent -> first byte of the response (one that answers CONNECT at once spends it here)
 *   rest      first byte -> whole response
 *   total     connect() -> whole response
 *
 * Setups take turns in rounds of 20 requests (A B A B ...), so that other load on the machine falls
 * on all of them; medians per phase are printed, and the total's mean. With --profile-dir=DIR the
 * Ladder processes run with --cpu-prof and write their profiles there when stopped.
 * Heavy: run it under `flock /work/heavy.lock` on a shared machine.
 *
 *   node dist/bench/latency-phases.js [--n=200] [--warm=20] [--setups=trojan-gfw,trojan/tls] [--profile-dir=DIR] [--gap-ms=0] [--slowest]
 *
 * Each row ends with the CPU time of the setup's server and client per timed request (all their
 * threads, from /proc/<pid>/stat): on a loaded machine a steadier figure than the wall time.
 * --slowest also prints the phases of each setup's five slowest requests.
 */
import { connect } from 'node:net';
import { mkdirSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startProcess } from '../test/helpers/peers.js';
import {
  removeCert,
  setupLadderTrojan,
  setupLadderWs,
  setupTrojanGfw,
  setupV2ray,
  type TlsSetup,
} from './tls-setups.js';
import { setupFloor, setupLadderSs } from './ss-setups.js';

const arg = (name: string): string | undefined =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const N = Number(arg('n') ?? 200);
const ROUND = 20;
const PHASES = ['connect', 'greeting', 'connectReply', 'first', 'rest', 'total'] as const;
type Phase = (typeof PHASES)[number];

/** One request through SOCKS5 with its phases timed (ms). */
function phases(socksPort: number, originPort: number): Promise<Record<Phase, number>> {
  return new Promise((resolve, reject) => {
    const t: number[] = [performance.now()];
    const s = connect(socksPort, '127.0.0.1');
    s.setNoDelay(true);
    let stage = 0;
    let pending = Buffer.alloc(0);
    let head: Buffer | null = Buffer.alloc(0);
    let expected = Infinity;
    let seen = 0;
    const timer = setTimeout(() => s.destroy(new Error('request timed out')), 30_000);
    s.on('connect', () => {
      t.push(performance.now());
      s.write(Buffer.from([5, 1, 0]));
    });
    s.on('data', (d: Buffer) => {
      if (stage < 2) {
        pending = Buffer.concat([pending, d]);
        if (stage === 0 && pending.length >= 2) {
          t.push(performance.now());
          pending = pending.subarray(2);
          stage = 1;
          s.write(Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, originPort >> 8, originPort & 0xff]));
        }
        if (stage === 1 && pending.length >= 10) {
          if (pending[1] !== 0) return void s.destroy(new Error(`SOCKS5 reply ${pending[1]}`));
          t.push(performance.now());
          stage = 2;
          s.write(`GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
        }
        return;
      }
      if (seen === 0) t.push(performance.now());
      seen += d.length;
      if (head !== null) {
        head = Buffer.concat([head, d]);
        const end = head.indexOf('\r\n\r\n');
        if (end >= 0) {
          const m = /\r\ncontent-length:\s*(\d+)/i.exec(head.subarray(0, end).toString('latin1'));
          expected = end + 4 + (m ? Number(m[1]) : 0);
          head = null;
        }
      }
      if (seen >= expected) {
        t.push(performance.now());
        clearTimeout(timer);
        s.destroy();
        const d2 = (i: number): number => t[i + 1]! - t[i]!;
        resolve({
          connect: d2(0),
          greeting: d2(1),
          connectReply: d2(2),
          first: d2(3),
          rest: d2(4),
          total: t[5]! - t[0]!,
        });
      }
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** --warm=<n>: untimed requests per setup first (JIT and the kernel's paths; the bench uses 3000). */
const WARM = Number(arg('warm') ?? 20);

/** Clock ticks per second of /proc/<pid>/stat's utime and stime. */
const TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** CPU time a process has used, every thread, in clock ticks. */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/** --gap-ms=<ms>: a pause after each request, so that none meets the last one's teardown. */
const GAP_MS = Number(arg('gap-ms') ?? 0);
async function gap<T>(x: T): Promise<T> {
  if (GAP_MS > 0) await new Promise((r) => setTimeout(r, GAP_MS));
  return x;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

async function main(): Promise<void> {
  const originScript = fileURLToPath(new URL('./origin-process.js', import.meta.url));
  const origin = await startProcess([process.execPath, originScript], /origin listening on (\d+)/);
  const originPort = Number(origin.match[1]);
  const profileDir = arg('profile-dir');
  if (profileDir) {
    mkdirSync(profileDir, { recursive: true });
    // Node flags for the Ladder processes started from here on (test/helpers/peers.ts).
    process.env.LADDER_NODE_ARGS = `--cpu-prof --cpu-prof-dir=${profileDir}`;
  }
  type Setup = Pick<TlsSetup, 'name' | 'socksPort' | 'stop' | 'server' | 'client'>;
  const all: [string, () => Promise<Setup>][] = [
    ['node floor', () => setupFloor()],
    ['ladder aes-256-gcm', () => setupLadderSs('aes-256-gcm')],
    ['ladder chacha20-ietf-poly1305', () => setupLadderSs('chacha20-ietf-poly1305')],
    ['ladder 2022-blake3-aes-256-gcm', () => setupLadderSs('2022-blake3-aes-256-gcm')],
    ['trojan-gfw', () => setupTrojanGfw(originPort)],
    ['ladder trojan/tls', () => setupLadderTrojan()],
    ['ladder trojan/tls fp=node', () => setupLadderTrojan({ fp: 'node' })],
    ['ladder trojan/tls mux', () => setupLadderTrojan({ mux: true })],
    ['ladder ws/tls trojan', () => setupLadderTrojan({ ws: true })],
    ['ladder ws/tls ss', () => setupLadderWs(false)],
    ['ladder ws/tls ss mux', () => setupLadderWs(true)],
    ['v2ray trojan/tls', () => setupV2ray('trojan')],
  ];
  const want = (arg('setups') ?? 'trojan-gfw,ladder trojan/tls').split(',');
  const setups: Setup[] = [];
  try {
    for (const [name, make] of all)
      if (want.some((w) => name.includes(w))) setups.push(await make());
    const got = new Map<string, Record<Phase, number>[]>(setups.map((s) => [s.name, []]));
    // Warm-up: JIT and the kernel's connection paths, as the bench does.
    for (const s of setups) for (let i = 0; i < WARM; i++) await phases(s.socksPort, originPort);
    const cpu = new Map(setups.map((s) => [s.name, { server: 0, client: 0 }]));
    for (let done = 0; done < N; done += ROUND)
      for (const s of setups) {
        const before = [cpuTicks(s.server.pid), cpuTicks(s.client.pid)];
        for (let i = 0; i < Math.min(ROUND, N - done); i++)
          got.get(s.name)!.push(await gap(await phases(s.socksPort, originPort)));
        const c = cpu.get(s.name)!;
        c.server += cpuTicks(s.server.pid) - before[0]!;
        c.client += cpuTicks(s.client.pid) - before[1]!;
      }
    console.log(
      `medians of ${N} requests (ms); total: median / mean / p90 / max; cpu: server/client ms per request`,
    );
    console.log(['setup'.padEnd(32), ...PHASES.map((p) => p.padStart(13))].join(''));
    for (const [name, rows] of got) {
      const cols = PHASES.map((p) =>
        median(rows.map((r) => r[p]))
          .toFixed(2)
          .padStart(13),
      );
      const mean = rows.reduce((a, r) => a + r.total, 0) / rows.length;
      const totals = rows.map((r) => r.total).sort((a, b) => a - b);
      const p90 = totals[Math.min(totals.length - 1, Math.ceil(0.9 * totals.length) - 1)]!;
      const tail = [mean, p90, totals.at(-1)!].map((x) => x.toFixed(2)).join(' / ');
      const c = cpu.get(name)!;
      const perRequest = (ticks: number): string =>
        ((ticks * 1000) / TICKS / rows.length).toFixed(2);
      console.log(
        [
          name.padEnd(32),
          ...cols,
          ` / ${tail}`,
          `  cpu ${perRequest(c.server)}/${perRequest(c.client)}`,
        ].join(''),
      );
      // The slowest requests, phase by phase: where a tail comes from.
      if (process.argv.includes('--slowest'))
        for (const r of [...rows].sort((a, b) => b.total - a.total).slice(0, 5))
          console.log(
            ['  slow'.padEnd(32), ...PHASES.map((p) => r[p].toFixed(2).padStart(13))].join(''),
          );
    }
  } finally {
    await Promise.all(setups.map((s) => s.stop()));
    await origin.stop();
    removeCert();
  }
}

await main();
