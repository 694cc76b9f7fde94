/**
 * `npm run bench -- --path <profile>` (root): what a user feels on a long, lossy path. Builds a lab
 * (its own prefix), puts the wall's path emulator on the profile (src/lab/path.ts), starts every
 * setup's server in abroad and its client in the client namespace, and measures in rounds across
 * the setups (A B C, A B C, …), from bench/path-client.ts run in the client namespace:
 *
 *   ttfb   a fresh request's time to first byte (median of --ttfb-n per round, and the round's first
 *          request alone: the later ones may find a connection the client opened ahead)
 *   page   a page load to the last byte, HTTP and HTTPS origins (1 document + 30 resources, ≤ 6
 *          connections)
 *   bulk   a download of --bulk-mb MB, cut at --bulk-s seconds (Mbit/s)
 * and each setup's server RSS after the rounds. Medians over --reps rounds (3). Never run as a test.
 * `--cc <name>` sets the abroad namespace's default congestion control (a server whose system
 * default is, e.g., cubic) and `--ladder-cc <name>` passes `--tcp-congestion` to the Ladder servers.
 * `--trace` adds, per page load and download, the abroad namespace's TCP loss-recovery counters
 * (timeouts, tail-loss probes, fast retransmits: the senders of every download live there) and each
 * resource's connection and completion time, in the results file and one line per step.
 * Setups: ss-libev, the peers of bench/path-peers.ts and every Ladder transport.
 * Every process is stopped and the lab removed at the end, also on failure or a signal.
 */
import { writeFileSync } from 'node:fs';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadavg } from 'node:os';
import { caPath, destroyLab, labUp, startCensor } from '../src/lab/lab.js';
import { labUnavailable, namespacePids, planLab } from '../src/lab/topology.js';
import { PATH_PROFILES, pathProfile } from '../src/lab/path.js';
import {
  ladderBenchTransports,
  runIn,
  setLadderServerArgs,
  stopTransports,
  transports,
  type TransportEntry,
} from '../src/lab/card.js';
import { pathPeers, stopPeers } from './path-peers.js';
import type { LabPlan } from '../src/lab/topology.js';

/** One setup of the bench: a local SOCKS5 port in the client namespace, or a routed VPN. */
interface Setup {
  readonly name: string;
  readonly socksPort?: number;
  /** The origin's address when the setup is a full-device tunnel (no SOCKS5). */
  readonly direct?: () => string | undefined;
  /** Command-line parts of its server processes in abroad, for their RSS. */
  readonly serverNames: readonly string[];
  unavailable?(): string | undefined;
  setup?(plan: LabPlan): Promise<void>;
}

/** The Ladder servers: `ladder server` processes (every Ladder row shares them). */
const LADDER_SERVER = ['main.js server'];

function fromEntry(t: TransportEntry, serverNames: readonly string[]): Setup {
  return {
    name: t.name,
    ...(t.socksPort !== undefined ? { socksPort: t.socksPort } : {}),
    serverNames,
    ...(t.unavailable ? { unavailable: () => t.unavailable!() } : {}),
    ...(t.setup ? { setup: (p: LabPlan) => t.setup!(p) } : {}),
  };
}

const CLIENT = fileURLToPath(new URL('./path-client.js', import.meta.url));

interface Options {
  path: string;
  reps: number;
  ttfbN: number;
  bulkMb: number;
  bulkS: number;
  setups: string[] | undefined;
  prefix: string;
  mtu: number;
  /** The congestion control every socket in abroad defaults to (its namespace's sysctl). */
  cc: string | undefined;
  /** `--tcp-congestion` for the Ladder servers. */
  ladderCc: string | undefined;
  /** Loss-recovery counters and per-resource times per step (`--trace`). */
  trace: boolean;
}

/** One traced step of a round: the abroad namespace's counter deltas, and a page's resources. */
interface TraceEntry {
  round: number;
  step: string;
  ms: number;
  tcp: Record<string, number>;
  docMs?: number;
  /** [connection, size, request sent, last byte] in ms from the page's start. */
  resources?: unknown;
}

