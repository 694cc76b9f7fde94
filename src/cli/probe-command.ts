/**
 * `ladder probe --key <uri> [URL ...] [--list FILE] [options]`: what is blocked from here, and how
 * (src/probe, docs/probe.md). The composition root for the probe: reads files, picks the resolver,
 * builds the dialers, and writes the table and the JSON lines.
 * @module
 */
import { readFileSync, writeFileSync, appendFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { fileURLToPath } from 'node:url';
import { ConfigError, LadderError } from '../errors.js';
import type { Target } from '../transport/types.js';
import {
  resolvConfNameserver,
  StreamResolver,
  tunnelUdpResolver,
  udpResolver,
  type Resolver,
} from '../probe/dns-client.js';
import { ConnectionBudget, mapLimit, sleep } from '../probe/manners.js';
import {
  formatServerTable,
  formatTransportTable,
  formatWebSummary,
  formatWebTable,
  ProgressBar,
  transportMeasurement,
} from '../probe/report.js';
import { parseTestList, type TestListEntry } from '../probe/test-list.js';
import { checkTransports, type CheckEnv, type TransportCheck } from '../probe/transport-check.js';
import { formatFindings, recognise, type AllowlistControl } from '../probe/censors.js';
import { keyTransports, type ProbeTransport } from '../probe/transports.js';
import {
  checkProbeUrl,
  CONNECTIONS_PER_URL,
  measureUrl,
  type Control,
  type WebEnv,
  type WebResult,
} from '../probe/web-connectivity.js';
import { DEFAULT_CONNECT_TIMEOUT_MS } from '../core/defaults.js';
import { formatHostPort, parseCount, parseFlags, parseHostPort, parseSeconds } from './args.js';

/** The list that ships with Ladder (a handful of well-known sites, Citizen Lab format). */
export const DEFAULT_LIST_PATH = fileURLToPath(
  new URL('../../../data/test-lists/default.csv', import.meta.url),
);
/** OONI's Web Connectivity uses this resolver for its DNS-over-UDP extension (ts-017 E003). */
export const DEFAULT_CONTROL_RESOLVER = '8.8.8.8:53';
export const DEFAULT_CHECK_URL = 'http://example.com/';

const HELP = `ladder probe --key <uri> [--key <uri> ...] [URL ...] [options]

Finds out what is blocked from where you stand, and how. Two parts, both by default:
  transports  tries every transport of the key(s) several times; for each that fails, names the
              likely technique (DNS poisoning, IP or port block, reset after the ClientHello,
              silent drop after the first data packet, residual blocking, throttling) with evidence
  web         OONI-style Web Connectivity for each URL of a test list, with the first transport
              that gets through as the uncensored control (DNS, TCP, TLS with SNI, HTTP GET)

It reaches only: the servers of the keys, the local resolver, and through the tunnel the control
resolver, the check URL and the URLs of the list.

options:
  --key <uri>                    access key (ss://, trojan://, or ladder:// with several transports);
                                 repeat for more
  URL ...                        URLs to measure (with their scheme) instead of the list
  --list <file>                  test list: Citizen Lab CSV or one URL per line
                                 (default: the built-in list, ${DEFAULT_LIST_PATH})
  --only web|transports          run one part only
  --resolver <host:port>         local resolver (default: first nameserver in /etc/resolv.conf)
  --control-resolver <host:port> resolver asked through the tunnel (default ${DEFAULT_CONTROL_RESOLVER})
  --check-url <url>              plain-HTTP URL each transport attempt fetches (default ${DEFAULT_CHECK_URL})
  --throughput-url <url>         plain-HTTP download through each working transport, to spot
                                 throttling, a byte budget or a volume ban (off unless given;
                                 at most 64 MiB and 20 s; ends once silent for --timeout)
  --ca <file>                    extra CA certificates (PEM) to trust for TLS
  --attempts <n>                 attempts per transport (default 3)
  --backoff <s>                  wait before the second attempt, doubling for each later one (default 2)
  --parallel <n>                 URLs measured at once (default 4)
  --timeout <s>                  timeout of each step (default 10)
  --max-connections <n>          cap on the connections of the whole run (default 400)
  --concurrent <n>               also open n connections at once through each working transport,
                                 to spot connection-count policing (off unless given; 2 to 32)
  --allowlist-control <url>      an http:// or https:// site you expect an allowlist to let
                                 through (a big domestic site), fetched directly, not through the
                                 tunnel: if it answers while every transport is silent, the probe
                                 names whitelist mode; if it answers while a server's address went
                                 dark after a download, a volume ban (off unless given)
  --json [file]                  OONI-style JSON lines to stdout (the tables then go to stderr),
                                 or to a file`;

/** Splits off `--json [file]` (its value is optional, which parseArgs cannot express). */
export function takeJsonFlag(argv: readonly string[]): {
  rest: string[];
  json: { to: 'stdout' } | { to: 'file'; path: string } | undefined;
} {
  const rest: string[] = [];
  let json: { to: 'stdout' } | { to: 'file'; path: string } | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a.startsWith('--json=')) {
      json = { to: 'file', path: a.slice('--json='.length) };
    } else if (a === '--json') {
      const next = argv[i + 1];
      if (next !== undefined && !next.startsWith('-') && !/^[a-z][a-z0-9+.-]*:\/\//i.test(next)) {
        json = { to: 'file', path: next };
        i++;
      } else json = { to: 'stdout' };
    } else rest.push(a);
  }
  return { rest, json };
}

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError('ERR_CONFIG', `${what} ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/** An http:// or https:// URL for a flag, or a usage error naming it. */
function webUrl(text: string, flag: string): URL {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new LadderError(
      'ERR_USAGE',
      `${flag} '${text.slice(0, 80)}' is not a URL; give http://… or https://…`,
    );
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new LadderError(
      'ERR_USAGE',
      `${flag} '${text.slice(0, 80)}' must be an http:// or https:// URL`,
    );
  return u;
}

