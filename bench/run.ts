/**
 * `npm run bench [-- --quick] [--conc=N] [--only=ladder,libev,floor,direct,tls,operator,tun] [--setups=<name part>,...]`:
 * (`npm run bench -- --path <profile>` runs the path benchmark instead: bench/path.ts)
 * Ladder against shadowsocks-libev with
 * the same cipher, Ladder's TLS transports against trojan-gfw and v2ray (trojan, vless over TLS:
 * tls-setups.ts), and no proxy, in one run on loopback. Never run as a test.
 *
 *   bulk:        a 1 GiB download through SOCKS5 with curl (MB/s), with the CPU% of each process
 *   latency:     200 sequential fresh requests of a small page (mean and p99 ms), after a warm-up of
 *                3000 requests that lets V8 finish optimizing the per-request path; "cold" is the
 *                mean of the first 200 requests after the setup started, before that warm-up
 *   concurrency: 200 connections at once, 1 MiB each (aggregate MB/s), with the peak RSS of server and
 *                client, and their peak anonymous (private) memory
 * Each phase runs 3 times per setup, in rounds across all setups, and the median is reported (once
 * with --quick, which also shrinks the sizes and counts). docs/benchmarks.md says what every figure means.
 *
 * Prints a table with Ladder / ss-libev ratios and writes bench/results.json. Every load is bounded in
 * count and time, and every process started is stopped by its PID.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { cpus, loadavg, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { SsMethod } from '../src/crypto/methods.js';
import { configureNativeAead, nativeAead } from '../src/crypto/native-aead.js';
import {
  freePort,
  hasCommand,
  startLibev,
  startProcess,
  type Peer,
} from '../test/helpers/peers.js';
import { fetchOnce } from './socks-load.js';
import { setupFloor, setupLadderSs } from './ss-setups.js';
import {
  missingForTls,
  removeCert,
  setupLadderTrojan,
  setupLadderWs,
  setupLibevV2rayPlugin,
  setupTlsFloor,
  setupTrojanGfw,
  setupV2ray,
  v2rayPluginBinary,
} from './tls-setups.js';
import { pathOptions, runPathBench } from './path.js';
import { runTunBench } from './tun.js';
import { printOperatorBench, runOperatorBench, type OperatorBenchResult } from './operator.js';

// LADDER_NO_NATIVE=1 measures the node:crypto fallback in this process (the CLI children read it too)
if (process.env.LADDER_NO_NATIVE === '1') configureNativeAead({ enabled: false });
const quick = process.argv.includes('--quick');
const onlyArg = process.argv.find((a) => a.startsWith('--only='))?.slice(7);
const only = onlyArg ? new Set(onlyArg.split(',')) : null;
const BULK_BYTES = quick ? 128 * 1024 * 1024 : 1024 * 1024 * 1024;
const REPS = quick ? 1 : 3;
const SEQ = quick ? 50 : 200;
/**
 * Requests (4 in flight) that warm every setup before anything is timed. V8 optimizes a function
 * called once per request only after a thousand or more calls: with --trace-opt, a Ladder Trojan
 * client and server still compiled ~75 functions in the 1000 requests after the first 300, ~40 after
 * 2000 and under 25 after 3000 (docs/benchmarks.md, session 5). A server that has run for a minute is
 * past that; the cold figure says what the first requests cost.
 */
const WARM_REQUESTS = quick ? 300 : 3000;
/** `--conc=N`: concurrent connections of the concurrency phase (the RSS figure is at 200). */
const concArg = process.argv.find((a) => a.startsWith('--conc='))?.slice(7);
const CONC = concArg ? Number(concArg) : quick ? 50 : 200;
const CONC_BYTES = 1024 * 1024;
const MB = 1e6;

interface Setup {
  name: string;
  kind: 'direct' | 'ladder' | 'libev' | 'floor' | 'ladder-tls' | 'peer-tls' | 'floor-tls';
  method?: SsMethod;
  socksPort: number | null;
  server?: Peer;
  client?: Peer;
  stop(): Promise<void>;
}

function procStat(pid: number): { cpuTicks: number; rssHwmKb: number } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const cpuTicks = Number(fields[11]) + Number(fields[12]); // utime + stime
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const hwm = /VmHWM:\s+(\d+)/.exec(status);
    return { cpuTicks, rssHwmKb: hwm ? Number(hwm[1]) : 0 };
  } catch {
    return null;
  }
}