interface Sample {
  ttfbMs: number[];
  /**
   * The first request of each round's ttfb batch: no connection opened ahead can be waiting for
   * it (the client's last request was minutes before), where the later ones may find one.
   */
  ttfbFirstMs: number[];
  /** When the SOCKS5 reply arrived, within the ttfb request. */
  socksReplyMs: number[];
  pageHttpMs: number[];
  pageHttpsMs: number[];
  bulkMbps: number[];
  errors: string[];
  trace: TraceEntry[];
}

/**
 * The TCP counters a trace reports (/proc/net/netstat TcpExt, /proc/net/snmp Tcp): retransmission
 * timeouts, tail-loss probes, fast retransmits, recoveries, and the segments sent and resent.
 */
const TRACE_COUNTERS = [
  'TCPTimeouts',
  'TCPLossProbes',
  'TCPLossProbeRecovery',
  'TCPFastRetrans',
  'TCPSlowStartRetrans',
  'TCPLostRetransmit',
  'TCPSackRecovery',
  'TCPSpuriousRTOs',
  'RetransSegs',
  'OutSegs',
] as const;

/** A namespace's TCP counters, from the header and value line pairs of /proc/net/{netstat,snmp}. */
async function tcpCounters(
  plan: ReturnType<typeof planLab>,
  ns: string,
): Promise<Record<string, number>> {
  const r = await runIn(plan, ns, ['cat', '/proc/net/netstat', '/proc/net/snmp'], 10_000);
  const lines = r.out.split('\n');
  const out: Record<string, number> = {};
  for (let i = 0; i + 1 < lines.length; i++) {
    const head = lines[i]!.split(/\s+/);
    const vals = lines[i + 1]!.split(/\s+/);
    if (head[0] !== vals[0] || !/^(TcpExt|Tcp):$/.test(head[0] ?? '')) continue;
    head.forEach((k, j) => {
      if ((TRACE_COUNTERS as readonly string[]).includes(k)) out[k] = Number(vals[j]);
    });
    i++;
  }
  return out;
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0) return process.argv[i + 1];
  return process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
}

export function pathOptions(): Options | undefined {
  const path = arg('path');
  if (path === undefined) return undefined;
  if (!(PATH_PROFILES as readonly string[]).includes(path)) {
    console.error(`bench: --path must be one of ${PATH_PROFILES.join(', ')}`);
    process.exit(2);
  }
  return {
    path,
    reps: Number(arg('reps') ?? 3),
    ttfbN: Number(arg('ttfb-n') ?? 5),
    bulkMb: Number(arg('bulk-mb') ?? 100),
    bulkS: Number(arg('bulk-s') ?? 30),
    setups: arg('setups')?.split(','),
    prefix: arg('prefix') ?? 'bpath-',
    mtu: Number(arg('mtu') ?? 1500),
    cc: arg('cc'),
    ladderCc: arg('ladder-cc'),
    trace: process.argv.includes('--trace'),
  };
}

function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function client(
  plan: ReturnType<typeof planLab>,
  t: Setup,
  args: string[],
  timeoutS: number,
): Promise<Record<string, number> & { trace?: unknown }> {
  const direct = t.direct?.();
  const r = await runIn(
    plan,
    plan.ns.client,
    [
      process.execPath,
      CLIENT,
      ...(direct ? ['--direct', direct] : ['--socks', `127.0.0.1:${t.socksPort}`]),
      '--ca',
      caPath(plan),
      '--timeout-s',
      String(timeoutS),
      ...args,
    ],
    (timeoutS + 10) * 1000,
  );
  const line = r.out.trim().split('\n').pop() ?? '';
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(line) as Record<string, unknown>;
  } catch {
    throw new Error(`client said: ${r.out.trim().slice(-300) || `exit ${r.status}`}`);
  }
  if (typeof parsed.error === 'string') throw new Error(parsed.error);
  return parsed as Record<string, number>;
}

/** RSS in KiB of the server processes a setup runs in abroad, by parts of their command lines. */
function serverRssKb(plan: ReturnType<typeof planLab>, names: readonly string[]): number {
  let kb = 0;
  for (const pid of namespacePids(plan.ns.abroad)) {
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
    } catch {
      continue;
    }
    if (!names.some((n) => cmd.includes(n))) continue;
    const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    if (m) kb += Number(m[1]);
  }
  return kb;
}

