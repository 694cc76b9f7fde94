/**
 * The transport check (`ladder probe --key`): does each transport of an access key get through from
 * here, and if not, how is it blocked? Each transport gets a few attempts, spaced by a growing
 * backoff. An attempt is a fresh connection made step by step, each step timed and its failure
 * named:
 *
 * ```text
 * DNS (if the key names the server) → TCP connect → TLS handshake (TLS transports)
 *   → first data: an HTTP GET of the check URL through the tunnel → an HTTP answer?
 * ```
 *
 * The step where an attempt stops, and how (timeout, reset, close), and what later attempts do, point
 * to the technique (docs/censorship-techniques.md §1–§6, §16–§17): DNS poisoning, an IP or port block (checked against
 * another port of the same address), a reset after the ClientHello (SNI filtering), a silent drop after
 * the first data packet (FET blocking, §1) and the residual null route that follows it, throttling.
 * After every transport was tried, a transport that got through serves as the control: the server's
 * name is resolved through it to expose a poisoned answer.
 * @module
 */
import { isIP, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { DNS_TYPE } from '../codec/dns.js';
import type { Target } from '../transport/types.js';
import { StreamResolver, tunnelUdpResolver, type DnsLookup, type Resolver } from './dns-client.js';
import type { Failure } from './failure.js';
import { backoffMs, type ConnectionBudget } from './manners.js';
import {
  dialFailure,
  dialWithin,
  exchange,
  tcpConnect,
  type ExchangeResult,
  type Now,
} from './ops.js';
import type { ProbeTransport } from './transports.js';

export interface CheckEnv {
  readonly now: Now;
  readonly timeoutMs: number;
  /** Attempts per transport. */
  readonly attempts: number;
  /** Stop a transport's attempts at its first success (when only a control is wanted). */
  readonly stopAtFirstSuccess?: boolean;
  /** Wait before the second attempt; doubles for each later one. */
  readonly backoffBaseMs: number;
  readonly sleep: (ms: number) => Promise<void>;
  readonly resolver: Resolver;
  readonly dnsGraceMs: number;
  /** A plain-HTTP URL fetched through the tunnel: the first data of each attempt. */
  readonly checkUrl: URL;
  /** Optional: a larger plain-HTTP download through each working transport, for throttling. */
  readonly throughputUrl?: URL;
  readonly throughputMaxBytes: number;
  readonly throughputMaxMs: number;
  /** The control resolver (reached through a working transport). */
  readonly controlResolver: Target;
  /** PEM of extra CAs for TLS transports. */
  readonly ca?: string;
  readonly budget: ConnectionBudget;
  /**
   * Open this many attempts at once through each working transport, all held open until the last
   * has its answer (connection-count policing, {@link attemptsAtOnce}).
   */
  readonly concurrency?: number;
  readonly onProgress?: (line: string) => void;
}

export interface StepRecord {
  readonly t0: number;
  readonly t: number;
  readonly failure: Failure | null;
}

export type AttemptKind =
  | 'ok'
  | 'cap'
  | 'tcp-timeout'
  | 'tcp-refused'
  | 'tcp-reset'
  | 'tcp-unreachable'
  | 'tcp-other'
  | 'tls-reset'
  | 'tls-timeout'
  | 'tls-cert'
  | 'tls-other'
  | 'data-timeout'
  | 'data-reset'
  | 'data-eof'
  | 'bad-answer';

export interface Attempt {
  readonly n: number;
  readonly address: string;
  readonly port: number;
  readonly tcp: StepRecord;
  readonly tls?: StepRecord;
  readonly data?: StepRecord & {
    readonly outcome: ExchangeResult['outcome'];
    readonly bytes: number;
  };
  /** First line of the answer, when one came. */
  readonly statusLine?: string;
  readonly kind: AttemptKind;
}

export interface Throughput {
  readonly bytes: number;
  readonly seconds: number;
  readonly bytesPerSecond: number;
  /** Rate in the last 30% of the transfer over the best rate of its first 30%. */
  readonly ratio: number | null;
  /** Bytes received when the rate last stood at half the early rate or more. */
  readonly kneeBytes: number | null;
  readonly failure: Failure | null;
  /**
   * How the download ended: the server's end, the byte or time cap, an error, or a stall (no byte
   * for {@link stallSilenceMs} while the server had not ended it).
   */
  readonly end?: 'eof' | 'bytes' | 'timer' | 'error' | 'stall';
  /** Time from the last byte received to the end of the download. */
  readonly silentMs?: number;
}

export type Technique =
  | 'none'
  | 'dns'
  | 'ip'
  | 'port'
  | 'refused'
  | 'unreachable'
  | 'tls-reset'
  | 'tls-drop'
  | 'tls-cert'
  | 'data-reset'
  | 'data-drop'
  | 'closed'
  | 'bad-answer'
  | 'throttled'
  | 'cap'
  | 'unknown';

export interface TransportVerdict {
  readonly status: 'ok' | 'partial' | 'blocked';
  readonly technique: Technique;
  /** Later attempts blocked earlier than the first (at the connect): a residual null route. */
  readonly residual: boolean;
  readonly okAttempts: number;
  readonly explanation: string;
}

export interface DnsEvidence {
  readonly lookups: readonly DnsLookup[];
  readonly addresses: readonly string[];
  readonly failure: Failure | null;
  /** Addresses from answers that raced the first one (injection). */
  readonly injected: readonly string[];
  /** What a working transport's resolver says, when one worked. */
  readonly control?: {
    readonly via: string;
    readonly addresses: readonly string[];
    readonly failure: Failure | null;
  };
}

export interface TransportCheck {
  readonly transport: ProbeTransport;
  readonly dns?: DnsEvidence;
  /** The address the attempts went to (what the local resolver gave, or the key's address). */
  readonly address?: string;
  readonly attempts: readonly Attempt[];
  /** Another port of the same address, tried when connects timed out. */
  readonly otherPort?: {
    readonly port: number;
    readonly failure: Failure | null;
    readonly answered: boolean;
  };
  /** One attempt to the control's address, when the local answer looked poisoned. */
  readonly realAddressAttempt?: Attempt;
  readonly throughput?: Throughput;
  /** Attempts held open together (`concurrency`), in the order they were started. */
  readonly concurrent?: readonly Attempt[];
  /** A fresh attempt made after a download to some server stalled or failed (see {@link Recheck}). */
  readonly recheck?: Recheck;
  readonly verdict: TransportVerdict;
}

/**
 * What a fresh connection gets once a download has stalled or failed: whether only that flow froze
 * (a byte budget: new connections still work) or the whole address went dark (a volume ban: every
 * port fails, whatever the protocol). Made for every transport, so transports on other addresses
 * show whether the network itself still works.
 */
export interface Recheck {
  readonly attempt: Attempt;
  /**
   * A port of the address that no transport of the key uses, tried once per stalled address (on
   * its first transport): a connect or a refusal means the address still answers.
   */
  readonly otherPort?: {
    readonly port: number;
    readonly failure: Failure | null;
    readonly answered: boolean;
  };
}

/**
 * The request each attempt sends through the tunnel. `keepAlive` asks the origin to keep the
 * connection open after its answer (attempts held open together, see {@link attemptsAtOnce}).
 */
export function checkRequest(url: URL, keepAlive = false): Buffer {
  return Buffer.from(
    `GET ${url.pathname || '/'}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\n` +
      `User-Agent: ladder-probe\r\nAccept: */*\r\nConnection: ${keepAlive ? 'keep-alive' : 'close'}\r\n\r\n`,
    'latin1',
  );
}

function targetOf(url: URL): Target {
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return { host, port: url.port ? Number(url.port) : 80 };
}

/** What kind of attempt this was, from where it stopped and how. */
export function attemptKind(a: Omit<Attempt, 'kind'>): AttemptKind {
  const f = a.tcp.failure;
  if (f !== null) {
    if (f.startsWith('unknown_failure: connection cap')) return 'cap';
    if (f === 'generic_timeout_error') return 'tcp-timeout';
    if (f === 'connection_refused') return 'tcp-refused';
    if (f === 'connection_reset') return 'tcp-reset';
    if (f === 'host_unreachable' || f === 'network_unreachable') return 'tcp-unreachable';
    return 'tcp-other';
  }
  if (a.tls && a.tls.failure !== null) {
    const t = a.tls.failure;
    if (t === 'connection_reset' || t === 'eof_error') return 'tls-reset';
    if (t === 'generic_timeout_error') return 'tls-timeout';
    if (t.startsWith('ssl_')) return 'tls-cert';
    return 'tls-other';
  }
  const d = a.data;
  if (!d || d.outcome === 'timeout') return 'data-timeout';
  if (d.outcome === 'error') return 'data-reset';
  if (d.outcome === 'eof') return 'data-eof';
  return a.statusLine?.startsWith('HTTP/') ? 'ok' : 'bad-answer';
}

/** An attempt whose TCP connect is done: the socket when it connected, else the finished attempt. */
type Connected =
  | { readonly done: Attempt }
  | {
      readonly n: number;
      readonly address: string;
      readonly port: number;
      readonly tcp: StepRecord;
      readonly socket: Socket;
    };

/** An attempt whose streams are still open: close() ends them. */
interface OpenAttempt {
  readonly attempt: Attempt;
  close(): void;
}

/** The first step of an attempt: the TCP connect (within the connection budget). */
async function connectStep(
  t: ProbeTransport,
  address: string,
  n: number,
  env: CheckEnv,
): Promise<Connected> {
  const port = t.server.port;
  const r = env.budget.reserve(1);
  if (!r) {
    const now = env.now();
    const tcp = {
      t0: now,
      t: now,
      failure: 'unknown_failure: connection cap reached (--max-connections)' as Failure,
    };
    return { done: { n, address, port, tcp, kind: 'cap' } };
  }
  r.take();
  const c = await tcpConnect(address, port, { timeoutMs: env.timeoutMs, now: env.now });
  const tcp: StepRecord = { t0: c.t0, t: c.t, failure: c.failure };
  if (!c.socket) return { done: finish({ n, address, port, tcp }) };
  return { n, address, port, tcp, socket: c.socket };
}

/** The rest of an attempt over its connected socket: (TLS,) first data, answer; left open. */
async function exchangeStep(
  t: ProbeTransport,
  c: Connected,
  env: CheckEnv,
  keepAlive: boolean,
): Promise<OpenAttempt> {
  if ('done' in c) return { attempt: c.done, close: () => {} };
  const { n, address, port, tcp, socket } = c;
  const d = t.dialers(address, {
    timeoutMs: env.timeoutMs,
    socket,
    ...(env.ca ? { ca: env.ca } : {}),
  });
  const tlsStart = env.now();
  let stream: Duplex;
  try {
    stream = await dialWithin(d.stream, targetOf(env.checkUrl), env.timeoutMs);
  } catch (err) {
    socket.destroy();
    const failure = dialFailure(err);
    const tls = t.tlsServerName ? { t0: tlsStart, t: env.now(), failure } : undefined;
    const now = env.now();
    const attempt = tls
      ? finish({ n, address, port, tcp, tls })
      : finish({
          n,
          address,
          port,
          tcp,
          data: { t0: tlsStart, t: now, failure, outcome: 'error', bytes: 0 },
        });
    return { attempt, close: () => {} };
  }
  const tls = t.tlsServerName ? { t0: tlsStart, t: env.now(), failure: null } : undefined;
  const step = { timeoutMs: env.timeoutMs, now: env.now };
  const x = await exchange(stream, checkRequest(env.checkUrl, keepAlive), 12, step);
  const statusLine =
    x.head.length > 0 ? x.head.toString('latin1').split('\r\n')[0]!.slice(0, 80) : undefined;
  const attempt = finish({
    n,
    address,
    port,
    tcp,
    ...(tls ? { tls } : {}),
    data: { t0: x.t0, t: x.t, failure: x.failure, outcome: x.outcome, bytes: x.bytes },
    ...(statusLine !== undefined ? { statusLine } : {}),
  });
  return {
    attempt,
    close: () => {
      stream.destroy();
      socket.destroy();
    },
  };
}

/** One attempt: connect, (TLS,) first data, answer. */
export async function attemptOnce(
  t: ProbeTransport,
  address: string,
  n: number,
  env: CheckEnv,
): Promise<Attempt> {
  const open = await exchangeStep(t, await connectStep(t, address, n, env), env, false);
  open.close();
  return open.attempt;
}

/**
 * `count` attempts open at the same time, numbered from `first`: every TCP connect first, then every
 * handshake and request at once, each connection kept open (its request asks for keep-alive) until
 * the last has its answer. A censor counting concurrent connections then sees all of them live
 * together, whatever the order their handshakes reach it and however slow this machine is.
 */
export async function attemptsAtOnce(
  t: ProbeTransport,
  address: string,
  first: number,
  count: number,
  env: CheckEnv,
): Promise<Attempt[]> {
  const connected = await Promise.all(
    Array.from({ length: count }, (_, i) => connectStep(t, address, first + i, env)),
  );
  const open = await Promise.all(connected.map((c) => exchangeStep(t, c, env, true)));
  for (const o of open) o.close();
  return open.map((o) => o.attempt);
}

function finish(a: Omit<Attempt, 'kind'>): Attempt {
  return { ...a, kind: attemptKind(a) };
}

/** Other ports tried on the server's address when its own port times out. */
export function otherPorts(port: number): number[] {
  return [443, 80, 22].filter((p) => p !== port).slice(0, 2);
}

async function checkOtherPort(
  address: string,
  port: number,
  env: CheckEnv,
): Promise<TransportCheck['otherPort']> {
  let last: TransportCheck['otherPort'];
  for (const p of otherPorts(port)) {
    const r = env.budget.reserve(1);
    if (!r) break;
    r.take();
    const c = await tcpConnect(address, p, { timeoutMs: env.timeoutMs, now: env.now });
    c.socket?.destroy();
    // A connect or a refusal both come from the address: it is reachable.
    const answered = c.failure === null || c.failure === 'connection_refused';
    last = { port: p, failure: c.failure, answered };
    if (answered) break;
  }
  return last;
}

async function resolveServer(t: ProbeTransport, env: CheckEnv): Promise<DnsEvidence | undefined> {
  if (isIP(t.server.host)) return undefined;
  const r = env.budget.reserve(1);
  if (!r) return undefined;
  r.take();
  const o = { timeoutMs: env.timeoutMs, now: env.now, graceMs: env.dnsGraceMs };
  const lookups = [await env.resolver.lookup(t.server.host, DNS_TYPE.A, o)];
  // An IPv6-only server: ask for AAAA when A gave nothing.
  if (lookups[0]!.addresses.length === 0 && env.budget.reserve(1)?.take())
    lookups.push(await env.resolver.lookup(t.server.host, DNS_TYPE.AAAA, o));
  const addresses = lookups.flatMap((l) => l.addresses);
  const first = new Set(addresses);
  const injected = [
    ...new Set(lookups.flatMap((l) => l.lateAnswers.flatMap((x) => x.addresses))),
  ].filter((x) => !first.has(x));
  return { lookups, addresses, failure: addresses.length ? null : lookups[0]!.failure, injected };
}

/** Checks every transport in turn (never in parallel: residual blocking would mix them up). */
export async function checkTransports(
  transports: readonly ProbeTransport[],
  env: CheckEnv,
): Promise<TransportCheck[]> {
  const partial: Mutable<TransportCheck>[] = [];
  for (const t of transports) {
    env.onProgress?.(`checking ${t.name} at ${formatTarget(t.server)}`);
    const dns = await resolveServer(t, env);
    const address = dns ? dns.addresses[0] : t.server.host;
    const attempts: Attempt[] = [];
    if (address !== undefined) {
      for (let n = 1; n <= env.attempts; n++) {
        await env.sleep(backoffMs(env.backoffBaseMs, n));
        const a = await attemptOnce(t, address, n, env);
        attempts.push(a);
        env.onProgress?.(`  attempt ${n}: ${describeAttempt(a)}`);
        if (a.kind === 'cap' || (a.kind === 'ok' && env.stopAtFirstSuccess)) break;
      }
    }
    partial.push({
      transport: t,
      ...(dns ? { dns } : {}),
      ...(address !== undefined ? { address } : {}),
      attempts,
      verdict: placeholder,
    });
  }
  // A transport that got through is the control for the others' DNS.
  const control = partial.find((c) => c.attempts.some((a) => a.kind === 'ok'));
  for (const c of partial) {
    if (c.dns && control && control.address !== undefined) {
      const d = control.transport.dialers(control.address, {
        timeoutMs: env.timeoutMs,
        ...(env.ca ? { ca: env.ca } : {}),
      });
      c.dns = {
        ...c.dns,
        control: await controlLookup(control.transport.name, d, c.transport.server.host, env),
      };
    }
    const timedOut = c.attempts.length > 0 && c.attempts.every((a) => a.kind === 'tcp-timeout');
    // Every SYN reset: is it the port (an unconditional port reset) or the address?
    const reset =
      c.attempts.length > 0 &&
      c.attempts.every((a) => a.kind === 'tcp-reset' || a.kind === 'tcp-refused');
    if ((timedOut || reset) && c.address !== undefined)
      c.otherPort = await checkOtherPort(c.address, c.transport.server.port, env);
    const real = c.dns?.control?.addresses.find((x) => isIP(x) === 4);
    if (
      c.dns &&
      dnsPoisoned(c.dns) &&
      real !== undefined &&
      !c.attempts.some((a) => a.kind === 'ok')
    )
      c.realAddressAttempt = await attemptOnce(c.transport, real, c.attempts.length + 1, env);
    if (env.throughputUrl && c.address !== undefined && c.attempts.some((a) => a.kind === 'ok'))
      c.throughput = await sampleThroughput(c.transport, c.address, env.throughputUrl, env);
    if (env.concurrency && c.address !== undefined && c.attempts.every((a) => a.kind === 'ok')) {
      c.concurrent = await attemptsAtOnce(
        c.transport,
        c.address,
        c.attempts.length + 1,
        env.concurrency,
        env,
      );
      env.onProgress?.(
        `  ${env.concurrency} at once: ${c.concurrent.filter((a) => a.kind === 'ok').length} ok`,
      );
    }
    c.verdict = transportVerdict(c);
  }
  if (partial.some((c) => downloadStalled(c.throughput))) await recheckAll(partial, env);
  return partial;
}

/** A download that froze (no byte for a while, no end) or could not be made. */
export function downloadStalled(th: Throughput | undefined): boolean {
  return th !== undefined && (th.end === 'stall' || th.failure !== null);
}

/** Ports tried on a stalled address besides those of the key's transports. */
const RECHECK_PORTS = [80, 443, 22] as const;

/**
 * After a stalled download: one fresh attempt through every transport, and one connect to another
 * port of every address whose download stalled (sequential, within the connection budget).
 */
async function recheckAll(checks: Mutable<TransportCheck>[], env: CheckEnv): Promise<void> {
  const probed = new Set<string>();
  for (const c of checks) {
    if (c.address === undefined) continue;
    const address = c.address;
    const n = c.attempts.length + (c.concurrent?.length ?? 0) + 1;
    const attempt = await attemptOnce(c.transport, address, n, env);
    env.onProgress?.(`  again after a stalled download: ${describeAttempt(attempt)}`);
    let otherPort: Recheck['otherPort'];
    const stalledHere = checks.some((x) => x.address === address && downloadStalled(x.throughput));
    if (stalledHere && !probed.has(address)) {
      probed.add(address);
      const used = new Set(
        checks.filter((x) => x.address === address).map((x) => x.transport.server.port),
      );
      const port = RECHECK_PORTS.find((p) => !used.has(p));
      const r = port !== undefined ? env.budget.reserve(1) : undefined;
      if (port !== undefined && r) {
        r.take();
        const t = await tcpConnect(address, port, { timeoutMs: env.timeoutMs, now: env.now });
        t.socket?.destroy();
        otherPort = {
          port,
          failure: t.failure,
          answered: t.failure === null || t.failure === 'connection_refused',
        };
      }
    }
    c.recheck = { attempt, ...(otherPort ? { otherPort } : {}) };
  }
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
const placeholder: TransportVerdict = {
  status: 'blocked',
  technique: 'unknown',
  residual: false,
  okAttempts: 0,
  explanation: '',
};

async function controlLookup(
  via: string,
  d: ReturnType<ProbeTransport['dialers']>,
  host: string,
  env: CheckEnv,
): Promise<NonNullable<DnsEvidence['control']>> {
  const step = { timeoutMs: env.timeoutMs, now: env.now };
  let last: DnsLookup | undefined;
  const resolvers: Resolver[] = [];
  if (d.packet) resolvers.push(tunnelUdpResolver(d.packet, env.controlResolver));
  resolvers.push(new StreamResolver(d.stream, env.controlResolver, ' (tunnel)'));
  for (const r of resolvers) {
    const res = env.budget.reserve(1);
    if (!res) break;
    res.take();
    last = await r.lookup(host, DNS_TYPE.A, step);
    if (last.failure === null || last.rcode !== undefined) break; // an answer, even NXDOMAIN
  }
  return {
    via,
    addresses: last?.addresses ?? [],
    failure: last?.failure ?? 'unknown_failure: connection cap reached (--max-connections)',
  };
}

/** True when the local answer cannot be right: it differs from the control's, or raced it. */
export function dnsPoisoned(d: DnsEvidence): boolean {
  if (d.injected.length > 0) return true;
  const c = d.control;
  if (!c || c.addresses.length === 0) return false;
  if (d.addresses.length === 0) return true;
  return !d.addresses.some((a) => c.addresses.includes(a));
}

const TECHNIQUE_OF: Partial<Record<AttemptKind, Technique>> = {
  'tcp-refused': 'refused',
  'tcp-reset': 'refused',
  'tcp-unreachable': 'unreachable',
  'tls-reset': 'tls-reset',
  'tls-timeout': 'tls-drop',
  'tls-cert': 'tls-cert',
  'data-timeout': 'data-drop',
  'data-reset': 'data-reset',
  'data-eof': 'closed',
  'bad-answer': 'bad-answer',
  cap: 'cap',
};

/** A transport's evidence, before its verdict. */
type Check = Omit<TransportCheck, 'verdict'>;

/** What one transport's attempts show, before any words: the case, and the verdict's fields. */
export type Classified = Omit<TransportVerdict, 'explanation'> & {
  readonly finding:
    | { readonly case: 'no-address' }
    | { readonly case: 'ok'; readonly throttled: boolean }
    | { readonly case: 'dns-poisoned' }
    | { readonly case: 'no-attempt' }
    | { readonly case: 'failed'; readonly first: Attempt };
};

/** Throughput that fell under a quarter of its start after a knee: throttling. */
function throttled(c: Check): boolean {
  const th = c.throughput;
  return th !== undefined && th.ratio !== null && th.ratio < 0.25 && th.kneeBytes !== null;
}

/** The status, technique and residual blocking that one transport's attempts show. */
export function classifyTransport(c: Check): Classified {
  const okAttempts = c.attempts.filter((a) => a.kind === 'ok').length;
  if (c.dns && c.address === undefined) {
    const ctl = c.dns.control;
    return {
      finding: { case: 'no-address' },
      status: 'blocked',
      technique: ctl && ctl.addresses.length > 0 ? 'dns' : 'unknown',
      residual: false,
      okAttempts: 0,
    };
  }
  if (okAttempts === c.attempts.length && okAttempts > 0) {
    const slow = throttled(c);
    return {
      finding: { case: 'ok', throttled: slow },
      status: 'ok',
      technique: slow ? 'throttled' : 'none',
      residual: false,
      okAttempts,
    };
  }
  const status = okAttempts > 0 ? 'partial' : 'blocked';
  const firstFail = c.attempts.findIndex((a) => a.kind !== 'ok');
  const first = c.attempts[firstFail];
  const later = c.attempts.slice(firstFail + 1);
  const residual =
    first !== undefined &&
    !first.kind.startsWith('tcp-') &&
    later.some((a) => a.kind === 'tcp-timeout') &&
    later.every((a) => a.kind !== 'ok');
  if (c.dns && dnsPoisoned(c.dns) && okAttempts === 0)
    return { finding: { case: 'dns-poisoned' }, status, technique: 'dns', residual, okAttempts };
  if (!first)
    return {
      finding: { case: 'no-attempt' },
      status: 'blocked',
      technique: 'unknown',
      residual: false,
      okAttempts,
    };
  const technique: Technique =
    first.kind === 'tcp-timeout'
      ? c.otherPort?.answered
        ? 'port'
        : 'ip'
      : (TECHNIQUE_OF[first.kind] ?? 'unknown');
  return { finding: { case: 'failed', first }, status, technique, residual, okAttempts };
}

/** The verdict for one transport from its evidence (pure): its classification, and its sentence. */
export function transportVerdict(c: Check): TransportVerdict {
  const k = classifyTransport(c);
  return {
    status: k.status,
    technique: k.technique,
    residual: k.residual,
    okAttempts: k.okAttempts,
    explanation: explainTransport(c, k),
  };
}

/** The sentence for a classification, naming what was seen. */
function explainTransport(c: Check, k: Classified): string {
  const t = c.transport;
  const f = k.finding;
  switch (f.case) {
    case 'no-address': {
      const ctl = c.dns?.control;
      return (
        `the local resolver gives no address for ${t.server.host} (${c.dns?.failure})` +
        (ctl && ctl.addresses.length > 0
          ? `, while through ${ctl.via} it is ${ctl.addresses.join(' ')}: DNS blocking`
          : '')
      );
    }
    case 'ok': {
      const th = c.throughput;
      return f.throttled && th && th.ratio !== null && th.kneeBytes !== null
        ? `gets through, but throttled: the rate fell to ${Math.round(th.ratio * 100)}% of its start after about ${mib(th.kneeBytes)}`
        : `gets through (${k.okAttempts}/${c.attempts.length} attempts)`;
    }
    case 'dns-poisoned':
      return dnsPoisonedExplanation(c);
    case 'no-attempt':
      return 'no attempt could be made';
    case 'failed': {
      let explanation = failureExplanation(c, f.first, k.residual);
      if (k.residual)
        explanation +=
          '; then residual blocking: later connections to the same server port time out at the connect (the client-server-port triple is null-routed)';
      if (k.status === 'partial')
        explanation = `gets through ${k.okAttempts}/${c.attempts.length} times; the others: ${explanation}`;
      return explanation;
    }
  }
}

function dnsPoisonedExplanation(c: Check): string {
  const dns = c.dns!;
  const ctl = dns.control;
  const real = c.realAddressAttempt;
  return (
    `DNS poisoned: the local resolver answers ${dns.addresses.join(' ') || dns.failure} for ${c.transport.server.host}` +
    (ctl && ctl.addresses.length > 0
      ? `, through ${ctl.via} it is ${ctl.addresses.join(' ')}`
      : '') +
    (dns.injected.length > 0
      ? `; extra answers raced the first (${dns.injected.join(' ')}): on-path injection`
      : '') +
    (real
      ? real.kind === 'ok'
        ? `; with the real address ${real.address} it gets through: put the address in the key`
        : `; with the real address ${real.address} it fails too (${describeAttempt(real)})`
      : '')
  );
}

/** What the first failed attempt shows, in words. */
function failureExplanation(c: Check, first: Attempt, residual: boolean): string {
  const t = c.transport;
  const where = `${c.address ?? t.server.host}:${t.server.port}`;
  switch (first.kind) {
    case 'tcp-timeout': {
      const o = c.otherPort;
      return o?.answered
        ? `port blocked: connections to ${where} time out while port ${o.port} of the same address answers (a port block, or the residual of an earlier block that lifts within minutes)`
        : `IP blocked: connections to ${where} time out${o ? `, and port ${o.port} of the address is silent too` : ''}: nothing from the address gets back (null route)`;
    }
    case 'tcp-refused':
    case 'tcp-reset':
      return `refused: a reset answers the SYN to ${where} (no server on that port, or a censor resetting SYNs, as on port 443 on 2025-08-20)`;
    case 'tcp-unreachable':
      return `unreachable: the network reports no route to ${where} (${first.tcp.failure})`;
    case 'tls-reset':
      return `reset after the ClientHello: TCP connects, the TLS handshake is reset (SNI filtering of '${t.tlsServerName}', or TLS blocked to the address)`;
    case 'tls-timeout':
      return `the ClientHello goes unanswered: TCP connects, the handshake times out (dropped: an SNI allowlist, or TLS blocked to the address)`;
    case 'tls-cert':
      return `the server's certificate does not verify (${first.tls?.failure}): a wrong pin or CA in the key, or a middlebox in the way`;
    case 'data-timeout':
      return residual
        ? 'silent drop after the first data packet: connects, sends, then nothing comes back (as fully-encrypted-traffic blocking does)'
        : 'silent drop after the first data packet: connects, sends, then nothing comes back (fully-encrypted-traffic blocking, or a wrong key: servers never answer unauthenticated data)';
    case 'data-reset':
      return `reset after the first data packet (${first.data?.failure})`;
    case 'data-eof':
      return `the server closes without answering: the key may be wrong, or the server cannot reach the check URL`;
    case 'bad-answer':
      return `an answer came back that is not HTTP ('${first.statusLine ?? ''}'): a wrong key, or something answering in the server's place`;
    case 'cap':
      return 'not checked: the connection cap (--max-connections) was reached';
    default:
      return `failed: ${first.tcp.failure ?? first.tls?.failure ?? first.data?.failure}`;
  }
}

function mib(n: number): string {
  return n >= 1024 * 1024 ? `${(n / (1024 * 1024)).toFixed(1)} MiB` : `${Math.round(n / 1024)} KiB`;
}

function formatTarget(t: Target): string {
  return isIP(t.host) === 6 ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
}

function ms(s: StepRecord): string {
  return `${Math.round(s.t - s.t0)} ms`;
}

/** One line for an attempt: each step's result and time. */
export function describeAttempt(a: Attempt): string {
  const parts = [
    a.tcp.failure === null
      ? `connect ok in ${ms(a.tcp)}`
      : `connect: ${a.tcp.failure} after ${ms(a.tcp)}`,
  ];
  if (a.tls)
    parts.push(
      a.tls.failure === null
        ? `TLS ok in ${ms(a.tls)}`
        : `TLS: ${a.tls.failure} after ${ms(a.tls)}`,
    );
  if (a.data) {
    const d = a.data;
    parts.push(
      d.outcome === 'data'
        ? `answer in ${ms(d)}${a.statusLine ? ` ('${a.statusLine}')` : ''}`
        : d.outcome === 'timeout'
          ? `first data: no answer in ${ms(d)}`
          : `first data: ${d.failure} after ${ms(d)}`,
    );
  }
  return parts.join('; ');
}

interface Sample {
  readonly t: number;
  readonly bytes: number;
}

/** Width of the windows a transfer's rate is measured over. */
export const THROUGHPUT_WINDOW_MS = 100;

/**
 * Rates early and late in a transfer (pure), over {@link THROUGHPUT_WINDOW_MS} windows: the best
 * window in the first 30% of the time against the mean of the last 30%. A throttle that starts
 * after some bytes (§16) shows as a fall to a fraction of the early rate, and the knee is where the
 * rate last stood at half the early rate. Transfers under a second are too short to tell.
 */
export function analyzeThroughput(
  samples: readonly Sample[],
  t0: number,
): Omit<Throughput, 'failure'> {
  const last = samples[samples.length - 1];
  const bytes = last?.bytes ?? 0;
  const seconds = last ? (last.t - t0) / 1000 : 0;
  const base = { bytes, seconds, bytesPerSecond: seconds > 0 ? bytes / seconds : 0 };
  const windows = Math.floor((seconds * 1000) / THROUGHPUT_WINDOW_MS);
  if (!last || seconds < 1 || windows < 10) return { ...base, ratio: null, kneeBytes: null };
  const cum: number[] = [];
  let k = 0;
  let b = 0;
  for (let w = 0; w <= windows; w++) {
    const until = t0 + w * THROUGHPUT_WINDOW_MS;
    while (k < samples.length && samples[k]!.t <= until) b = samples[k++]!.bytes;
    cum.push(b);
  }
  const rates = Array.from({ length: windows }, (_, w) => cum[w + 1]! - cum[w]!);
  const edge = Math.max(1, Math.floor(windows * 0.3));
  const early = Math.max(...rates.slice(0, edge));
  const tail = rates.slice(windows - edge);
  const late = tail.reduce((x, y) => x + y, 0) / tail.length;
  if (early <= 0) return { ...base, ratio: null, kneeBytes: null };
  let knee: number | null = null;
  for (let w = 0; w < windows - edge; w++) if (rates[w]! >= early / 2) knee = cum[w + 1]!;
  return { ...base, ratio: late / early, kneeBytes: knee };
}

/** Floor of {@link stallSilenceMs}: shorter silences happen on healthy, loaded paths. */
export const MIN_STALL_SILENCE_MS = 2000;

/** Silence after which a download counts as stalled: the step timeout, at least 2 s. */
export function stallSilenceMs(timeoutMs: number): number {
  return Math.max(timeoutMs, MIN_STALL_SILENCE_MS);
}

/**
 * Downloads `url` through the transport (bounded in bytes and time), sampling the rate. A download
 * that stays silent for {@link stallSilenceMs} ends there, as stalled: waiting longer tells nothing
 * more, and a volume ban is then checked sooner.
 */
async function sampleThroughput(
  t: ProbeTransport,
  address: string,
  url: URL,
  env: CheckEnv,
): Promise<Throughput> {
  const r = env.budget.reserve(1);
  const empty = { bytes: 0, seconds: 0, bytesPerSecond: 0, ratio: null, kneeBytes: null };
  if (!r)
    return { ...empty, failure: 'unknown_failure: connection cap reached (--max-connections)' };
  r.take();
  const d = t.dialers(address, { timeoutMs: env.timeoutMs, ...(env.ca ? { ca: env.ca } : {}) });
  let stream: Duplex;
  try {
    stream = await dialWithin(d.stream, targetOf(url), env.timeoutMs);
  } catch (err) {
    return { ...empty, failure: dialFailure(err) };
  }
  const t0 = env.now();
  return new Promise((resolve) => {
    const samples: Sample[] = [];
    let bytes = 0;
    let done = false;
    const end = (failure: Failure | null, how: NonNullable<Throughput['end']>): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearTimeout(quietTimer);
      stream.destroy();
      const lastT = samples[samples.length - 1]?.t ?? t0;
      resolve({
        ...analyzeThroughput(samples, t0),
        failure,
        end: how,
        silentMs: env.now() - lastT,
      });
    };
    const timer = setTimeout(() => end(null, 'timer'), env.throughputMaxMs);
    // Silence is checked by one timer that re-arms itself for the rest of the window, rather than
    // by a timer per chunk.
    const quietMs = stallSilenceMs(env.timeoutMs);
    let lastAt = t0;
    const checkQuiet = (): void => {
      if (done) return;
      const quiet = env.now() - lastAt;
      if (quiet >= quietMs) end(null, 'stall');
      else quietTimer = setTimeout(checkQuiet, quietMs - quiet);
    };
    let quietTimer = setTimeout(checkQuiet, quietMs);
    stream.on('close', () => clearTimeout(quietTimer));
    stream.on('data', (c: Buffer) => {
      bytes += c.length;
      const now = env.now();
      lastAt = now;
      const prev = samples[samples.length - 1];
      // One sample per 10 ms keeps the list short on fast links.
      if (prev && now - prev.t < 10) samples[samples.length - 1] = { t: now, bytes };
      else samples.push({ t: now, bytes });
      if (bytes >= env.throughputMaxBytes) end(null, 'bytes');
    });
    stream.on('end', () => end(null, 'eof'));
    stream.on('error', (err) => end(bytes > 0 ? null : dialFailure(err), 'error'));
    stream.write(checkRequest(url));
  });
}
