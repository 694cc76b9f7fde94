/**
 * `node dist/bench/chrome-tls-trojan.js [--mib=256] [--rounds=3]`: the CPU a `ladder client` spends
 * per MB of a bulk download through Trojan over TLS, fp=chrome against fp=node. Each fp has its own
 * `ladder server` and `ladder client` processes (bench/tls-setups.ts); curl downloads from a local
 * origin through the client's SOCKS port, one fp after the other, the order alternating by round.
 * The figure is the client process's own CPU time (utime + stime from /proc) per MB: on a loaded
 * machine it is steadier than throughput, which is shown beside it. With LADDER_NODE_ARGS (say
 * `--cpu-prof --cpu-prof-dir=DIR`) every Ladder process gets those Node flags. Never run as a test.
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { removeCert, setupLadderTrojan, type TlsSetup } from './tls-setups.js';
import { startProcess } from '../test/helpers/peers.js';

const arg = (k: string, d: number): number =>
  Number(process.argv.find((a) => a.startsWith(`--${k}=`))?.slice(k.length + 3) ?? d);
const MIB = arg('mib', 256);
const ROUNDS = arg('rounds', 3);
const MB = 1e6;
const TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** utime + stime of a process, in ms. */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / TICKS;
}

/** curl through the SOCKS port: MB/s as curl measured it. */
function download(socks: number, origin: number, bytes: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const c = spawn(
      'curl',
      [
        '-sS',
        '-o',
        '/dev/null',
        '--max-time',
        '300',
        '-w',
        '%{speed_download} %{size_download}',
        '--socks5-hostname',
        `127.0.0.1:${socks}`,
        `http://127.0.0.1:${origin}/bytes/${bytes}`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (err += d));
    c.on('close', (code) => {
      const [speed, size] = out.trim().split(' ').map(Number);
      if (code !== 0 || size !== bytes) reject(new Error(`curl failed (${code}): ${err} ${out}`));
      else resolve(speed! / MB);
    });
  });
}

const origin = await startProcess(
  [process.execPath, new URL('./origin-process.js', import.meta.url).pathname],
  /origin listening on/,
);
const originPort = Number(/origin listening on (\d+)/.exec(origin.output())![1]);
const setups: Record<'chrome' | 'node', TlsSetup | null> = { chrome: null, node: null };
try {
  for (const fp of ['chrome', 'node'] as const) {
    const s = await setupLadderTrojan({ fp });
    setups[fp] = s;
    await download(s.socksPort, originPort, 8 << 20); // warm-up: JIT, first handshake
  }
  console.log(
    `load average at start: ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  );
  console.log('round | fp     | client CPU ms/MB | MB/s');
  const perMb: Record<string, number[]> = { chrome: [], node: [] };
  for (let r = 1; r <= ROUNDS; r++) {
    const order = r % 2 ? (['chrome', 'node'] as const) : (['node', 'chrome'] as const);
    for (const fp of order) {
      const s = setups[fp]!;
      const c0 = cpuMs(s.client.pid);
      const mbps = await download(s.socksPort, originPort, MIB << 20);
      const ms = (cpuMs(s.client.pid) - c0) / ((MIB << 20) / MB);
      perMb[fp]!.push(ms);
      console.log(
        `${r}     | ${fp.padEnd(6)} | ${ms.toFixed(2).padStart(16)} | ${mbps.toFixed(0)}`,
      );
    }
  }
  const ratios = perMb.chrome!.map((c, i) => (c / perMb.node![i]!).toFixed(2));
  console.log(`client CPU per MB, chrome/node by round: ${ratios.join(', ')}`);
  console.log(
    `load average at end: ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  );
} finally {
  for (const s of Object.values(setups)) await s?.stop();
  await origin.stop();
  removeCert();
}