export async function runPathBench(o: Options): Promise<number> {
  const why = labUnavailable();
  if (why) {
    console.error(`bench --path: ${why}`);
    return 2;
  }
  const plan = planLab(o.prefix, undefined, o.mtu);
  const peers = pathPeers();
  const all: Setup[] = [
    ...transports()
      .filter((t) => t.name === 'shadowsocks-libev')
      .map((t) => fromEntry(t, ['ss-server -s'])),
    ...peers.map((p) => ({ ...p, direct: () => p.direct })),
    ...ladderBenchTransports().map((t) => fromEntry(t, LADDER_SERVER)),
  ];
  const setups = all.filter((t) => !o.setups || o.setups.some((s) => t.name.includes(s)));
  const onSignal = (signal: NodeJS.Signals): void => {
    stopTransports();
    stopPeers();
    destroyLab(plan);
    console.error(`bench --path: stopped by ${signal}; lab removed`);
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const results: Record<string, Sample> = {};
  const started = Date.now();
  try {
    destroyLab(plan);
    await labUp(plan);
    // A server whose system default is another congestion control (e.g. cubic, most distributions'),
    // to weigh Ladder's --tcp-congestion against it.
    if (o.cc) {
      const r = await runIn(
        plan,
        plan.ns.abroad,
        ['sysctl', '-w', `net.ipv4.tcp_congestion_control=${o.cc}`],
        10_000,
      );
      if (r.status !== 0) throw new Error(`--cc ${o.cc}: ${r.out.trim()}`);
    }
    setLadderServerArgs(o.ladderCc ? ['--tcp-congestion', o.ladderCc] : []);
    await startCensor(plan, { modules: {}, path: pathProfile(o.path) });
    const ready: Setup[] = [];
    for (const t of setups) {
      results[t.name] = {
        ttfbMs: [],
        ttfbFirstMs: [],
        socksReplyMs: [],
        pageHttpMs: [],
        pageHttpsMs: [],
        bulkMbps: [],
        errors: [],
        trace: [],
      };
      const why = t.unavailable?.();
      if (why) {
        results[t.name]!.errors.push(why);
        continue;
      }
      try {
        await t.setup?.(plan);
        ready.push(t);
      } catch (err) {
        results[t.name]!.errors.push(`setup: ${(err as Error).message}`);
      }
    }
    console.log(
      `path bench on ${o.path} (MTU ${o.mtu}): ${ready.map((t) => t.name).join(', ')}; ` +
        `${o.reps} rounds`,
    );
    for (let rep = 0; rep < o.reps; rep++) {
      for (const t of ready) {
        const s = results[t.name]!;
        const step = async (what: string, fn: () => Promise<void>) => {
          try {
            await fn();
          } catch (err) {
            s.errors.push(`${what}: ${(err as Error).message}`);
          }
        };
        await step('ttfb', async () => {
          const xs: number[] = [];
          const socks: number[] = [];
          for (let i = 0; i < o.ttfbN; i++) {
            const r = await client(plan, t, ['--mode', 'ttfb'], 20);
            xs.push(r.ttfbMs!);
            socks.push(r.socksMs!);
          }
          s.ttfbMs.push(median(xs));
          s.ttfbFirstMs.push(xs[0]!);
          s.socksReplyMs.push(median(socks));
        });
        // With --trace, the abroad namespace's counters around a step, and what the client saw.
        const traced = async (
          what: string,
          args: string[],
          timeoutS: number,
        ): Promise<Record<string, number>> => {
          const before = o.trace ? await tcpCounters(plan, plan.ns.abroad) : undefined;
          const r = await client(plan, t, args, timeoutS);
          if (before) {
            const after = await tcpCounters(plan, plan.ns.abroad);
            const tcp = Object.fromEntries(
              Object.keys(after).map((k) => [k, after[k]! - (before[k] ?? 0)]),
            );
            s.trace.push({
              round: rep + 1,
              step: what,
              ms: r.pageMs ?? r.seconds! * 1000,
              tcp,
              ...(r.docMs !== undefined ? { docMs: r.docMs, resources: r.trace } : {}),
            });
            console.log(
              `    ${what}: rto ${tcp.TCPTimeouts} tlp ${tcp.TCPLossProbes} fast ` +
                `${tcp.TCPFastRetrans} recoveries ${tcp.TCPSackRecovery} retrans ` +
                `${tcp.RetransSegs}/${tcp.OutSegs}`,
            );
          }
          return r;
        };
        await step('page http', async () => {
          s.pageHttpMs.push((await traced('page http', ['--mode', 'page'], 120)).pageMs!);
        });
        await step('page https', async () => {
          s.pageHttpsMs.push(
            (await traced('page https', ['--mode', 'page', '--https'], 120)).pageMs!,
          );
        });
        await step('bulk', async () => {
          const r = await traced(
            'bulk',
            ['--mode', 'bulk', '--bytes', String(o.bulkMb * 1e6), '--bulk-s', String(o.bulkS)],
            o.bulkS + 60,
          );
          s.bulkMbps.push(r.mbps!);
        });
        console.log(
          `  round ${rep + 1} ${t.name}: ttfb ${s.ttfbMs.at(-1)?.toFixed(0)} ms ` +
            `(first ${s.ttfbFirstMs.at(-1)?.toFixed(0)}) ` +
            `(SOCKS reply at ${s.socksReplyMs.at(-1)?.toFixed(0)}), page ` +
            `${s.pageHttpMs.at(-1)?.toFixed(0)}/${s.pageHttpsMs.at(-1)?.toFixed(0)} ms, bulk ` +
            `${s.bulkMbps.at(-1)?.toFixed(2)} Mbit/s`,
        );
      }
    }
    // Per setup; the Ladder rows share their servers, so each shows the same figure. (libev's
    // server is matched by its argv, as the config files of v2ray's SS server also name ss-server.)
    const rssKb = Object.fromEntries(ready.map((t) => [t.name, serverRssKb(plan, t.serverNames)]));
    const rows = Object.entries(results).map(([name, s]) => ({
      name,
      serverRssKb: rssKb[name],
      ttfbMs: median(s.ttfbMs),
      ttfbFirstMs: median(s.ttfbFirstMs),
      pageHttpMs: median(s.pageHttpMs),
      pageHttpsMs: median(s.pageHttpsMs),
      bulkMbps: median(s.bulkMbps),
      runs: s,
    }));
    console.log(
      `\n${'setup'.padEnd(22)} ${'ttfb ms'.padStart(8)} ${'1st'.padStart(6)} ${'page http'.padStart(10)} ` +
        `${'page https'.padStart(10)} ${'bulk Mbit/s'.padStart(12)} ${'srv MiB'.padStart(8)}  errors`,
    );
    for (const r of rows)
      console.log(
        `${r.name.padEnd(22)} ${r.ttfbMs.toFixed(0).padStart(8)} ${r.ttfbFirstMs.toFixed(0).padStart(6)} ${r.pageHttpMs.toFixed(0).padStart(10)} ` +
          `${r.pageHttpsMs.toFixed(0).padStart(10)} ${r.bulkMbps.toFixed(2).padStart(12)} ` +
          `${r.serverRssKb === undefined ? '-'.padStart(8) : (r.serverRssKb / 1024).toFixed(0).padStart(8)}  ` +
          `${r.runs.errors.length ? r.runs.errors.slice(0, 2).join('; ') : ''}`,
      );
    const out = join(fileURLToPath(new URL('.', import.meta.url)), '../../bench');
    writeFileSync(
      join(
        out,
        `path-results-${o.path}${o.cc ? `-cc-${o.cc}` : ''}${o.ladderCc ? `-ladder-${o.ladderCc}` : ''}.json`,
      ),
      JSON.stringify(
        {
          date: new Date().toISOString(),
          path: o.path,
          params: pathProfile(o.path),
          mtu: o.mtu,
          cc: o.cc ?? 'the kernel default',
          ladderCc: o.ladderCc ?? null,
          reps: o.reps,
          bulk: { mb: o.bulkMb, capS: o.bulkS },
          loadavg1: loadavg()[0],
          minutes: (Date.now() - started) / 60_000,
          rows,
        },
        null,
        2,
      ),
    );
    return rows.some((r) => r.runs.errors.length > 0) ? 1 : 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    stopTransports();
    stopPeers();
    destroyLab(plan);
  }
}