/**
 * Anonymous memory (kB) of a process from `/proc/<pid>/smaps_rollup`: the pages that are its own,
 * not the file-backed pages of its executable and libraries, which RSS counts too and which the
 * page cache shares with every process that maps the same file. 0 when it cannot be read.
 */
function anonKb(pid: number): number {
  try {
    const m = /^Anonymous:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

const TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/**
 * Samples the CPU ticks of a set of pids every 50 ms while `work` runs; returns CPU% per name (100 =
 * one core). Each rate is taken over that process's own sampled window, because a short-lived
 * process (curl) is reaped before a final sample can read it; a process never sampled twice is NaN.
 */
async function withCpu<T>(
  pids: Record<string, number>,
  work: () => Promise<T>,
): Promise<[T, Record<string, number>]> {
  const first: Record<string, { ticks: number; at: number }> = {};
  const last: Record<string, { ticks: number; at: number }> = {};
  const sample = (): void => {
    const at = performance.now();
    for (const [n, pid] of Object.entries(pids)) {
      const s = procStat(pid);
      if (!s) continue;
      first[n] ??= { ticks: s.cpuTicks, at };
      last[n] = { ticks: s.cpuTicks, at };
    }
  };
  sample();
  const timer = setInterval(sample, 50);
  try {
    const r = await work();
    sample();
    const out: Record<string, number> = {};
    for (const n of Object.keys(pids)) {
      const a = first[n];
      const b = last[n];
      out[n] =
        a && b && b.at > a.at
          ? Math.round(((b.ticks - a.ticks) / TICKS / ((b.at - a.at) / 1000)) * 100)
          : NaN;
    }
    return [r, out];
  } finally {
    clearInterval(timer);
  }
}

/** curl through SOCKS5 (or direct), its own pid sampled too. */
function curlDownload(
  socksPort: number | null,
  originPort: number,
  bytes: number,
  pids: Record<string, number>,
): Promise<{ mbps: number; cpu: Record<string, number> }> {
  const args = [
    '-sS',
    '-o',
    '/dev/null',
    '--max-time',
    '120',
    '-w',
    '%{speed_download} %{size_download}',
  ];
  if (socksPort !== null) args.push('--socks5-hostname', `127.0.0.1:${socksPort}`);
  args.push(`http://127.0.0.1:${originPort}/bytes/${bytes}`);
  return new Promise((resolve, reject) => {
    const c = spawn('curl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (err += d));
    void withCpu(
      { ...pids, curl: c.pid! },
      () => new Promise<number | null>((r) => c.on('close', r)),
    ).then(([code, cpu]) => {
      const [speed, size] = out.trim().split(' ').map(Number);
      if (code !== 0 || size !== bytes) reject(new Error(`curl failed (${code}): ${err} ${out}`));
      else resolve({ mbps: speed! / MB, cpu });
    });
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}
function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

async function setupLibev(method: SsMethod): Promise<Setup> {
  const sp = await freePort();
  const lp = await freePort();
  const base = {
    server: '127.0.0.1',
    server_port: sp,
    password: 'ladder-bench-password-1',
    method,
    timeout: 60,
    mode: 'tcp_only',
    no_delay: true,
  };
  const server = await startLibev('ss-server', base);
  let client: Peer;
  try {
    client = await startLibev('ss-local', { ...base, local_address: '127.0.0.1', local_port: lp });
  } catch (err) {
    await server.stop();
    throw err;
  }
  return {
    name: `ss-libev ${method}`,
    kind: 'libev',
    method,
    socksPort: lp,
    server,
    client,
    stop: async () => void (await Promise.all([client.stop(), server.stop()])),
  };
}

interface Result {
  name: string;
  kind: string;
  method?: string;
  bulkMBps: number;
  bulkRuns: number[];
  cpu: Record<string, number>;
  latencyMeanMs: number;
  latencyMeanRuns: number[];
  /** The first SEQ requests after start, before the warm-up (one run, not a median). */
  coldLatencyMeanMs: number;
  latencyP99Ms: number;
  concurrentMBps: number;
  concurrentRuns: number[];
  serverRssPeakMiB?: number;
  clientRssPeakMiB?: number;
  /** Peak anonymous memory during the concurrency phase (sampled every 50 ms), highest of the rounds. */
  serverAnonPeakMiB?: number;
  clientAnonPeakMiB?: number;
  rssPeakScope?: 'concurrency phase' | 'whole run';
}

/** What one round measures for one setup. */
interface Round {
  bulkMBps: number;
  cpu: Record<string, number>;
  latency: number[];
  concurrentMBps: number;
  serverRssKb?: number;
  clientRssKb?: number;
  serverAnonKb?: number;
  clientAnonKb?: number;
  rssReset: boolean;
}

function pidsOf(s: Setup, originPid: number): Record<string, number> {
  const pids: Record<string, number> = { origin: originPid };
  if (s.server) pids.server = s.server.pid;
  if (s.client) pids.client = s.client.pid;
  return pids;
}

/**
 * The same warm-up for every setup, so that JIT and connection paths settle before anything is
 * timed. Returns the cold latency: the mean of the first SEQ sequential requests after start.
 */
async function warmUp(s: Setup, originPort: number, originPid: number): Promise<number> {
  const deadline = Date.now() + 120_000;
  const cold: number[] = [];
  for (let i = 0; i < SEQ && Date.now() < deadline; i++)
    cold.push((await fetchOnce(s.socksPort, originPort, '/hello'))[0]);
  await curlDownload(s.socksPort, originPort, 64 * 1024 * 1024, pidsOf(s, originPid));
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < WARM_REQUESTS && Date.now() < deadline) {
      next++;
      await fetchOnce(s.socksPort, originPort, '/hello');
    }
  };
  await Promise.all([lane(), lane(), lane(), lane()]);
  return cold.reduce((a, b) => a + b, 0) / cold.length;
}

/** One round of all three phases (bulk, latency, concurrency) against one setup. */
async function measureRound(s: Setup, originPort: number, originPid: number): Promise<Round> {
  const bulk = await curlDownload(s.socksPort, originPort, BULK_BYTES, pidsOf(s, originPid));

  // Sequential fresh connections, bounded in time as well as count.
  const latency: number[] = [];
  const deadline = Date.now() + 60_000;
  for (let i = 0; i < SEQ && Date.now() < deadline; i++)
    latency.push((await fetchOnce(s.socksPort, originPort, '/hello'))[0]);

  // Reset the peak-RSS counters (Linux: "5" > clear_refs) so VmHWM is the concurrency phase's peak,
  // not the bulk phase's; if that is refused, the figure is the peak so far, and the JSON says so.
  const rssReset = [s.server?.pid, s.client?.pid]
    .filter((p): p is number => p !== undefined)
    .every((pid) => {
      try {
        writeFileSync(`/proc/${pid}/clear_refs`, '5');
        return true;
      } catch {
        return false;
      }
    });
  // Anonymous memory has no kernel high-water mark: sample it while the transfers run.
  const anonPeak = { server: 0, client: 0 };
  const sampleAnon = (): void => {
    if (s.server) anonPeak.server = Math.max(anonPeak.server, anonKb(s.server.pid));
    if (s.client) anonPeak.client = Math.max(anonPeak.client, anonKb(s.client.pid));
  };
  const anonTimer = setInterval(sampleAnon, 50);
  const t0 = performance.now();
  let sizes: number[];
  try {
    sizes = await Promise.all(
      Array.from({ length: CONC }, () =>
        fetchOnce(s.socksPort, originPort, `/bytes/${CONC_BYTES}`, 120_000).then((r) => r[1]),
      ),
    );
  } finally {
    clearInterval(anonTimer);
  }
  const secs = (performance.now() - t0) / 1000;
  sampleAnon();
  if (sizes.some((n) => n < CONC_BYTES))
    throw new Error(`${s.name}: a concurrent transfer came back short`);
  const round: Round = {
    bulkMBps: bulk.mbps,
    cpu: bulk.cpu,
    latency,
    concurrentMBps: sizes.reduce((a, b) => a + b, 0) / MB / secs,
    rssReset,
  };
  if (s.server) round.serverRssKb = procStat(s.server.pid)?.rssHwmKb ?? 0;
  if (s.client) round.clientRssKb = procStat(s.client.pid)?.rssHwmKb ?? 0;
  if (s.server) round.serverAnonKb = anonPeak.server;
  if (s.client) round.clientAnonKb = anonPeak.client;
  return round;
}

/** Medians over the rounds (CPU from the bulk run whose speed is the median; RSS the highest peak). */
function summarize(s: Setup, rounds: Round[], coldLatencyMs: number): Result {
  const bulkRuns = rounds.map((r) => r.bulkMBps);
  const latMeans = rounds.map((r) => r.latency.reduce((a, b) => a + b, 0) / r.latency.length);
  const concRuns = rounds.map((r) => r.concurrentMBps);
  const mib = (kb: number): number => Math.round(kb / 1024);
  return {
    name: s.name,
    kind: s.kind,
    ...(s.method ? { method: s.method } : {}),
    bulkMBps: median(bulkRuns),
    bulkRuns: bulkRuns.map((r) => Math.round(r)),
    cpu: rounds.find((r) => r.bulkMBps === median(bulkRuns))!.cpu,
    latencyMeanMs: median(latMeans),
    latencyMeanRuns: latMeans.map((x) => Math.round(x * 100) / 100),
    coldLatencyMeanMs: Math.round(coldLatencyMs * 100) / 100,
    latencyP99Ms: percentile(
      rounds.flatMap((r) => r.latency),
      99,
    ),
    concurrentMBps: median(concRuns),
    concurrentRuns: concRuns.map((x) => Math.round(x)),
    ...(s.server
      ? {
          serverRssPeakMiB: mib(Math.max(...rounds.map((r) => r.serverRssKb ?? 0))),
          serverAnonPeakMiB: mib(Math.max(...rounds.map((r) => r.serverAnonKb ?? 0))),
          rssPeakScope: rounds.every((r) => r.rssReset) ? 'concurrency phase' : 'whole run',
        }
      : {}),
    ...(s.client
      ? {
          clientRssPeakMiB: mib(Math.max(...rounds.map((r) => r.clientRssKb ?? 0))),
          clientAnonPeakMiB: mib(Math.max(...rounds.map((r) => r.clientAnonKb ?? 0))),
        }
      : {}),
  };
}

async function main(): Promise<void> {
  // Full-device tunnels (bench/tun.ts) run in namespaces of their own, apart from the loopback setups.
  if (only?.has('tun')) {
    await runTunBench(quick);
    if (only.size === 1) return;
  }
  for (const c of ['curl', 'ss-server', 'ss-local']) {
    if (!hasCommand(c)) {
      console.error(`bench: '${c}' is missing: apt-get install -y shadowsocks-libev curl`);
      process.exit(2);
    }
  }
  const originScript = fileURLToPath(new URL('./origin-process.js', import.meta.url));
  const origin = await startProcess([process.execPath, originScript], /origin listening on (\d+)/);
  const originPort = Number(origin.match[1]);
  const plan: { name: string; make: () => Promise<Setup> }[] = [];
  const want = (k: string): boolean => !only || only.has(k);
  if (want('direct'))
    plan.push({
      name: 'direct (no proxy)',
      make: async () => ({
        name: 'direct (no proxy)',
        kind: 'direct',
        socksPort: null,
        stop: async () => {},
      }),
    });
  for (const m of ['aes-256-gcm', 'chacha20-ietf-poly1305'] as const) {
    if (want('libev')) plan.push({ name: `ss-libev ${m}`, make: () => setupLibev(m) });
    if (want('ladder')) plan.push({ name: `ladder ${m}`, make: () => setupLadderSs(m) });
  }
  if (want('floor')) plan.push({ name: 'node floor (no crypto)', make: setupFloor });
  if (want('ladder'))
    plan.push({
      name: 'ladder 2022-blake3-aes-256-gcm',
      make: () => setupLadderSs('2022-blake3-aes-256-gcm'),
    });
  // The TLS transports, against trojan-gfw (the yardstick) and v2ray.
  if (want('tls')) {
    const missing = missingForTls();
    if (missing) console.error(`bench: TLS setups skipped: ${missing}`);
    else
      plan.push(
        // What any Node TLS relay pays: the yardstick of the Ladder rows' memory beside trojan-gfw.
        { name: 'node tls floor', make: () => setupTlsFloor(true) },
        { name: 'node tls floor pipe', make: () => setupTlsFloor(false) },
        { name: 'trojan-gfw', make: () => setupTrojanGfw(originPort) },
        { name: 'ladder trojan/tls', make: () => setupLadderTrojan() },
        // The same with Node's TLS client (fp=node) beside the default fp=chrome client.
        { name: 'ladder trojan/tls fp=node', make: () => setupLadderTrojan({ fp: 'node' }) },
        { name: 'ladder trojan/tls mux', make: () => setupLadderTrojan({ mux: true }) },
        { name: 'ladder trojan/tls split', make: () => setupLadderTrojan({ split: true }) },
        { name: 'ladder ws/tls trojan', make: () => setupLadderTrojan({ ws: true }) },
        {
          name: 'ladder ws/tls trojan mux',
          make: () => setupLadderTrojan({ ws: true, mux: true }),
        },
        { name: 'ladder ws/tls ss', make: () => setupLadderWs(false) },
        { name: 'ladder ws/tls ss mux', make: () => setupLadderWs(true) },
        ...(v2rayPluginBinary()
          ? [
              { name: 'libev+v2ray-plugin ws/tls', make: () => setupLibevV2rayPlugin(false) },
              { name: 'libev+v2ray-plugin ws/tls mux', make: () => setupLibevV2rayPlugin(true) },
            ]
          : []),
        { name: 'v2ray trojan/tls', make: () => setupV2ray('trojan') },
        { name: 'v2ray vless/tls', make: () => setupV2ray('vless') },
      );
    if (!v2rayPluginBinary())
      console.error(
        'bench: libev+v2ray-plugin rows skipped: apt-get install -y shadowsocks-v2ray-plugin',
      );
  }
  // --setups=a,b: only the setups whose names contain one of these (e.g. --setups=trojan-gfw,trojan/tls).
  const setupsArg = process.argv.find((a) => a.startsWith('--setups='))?.slice(9);
  if (setupsArg) {
    const keep = setupsArg.split(',');
    plan.splice(0, plan.length, ...plan.filter((p) => keep.some((k) => p.name.includes(k))));
  }
  // Every setup is started first and then measured in rounds, one setup after another within each
  // round (A B C, A B C, ...), so that a burst of other load on the machine hits all of them rather
  // than skewing one setup's every run. Idle setups cost nothing meanwhile. A setup that fails is
  // reported and dropped; the others go on.
  const failures: { name: string; error: string }[] = [];
  const fail = (name: string, err: unknown): void => {
    const error = (err as Error).message.split('\n').slice(0, 6).join('\n');
    failures.push({ name, error });
    process.stderr.write(`bench: ${name} FAILED: ${error}\n`);
  };
  const live: { setup: Setup; rounds: Round[]; coldLatencyMs?: number }[] = [];
  const results: Result[] = [];
  let operator: OperatorBenchResult | undefined;
  try {
    for (const step of plan) {
      process.stderr.write(`bench: starting ${step.name}\n`);
      try {
        live.push({ setup: await step.make(), rounds: [] });
      } catch (err) {
        fail(step.name, err);
      }
    }
    for (const l of [...live]) {
      try {
        l.coldLatencyMs = await warmUp(l.setup, originPort, origin.pid);
      } catch (err) {
        fail(l.setup.name, err);
        live.splice(live.indexOf(l), 1);
        await l.setup.stop();
      }
    }
    for (let rep = 0; rep < REPS; rep++) {
      for (const l of [...live]) {
        process.stderr.write(`bench: round ${rep + 1}/${REPS} ${l.setup.name}\n`);
        try {
          l.rounds.push(await measureRound(l.setup, originPort, origin.pid));
        } catch (err) {
          fail(l.setup.name, err);
          live.splice(live.indexOf(l), 1);
          await l.setup.stop();
        }
      }
    }
    for (const l of live) results.push(summarize(l.setup, l.rounds, l.coldLatencyMs ?? NaN));
    await Promise.all(live.map((l) => l.setup.stop()));
    if (want('operator')) {
      process.stderr.write('bench: keys and accounting (operator)\n');
      try {
        operator = await runOperatorBench(originPort, quick);
      } catch (err) {
        fail('operator', err);
      }
    }
  } finally {
    await Promise.all(live.map((l) => l.setup.stop()));
    await origin.stop();
    removeCert();
  }
  print(results);
  if (operator) printOperatorBench(operator);
  const libevVersion =
    spawnSync('ss-server', ['-h'], { encoding: 'utf8' }).stdout.match(
      /shadowsocks-libev ([\d.]+)/,
    )?.[1] ?? 'unknown';
  const file = fileURLToPath(new URL('../../bench/results.json', import.meta.url));
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(
    file,
    JSON.stringify(
      {
        date: new Date().toISOString(),
        quick,
        node: process.version,
        libev: libevVersion,
        // The Ladder processes load the same build as this one, so this is what they used too.
        ladderAead: nativeAead() ? 'native addon' : 'node:crypto fallback',
        machine: {
          cpus: cpus().length,
          model: cpus()[0]?.model,
          memGiB: Math.round(totalmem() / 2 ** 30),
          // Other work on the machine skews every figure; this is the 1-minute load when the run ended.
          loadAvg1m: Math.round(loadavg()[0]! * 100) / 100,
        },
        parameters: {
          bulkBytes: BULK_BYTES,
          reps: REPS,
          sequential: SEQ,
          concurrent: CONC,
          concurrentBytes: CONC_BYTES,
        },
        results,
        ...(operator ? { operator } : {}),
        failures,
        ratios: ratios(results),
        tlsRatios: tlsRatios(results),
        memoryRatios: memoryRatios(results),
      },
      null,
      2,
    ) + '\n',
  );
  console.log(`\nwrote ${file}`);
  if (failures.length > 0) {
    console.log(`\n${failures.length} setup(s) failed: ${failures.map((f) => f.name).join(', ')}`);
    process.exitCode = 1;
  }
}

interface Ratio {
  vs: string;
  bulk: number;
  latencyMean: number;
  coldLatencyMean: number;
  concurrent: number;
}

/** Ladder / ss-libev with the same cipher; the 2022 method (which libev 3.3.5 lacks) against aes-256-gcm. */
function ratios(results: Result[]): Record<string, Ratio> {
  const out: Record<string, Ratio> = {};
  for (const l of results.filter((r) => r.kind === 'ladder' || r.kind === 'floor')) {
    const base =
      results.find((r) => r.kind === 'libev' && r.method === l.method) ??
      (l.kind === 'floor' || l.method?.startsWith('2022')
        ? results.find((r) => r.kind === 'libev' && r.method === 'aes-256-gcm')
        : undefined);
    if (!base) continue;
    out[l.name] = {
      vs: base.name,
      bulk: round2(l.bulkMBps / base.bulkMBps),
      latencyMean: round2(l.latencyMeanMs / base.latencyMeanMs),
      coldLatencyMean: round2(l.coldLatencyMeanMs / base.coldLatencyMeanMs),
      concurrent: round2(l.concurrentMBps / base.concurrentMBps),
    };
  }
  return out;
}
const round2 = (x: number): number => Math.round(x * 100) / 100;

/** Every TLS setup / trojan-gfw (issue #4's targets: bulk ≥ 1.0, latency ≤ 1.1). */
function tlsRatios(results: Result[]): Record<string, Ratio> {
  const out: Record<string, Ratio> = {};
  const base = results.find((r) => r.name === 'trojan-gfw');
  if (!base) return out;
  for (const r of results.filter((x) => x.kind.endsWith('-tls') && x !== base))
    out[r.name] = {
      vs: base.name,
      bulk: round2(r.bulkMBps / base.bulkMBps),
      latencyMean: round2(r.latencyMeanMs / base.latencyMeanMs),
      coldLatencyMean: round2(r.coldLatencyMeanMs / base.coldLatencyMeanMs),
      concurrent: round2(r.concurrentMBps / base.concurrentMBps),
    };
  return out;
}

interface MemoryRatio {
  rssVsTrojanGfw?: number;
  anonVsTrojanGfw?: number;
  rssVsTlsFloor?: number;
  anonVsTlsFloor?: number;
}

/** Every TLS setup's server memory / trojan-gfw's and / the node TLS floor's (issue #18 item 4). */
function memoryRatios(results: Result[]): Record<string, MemoryRatio> {
  const out: Record<string, MemoryRatio> = {};
  const gfw = results.find((r) => r.name === 'trojan-gfw');
  const floor = results.find((r) => r.name === 'node tls floor');
  const ratio = (a?: number, b?: number): number | undefined =>
    a !== undefined && b ? round2(a / b) : undefined;
  for (const r of results.filter((x) => x.kind.endsWith('-tls'))) {
    const m: MemoryRatio = {};
    if (gfw && r !== gfw) {
      m.rssVsTrojanGfw = ratio(r.serverRssPeakMiB, gfw.serverRssPeakMiB);
      m.anonVsTrojanGfw = ratio(r.serverAnonPeakMiB, gfw.serverAnonPeakMiB);
    }
    if (floor && r !== floor) {
      m.rssVsTlsFloor = ratio(r.serverRssPeakMiB, floor.serverRssPeakMiB);
      m.anonVsTlsFloor = ratio(r.serverAnonPeakMiB, floor.serverAnonPeakMiB);
    }
    if (Object.keys(m).length > 0) out[r.name] = m;
  }
  return out;
}

function print(results: Result[]): void {
  const pad = (s: string, n: number): string => s.padEnd(n);
  const num = (x: number | undefined, d = 0): string =>
    x === undefined || Number.isNaN(x) ? '-' : x.toFixed(d);
  console.log(
    `\nLadder benchmark (${quick ? 'quick' : 'full'}): bulk ${BULK_BYTES / 2 ** 20} MiB x${REPS} (median), ${SEQ} sequential requests, ${CONC} x 1 MiB concurrent\n`,
  );
  console.log(
    [
      pad('setup', 34),
      pad('bulk MB/s', 10),
      pad('cpu% srv/cli/curl/origin', 26),
      pad('lat mean', 9),
      pad('lat p99', 8),
      pad('cold', 6),
      pad('conc MB/s', 10),
      pad('RSS srv/cli MiB', 16),
      pad('anon srv/cli MiB', 16),
    ].join(' '),
  );
  for (const r of results) {
    const c = r.cpu;
    console.log(
      [
        pad(r.name, 34),
        pad(num(r.bulkMBps), 10),
        pad(`${num(c.server)}/${num(c.client)}/${num(c.curl)}/${num(c.origin)}`, 26),
        pad(num(r.latencyMeanMs, 2), 9),
        pad(num(r.latencyP99Ms, 2), 8),
        pad(num(r.coldLatencyMeanMs, 2), 6),
        pad(num(r.concurrentMBps), 10),
        pad(`${num(r.serverRssPeakMiB)}/${num(r.clientRssPeakMiB)}`, 16),
        pad(`${num(r.serverAnonPeakMiB)}/${num(r.clientAnonPeakMiB)}`, 16),
      ].join(' '),
    );
  }
  const ts = tlsRatios(results);
  if (Object.keys(ts).length > 0) {
    console.log(
      '\n/ trojan-gfw: bulk (≥1.0 is the target), latency (≤1.1 is the target), concurrency (≥1.0); cold latency',
    );
    for (const [name, r] of Object.entries(ts))
      console.log(
        `  ${pad(name, 32)} bulk ${r.bulk}x   latency ${r.latencyMean}x   concurrency ${r.concurrent}x   cold ${r.coldLatencyMean}x`,
      );
  }
  const ms = memoryRatios(results);
  if (Object.keys(ms).length > 0) {
    console.log(
      '\nserver memory at the concurrency phase: peak RSS and peak anonymous memory, / trojan-gfw (RSS ≤1.5 is the target) and / node tls floor',
    );
    for (const [name, r] of Object.entries(ms))
      console.log(
        `  ${pad(name, 32)} / trojan-gfw: RSS ${num(r.rssVsTrojanGfw, 2)}x anon ${num(r.anonVsTrojanGfw, 2)}x   / node tls floor: RSS ${num(r.rssVsTlsFloor, 2)}x anon ${num(r.anonVsTlsFloor, 2)}x`,
      );
  }
  const rs = ratios(results);
  if (Object.keys(rs).length > 0) {
    console.log(
      '\nLadder / ss-libev (same cipher; 2022 and the node floor against aes-256-gcm): bulk (≥1.0 is better), latency (≤1.1 is the target), concurrency (≥1.0); cold latency',
    );
    for (const [name, r] of Object.entries(rs))
      console.log(
        `  ${pad(name, 32)} bulk ${r.bulk}x   latency ${r.latencyMean}x   concurrency ${r.concurrent}x   cold ${r.coldLatencyMean}x   (vs ${r.vs})`,
      );
  }
}

// --path <profile>: the user-level benchmark through the lab's path emulator (bench/path.ts)
const pathBench = pathOptions();
if (pathBench) process.exitCode = await runPathBench(pathBench);
else await main();