/**
 * Whether a site answers a GET made directly (not through a tunnel) within `timeoutMs`: any HTTP
 * status counts, since the question is only whether the path to it is open. The body is not read.
 */
export function answersDirectly(url: URL, timeoutMs: number, ca?: string): Promise<boolean> {
  return new Promise((resolve) => {
    const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = request(
      url,
      {
        method: 'GET',
        signal: AbortSignal.timeout(timeoutMs),
        headers: { connection: 'close' },
        ...(ca && url.protocol === 'https:' ? { ca } : {}),
      },
      (res) => {
        res.destroy();
        resolve(true);
      },
    );
    req.on('error', () => resolve(false));
    req.end();
  });
}

function httpUrl(text: string, flag: string): URL {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new LadderError(
      'ERR_USAGE',
      `${flag} '${text}' is not a URL; write it as http://host/path`,
    );
  }
  if (u.protocol !== 'http:')
    throw new LadderError(
      'ERR_USAGE',
      `${flag} '${text}' must be a plain http:// URL (the tunnel encrypts it; the first data packet is then the request itself)`,
    );
  return u;
}

function localResolver(flag: string | undefined): Resolver {
  if (flag !== undefined) return udpResolver(parseHostPort(flag, '--resolver'));
  const ns = resolvConfNameserver(readText('/etc/resolv.conf', 'resolver settings'));
  if (!ns)
    throw new ConfigError(
      'ERR_CONFIG',
      'probe: /etc/resolv.conf names no nameserver; give the local resolver with --resolver <host:port>',
    );
  return udpResolver(ns);
}

function controlFrom(
  check: TransportCheck,
  controlResolver: Target,
  ca: string | undefined,
  timeoutMs: number,
): Control {
  const d = check.transport.dialers(check.address!, { timeoutMs, ...(ca ? { ca } : {}) });
  const resolvers: Resolver[] = [];
  if (d.packet) resolvers.push(tunnelUdpResolver(d.packet, controlResolver));
  resolvers.push(new StreamResolver(d.stream, controlResolver, ' (tunnel)'));
  return { name: check.transport.name, resolvers, dialer: d.stream };
}

/** The flags of `ladder probe` (besides --json, which takes an optional value). */
const PROBE_FLAGS = {
  key: { type: 'string', multiple: true },
  list: { type: 'string' },
  only: { type: 'string' },
  resolver: { type: 'string' },
  'control-resolver': { type: 'string' },
  'check-url': { type: 'string' },
  'throughput-url': { type: 'string' },
  ca: { type: 'string' },
  attempts: { type: 'string' },
  backoff: { type: 'string' },
  parallel: { type: 'string' },
  timeout: { type: 'string' },
  'max-connections': { type: 'string' },
  concurrent: { type: 'string' },
  'allowlist-control': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

type ProbeFlags = ReturnType<typeof parseFlags<typeof PROBE_FLAGS>>['values'];

/** The checked options of one probe run (no file read yet). */
interface ProbeOptions {
  only: 'web' | 'transports' | undefined;
  keys: string[];
  transports: ProbeTransport[];
  skippedTransports: string[];
  timeoutMs: number;
  parallel: number;
  attempts: number;
  concurrency: number | undefined;
  backoffBaseMs: number;
  maxConnections: number;
  controlResolver: Target;
  checkUrl: URL;
  throughputUrl: URL | undefined;
  /** A site an allowlist would carry, fetched directly (`--allowlist-control`). */
  allowlistUrl: URL | undefined;
}

/** Checks the flags of `ladder probe`; usage errors name the flag. */
function parseProbeOptions(values: ProbeFlags, positionals: string[]): ProbeOptions {
  const only = values.only;
  if (only !== undefined && only !== 'web' && only !== 'transports')
    throw new LadderError('ERR_USAGE', `probe: --only takes 'web' or 'transports', not '${only}'`);
  const keys = values.key ?? [];
  if (keys.length === 0)
    throw new LadderError(
      'ERR_USAGE',
      'probe: give an access key with --key <uri>: its transports are what the check tests, and its tunnel is the control for the web test',
    );
  const transports: ProbeTransport[] = [];
  const skippedTransports: string[] = [];
  for (const k of keys) {
    const t = keyTransports(k);
    transports.push(...t.transports);
    skippedTransports.push(...t.skipped);
  }
  if (transports.length === 0)
    throw new ConfigError(
      'ERR_KEY_URI',
      `probe: no transport of the key can be checked (${skippedTransports.join('; ')})`,
    );
  if (only === 'transports' && (positionals.length > 0 || values.list !== undefined))
    throw new LadderError(
      'ERR_USAGE',
      'probe: URLs and --list belong to the web part; drop --only transports',
    );
  if (positionals.length > 0 && values.list !== undefined)
    throw new LadderError('ERR_USAGE', 'probe: give URLs on the command line or --list, not both');
  return { only, keys, transports, skippedTransports, ...parseProbeLimits(values) };
}

/** Timeouts, counts and the URLs and resolver of the tunnel check. */
function parseProbeLimits(
  values: ProbeFlags,
): Omit<ProbeOptions, 'only' | 'keys' | 'transports' | 'skippedTransports'> {
  const timeoutMs = parseSeconds(values.timeout, '--timeout', DEFAULT_CONNECT_TIMEOUT_MS);
  const parallel = parseCount(values.parallel, '--parallel', 4);
  const attempts = parseCount(values.attempts, '--attempts', 3);
  const concurrency =
    values.concurrent === undefined ? undefined : parseCount(values.concurrent, '--concurrent', 0);
  if (concurrency !== undefined && (concurrency < 2 || concurrency > 32))
    throw new LadderError(
      'ERR_USAGE',
      `--concurrent '${values.concurrent}' must be 2 to 32 connections at once`,
    );
  const backoffBaseMs = values.backoff === undefined ? 2000 : parseSecondsOrZero(values.backoff);
  const maxConnections = parseCount(values['max-connections'], '--max-connections', 400);
  const controlResolver = parseHostPort(
    values['control-resolver'] ?? DEFAULT_CONTROL_RESOLVER,
    '--control-resolver',
  );
  const checkUrl = httpUrl(values['check-url'] ?? DEFAULT_CHECK_URL, '--check-url');
  const throughputUrl =
    values['throughput-url'] !== undefined
      ? httpUrl(values['throughput-url'], '--throughput-url')
      : undefined;
  const allowlistUrl =
    values['allowlist-control'] !== undefined
      ? webUrl(values['allowlist-control'], '--allowlist-control')
      : undefined;
  return {
    timeoutMs,
    parallel,
    attempts,
    concurrency,
    backoffBaseMs,
    maxConnections,
    controlResolver,
    checkUrl,
    throughputUrl,
    allowlistUrl,
  };
}

/** The URLs of the web part: the command line's, --list's or the built-in list's, checked. */
function loadEntries(
  o: ProbeOptions,
  positionals: string[],
  list: string | undefined,
): { entries: TestListEntry[]; listName: string } {
  if (o.only === 'transports') return { entries: [], listName: '' };
  let entries: TestListEntry[];
  let listName: string;
  if (positionals.length > 0) {
    entries = positionals.map((url) => ({ url }));
    listName = 'the command line';
  } else {
    const path = list ?? DEFAULT_LIST_PATH;
    entries = parseTestList(readText(path, 'test list'), path);
    listName = list ? path : `the built-in list (${path})`;
  }
  for (const e of entries) {
    const u = checkProbeUrl(e.url);
    if (typeof u === 'string') throw new LadderError('ERR_USAGE', `probe: ${u}`);
  }
  return { entries, listName };
}

/** Where the output goes: lines for people, JSON lines, and the progress line on a terminal. */
interface ProbeOutput {
  say(line: string): void;
  emit(obj: object): void;
  tty: NodeJS.WriteStream | undefined;
}

function probeOutput(json: ReturnType<typeof takeJsonFlag>['json']): ProbeOutput {
  // JSON lines to stdout means the people's part goes to stderr.
  const human = json?.to === 'stdout' ? process.stderr : process.stdout;
  if (json?.to === 'file') writeFileSync(json.path, '');
  return {
    say: (line) => {
      human.write(`${line}\n`);
    },
    emit: (obj) => {
      const line = `${JSON.stringify(obj)}\n`;
      if (json?.to === 'stdout') process.stdout.write(line);
      else if (json?.to === 'file') appendFileSync(json.path, line);
    },
    tty: process.stdout.isTTY && process.stderr.isTTY ? process.stderr : undefined,
  };
}

export async function run(argv: string[]): Promise<number> {
  const { rest, json } = takeJsonFlag(argv);
  const { values, positionals } = parseFlags('probe', rest, PROBE_FLAGS, true);
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const o = parseProbeOptions(values, positionals);
  const budget = new ConnectionBudget(o.maxConnections);
  const caPem = values.ca !== undefined ? readText(values.ca, '--ca') : undefined;
  const resolver = localResolver(values.resolver);
  const { entries, listName } = loadEntries(o, positionals, values.list);
  const out = probeOutput(json);
  const servers = [
    ...new Set(o.transports.map((t) => formatHostPort(t.server.host, t.server.port))),
  ];
  out.say(
    `ladder probe: reaching ${servers.join(', ')} (the key${o.keys.length > 1 ? 's' : ''}), the local resolver ${resolver.address}` +
      (o.allowlistUrl && o.only !== 'web' ? `, directly ${o.allowlistUrl.href}` : '') +
      (o.only === 'transports'
        ? `, and through the tunnel ${o.checkUrl.href}`
        : `, and through the tunnel ${formatHostPort(o.controlResolver.host, o.controlResolver.port)}, ${o.checkUrl.href} and ${entries.length} URL${entries.length === 1 ? '' : 's'} from ${listName}`) +
      `; at most ${budget.max} connections`,
  );
  for (const s of o.skippedTransports) out.say(`skipped: ${s}`);
  const testStartTime = new Date();
  const now = (): number => performance.now();
  const t0 = now();
  const checks = await checkTransports(
    o.transports,
    checkEnvFor(o, { now, resolver, budget, caPem, tty: out.tty }),
  );
  if (out.tty) out.tty.write('\r\x1b[2K');
  if (o.only !== 'web') {
    const allowlistControl =
      o.allowlistUrl && budget.reserve(1)
        ? {
            name: o.allowlistUrl.href,
            ok: await answersDirectly(o.allowlistUrl, o.timeoutMs, caPem),
          }
        : undefined;
    reportTransports(o, checks, out, { testStartTime, t0, now, resolver, allowlistControl });
  }
  if (o.only === 'transports') return 0;
  const working = checks.find((c) => c.verdict.okAttempts > 0 && c.address !== undefined);
  const control = working ? controlFrom(working, o.controlResolver, caPem, o.timeoutMs) : undefined;
  const env: WebEnv = {
    now,
    timeoutMs: o.timeoutMs,
    resolver,
    control,
    ...(control
      ? {}
      : {
          controlFailure: `no transport of the key got through (${checks.map((c) => c.verdict.technique).join(', ')})`,
        }),
    ...(caPem ? { extraCa: [caPem] } : {}),
    maxBodyBytes: 256 * 1024,
    dnsGraceMs: Math.min(300, o.timeoutMs),
    testStartTime,
  };
  await runWebPart(entries, env, { parallel: o.parallel, budget, out });
  return 0;
}

/** What the transport check needs: the options, the clock, the resolver and the budget. */
function checkEnvFor(
  o: ProbeOptions,
  d: {
    now: () => number;
    resolver: Resolver;
    budget: ConnectionBudget;
    caPem: string | undefined;
    tty: NodeJS.WriteStream | undefined;
  },
): CheckEnv {
  const { only, timeoutMs, throughputUrl, concurrency } = o;
  return {
    now: d.now,
    timeoutMs,
    attempts: o.attempts,
    // --only web: the check only picks the control, so the first success is enough
    ...(only === 'web' ? { stopAtFirstSuccess: true } : {}),
    backoffBaseMs: o.backoffBaseMs,
    sleep: (ms) => sleep(ms),
    resolver: d.resolver,
    dnsGraceMs: Math.min(500, timeoutMs),
    checkUrl: o.checkUrl,
    ...(throughputUrl && only !== 'web' ? { throughputUrl } : {}),
    throughputMaxBytes: 64 * 1024 * 1024,
    throughputMaxMs: 20_000,
    controlResolver: o.controlResolver,
    ...(d.caPem ? { ca: d.caPem } : {}),
    budget: d.budget,
    ...(concurrency !== undefined && only !== 'web' ? { concurrency } : {}),
    ...(only === 'web' ? {} : { onProgress: (l: string) => d.tty && d.tty.write(`\r\x1b[2K${l}`) }),
  };
}

/** The transport table, the techniques recognised, and one JSON measurement per transport. */
function reportTransports(
  o: ProbeOptions,
  checks: TransportCheck[],
  out: ProbeOutput,
  m: {
    testStartTime: Date;
    t0: number;
    now: () => number;
    resolver: Resolver;
    allowlistControl: AllowlistControl | undefined;
  },
): void {
  out.say('\nTransports');
  out.say(formatTransportTable(checks));
  const findings = formatFindings(
    recognise(checks, m.allowlistControl ? { allowlistControl: m.allowlistControl } : {}),
  );
  if (findings) out.say(findings);
  if (new Set(o.transports.map((t) => formatHostPort(t.server.host, t.server.port))).size > 1) {
    out.say('\nServers');
    out.say(formatServerTable(checks));
  }
  for (const c of checks)
    out.emit(
      transportMeasurement(c, {
        testStartTime: m.testStartTime,
        measurementStartTime: m.testStartTime,
        t0: m.t0,
        runtimeS: (m.now() - m.t0) / 1000,
        resolver: m.resolver.address,
      }),
    );
}

/** Web Connectivity for each URL, within the connection budget, then the table and summary. */
async function runWebPart(
  entries: TestListEntry[],
  env: WebEnv,
  d: { parallel: number; budget: ConnectionBudget; out: ProbeOutput },
): Promise<void> {
  const { budget, out } = d;
  const control = env.control;
  out.say(
    `\nWeb connectivity: ${entries.length} URL${entries.length === 1 ? '' : 's'}, control ${
      control
        ? `through ${control.name}`
        : 'NONE (no transport got through: nothing can be concluded)'
    }`,
  );
  const bar = new ProgressBar(out.tty, entries.length, 'URLs');
  const skipped: { url: string; reason: string }[] = [];
  const results = (
    await mapLimit(entries, d.parallel, async (e): Promise<WebResult | undefined> => {
      const r = budget.reserve(CONNECTIONS_PER_URL);
      if (!r) {
        skipped.push({
          url: e.url,
          reason: `the connection cap (--max-connections ${budget.max}) is reached`,
        });
        bar.tick();
        return undefined;
      }
      try {
        const m = await measureUrl(e.url, env, r);
        out.emit(m.json);
        return m;
      } finally {
        r.release();
        bar.tick();
      }
    })
  ).filter((r): r is WebResult => r !== undefined);
  bar.end();
  out.say(formatWebTable(results, skipped));
  out.say(`\n${formatWebSummary(results, skipped.length)}`);
}

function parseSecondsOrZero(text: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0)
    throw new LadderError(
      'ERR_USAGE',
      `--backoff '${text}' is not a number of seconds (0 or more)`,
    );
  return Math.round(n * 1000);
}
