/**
 * Web Connectivity (ooni/spec `nettests/ts-017-web-connectivity.md`) with Ladder's tunnel as the
 * control. For one URL:
 *
 * 1. resolve the name with the local resolver (A and AAAA, UDP, as the system would);
 * 2. TCP-connect to each address (at most {@link MAX_ENDPOINTS}), TLS-handshake with the name as SNI
 *    on each for https, and send one GET over the first that got through (no redirects followed:
 *    `agent` is "agent");
 * 3. meanwhile, through the tunnel: resolve the name with the control resolver and GET the URL from
 *    the address it gave; then check, through the tunnel, each endpoint where the probe failed;
 * 4. compare (web-analysis.ts) and write the measurement in OONI's format.
 *
 * Every connection is taken from a reservation of the run's connection cap, so a measurement is
 * whole or not made.
 * @module
 */
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import { DNS_TYPE } from '../codec/dns.js';
import type { StreamDialer } from '../transport/types.js';
import type { DnsLookup, Resolver } from './dns-client.js';
import type { Failure } from './failure.js';
import type { Reservation } from './manners.js';
import {
  dialFailure,
  dialWithin,
  exchange,
  extractTitle,
  httpGet,
  tcpConnect,
  tlsHandshake,
  type HttpResult,
  type TcpConnectResult,
  type TlsResult,
} from './ops.js';
import {
  endpoint,
  measurement,
  queryEntry,
  requestEntry,
  secondsSince,
  tcpConnectEntry,
  tlsEntry,
} from './ooni.js';
import { analyzeWeb, type ControlSide, type HttpSummary, type WebVerdict } from './web-analysis.js';

/** Addresses of one name that the probe connects to. */
export const MAX_ENDPOINTS = 4;
/**
 * Connections one URL may use: 2 lookups, the endpoints, 2 control lookups over each of (at most) 2
 * control resolvers, the control GET, and one control check per endpoint.
 */
export const CONNECTIONS_PER_URL = 2 + MAX_ENDPOINTS + 4 + 1 + MAX_ENDPOINTS;
export const TEST_VERSION = '0.1.0';

/** The uncensored vantage point: Ladder's tunnel. */
export interface Control {
  /** For reports: the transport the control runs through. */
  readonly name: string;
  /** Tried in order until one answers (UDP through the tunnel, then DNS over TCP through it). */
  readonly resolvers: readonly Resolver[];
  readonly dialer: StreamDialer;
}

export interface WebEnv {
  readonly now: () => number;
  readonly timeoutMs: number;
  readonly resolver: Resolver;
  /** Undefined when no transport got through: `control_failure` is set and nothing is concluded. */
  readonly control: Control | undefined;
  readonly controlFailure?: string;
  readonly extraCa?: readonly string[];
  readonly maxBodyBytes: number;
  /** How long the local resolver keeps listening for injected extra answers. */
  readonly dnsGraceMs: number;
  readonly testStartTime: Date;
}

export interface WebResult {
  readonly input: string;
  readonly verdict: WebVerdict;
  /** One line for the table: what failed, or where the page differed. */
  readonly detail: string;
  readonly json: Record<string, unknown>;
}

interface ControlHttp {
  readonly failure: Failure | null;
  readonly summary?: HttpSummary;
  readonly headers: Record<string, string>;
}

/** An http(s) URL the probe can measure, or a message naming what is wrong with it. */
export function checkProbeUrl(input: string): URL | string {
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    return `'${input}' is not a URL (write it with its scheme, e.g. https://example.org/)`;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    return `'${input}': only http:// and https:// URLs can be measured`;
  if (!url.hostname) return `'${input}' has no host`;
  return url;
}

function hostOf(url: URL): string {
  return url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
}

function portOf(url: URL): number {
  return url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
}

function summarize(h: HttpResult): HttpSummary | undefined {
  if (h.status === undefined || h.failure !== null) return undefined;
  return {
    status: h.status,
    bodyLength: h.body.length,
    headerNames: h.headersList.map(([k]) => k),
    title: extractTitle(h.body),
  };
}

const CAP_FAILURE: Failure = 'unknown_failure: connection cap reached (--max-connections)';

/** Measures one URL. */
export async function measureUrl(
  input: string,
  env: WebEnv,
  budget: Reservation,
): Promise<WebResult> {
  const started = new Date();
  const t0 = env.now();
  const url = checkProbeUrl(input);
  if (typeof url === 'string') throw new Error(url);
  const scheme = url.protocol === 'https:' ? 'https' : 'http';
  const host = hostOf(url);
  const port = portOf(url);
  const hostIsAddress = isIP(host) !== 0;

  // 1. Local DNS.
  const { lookups, addresses, dnsFailure, endpoints } = hostIsAddress
    ? { lookups: [], addresses: [host], dnsFailure: null, endpoints: [host] }
    : await localDns(host, env, budget);

  // 3a. The control's lookups and GET start now, in parallel with the probe's connects.
  const control = env.control;
  const controlView = control
    ? controlFetch(control, url, host, hostIsAddress, env, budget)
    : undefined;

  // 2. Connects, handshakes, one GET.
  const { connects, handshakes, usable, http, httpFailure, failedStep } = await fetchDirect(
    url,
    endpoints,
    dnsFailure,
    env,
    budget,
  );

  // 3b. The control's view of the endpoints where the probe failed.
  const failedEndpoints = connects.filter(
    (c) => c.failure !== null || (scheme === 'https' && handshakes.get(c.ip)?.failure),
  );
  const view = await controlView;
  const cDns = view?.dns;
  const { controlEndpoints, controlTcp, controlTls } = control
    ? await controlConnects(control, failedEndpoints, url, env, budget)
    : { controlEndpoints: {}, controlTcp: {}, controlTls: {} };
  budget.release();

  const controlSide = controlSideOf(env, view, controlEndpoints);
  const probeResponse = http ? summarize(http) : undefined;
  const verdict = analyzeWeb(
    {
      scheme,
      dnsFailure,
      addresses,
      tcp: connects.map((c) => ({ ip: c.ip, port, failure: c.failure })),
      tls: [...handshakes.entries()].map(([ip, h]) => ({ ip, port, failure: h.failure })),
      httpFailure,
      ...(probeResponse ? { response: probeResponse } : {}),
    },
    controlSide,
    hostIsAddress,
  );

  const entries = ooniEntries({ lookups, connects, handshakes, usable, http }, url, t0);
  const testKeys = {
    agent: 'agent',
    client_resolver: env.resolver.address,
    retries: null,
    socksproxy: null,
    ...ooniTestEntries(entries),
    control: control ? controlKeys(controlTcp, controlTls, view) : {},
    control_failure: controlSide.failure,
    dns_experiment_failure: hostIsAddress ? null : dnsFailure,
    http_experiment_failure: httpFailure,
    x_control_transport: control?.name ?? null,
    ...verdict,
  };
  const json = webMeasurement(input, env, started, t0, testKeys);
  return {
    input,
    verdict,
    detail: describe(
      verdict,
      dnsFailure,
      `${failedStep}: ${httpFailure}`,
      addresses,
      cDns?.addresses ?? [],
      http,
    ),
    json,
  };
}

/** The probe's own steps under OONI's key names, in OONI's order. */
function ooniTestEntries(e: ReturnType<typeof ooniEntries>): object {
  return {
    queries: e.queries,
    tcp_connect: e.tcpEntries,
    tls_handshakes: e.tlsEntries,
    requests: e.requests,
  };
}

/** The control's side of the verdict: what it resolved, reached and fetched. */
function controlSideOf(
  env: WebEnv,
  view: ControlView | undefined,
  endpoints: ControlSide['endpoints'],
): ControlSide {
  const cHttp = view?.http;
  return {
    failure: env.control ? null : (env.controlFailure ?? 'no working transport for the control'),
    dnsFailure: view?.dns.failure ?? null,
    addresses: view?.dns.addresses ?? [],
    endpoints,
    httpFailure: cHttp?.failure ?? null,
    ...(cHttp?.summary ? { response: cHttp.summary } : {}),
  };
}

/** The OONI measurement of one URL around its test keys. */
function webMeasurement(
  input: string,
  env: WebEnv,
  started: Date,
  t0: number,
  testKeys: object,
): ReturnType<typeof measurement> {
  const control = env.control;
  return measurement({
    testName: 'web_connectivity',
    testVersion: TEST_VERSION,
    input,
    testStartTime: env.testStartTime,
    measurementStartTime: started,
    runtimeS: secondsSince(t0, env.now()),
    resolverIp: env.resolver.address.replace(/:\d+$/, '').replace(/^\[|\]$/g, ''),
    testHelper: control ? { address: `ladder tunnel: ${control.name}`, type: 'ladder' } : null,
    annotations: {},
    testKeys,
  });
}

/** What the control sees of a URL: its lookups and its GET (step 3a). */
interface ControlView {
  dns: { failure: Failure | null; addresses: string[]; answered: boolean };
  http: ControlHttp;
}

/** Step 3a: the control's lookups, then its GET unless the name has no address there. */
async function controlFetch(
  control: Control,
  url: URL,
  host: string,
  hostIsAddress: boolean,
  env: WebEnv,
  budget: Reservation,
): Promise<ControlView> {
  const dns = await controlLookup(control, host, hostIsAddress, env, budget);
  // The control resolver says the name has no address: there is no page to fetch.
  if (dns.addresses.length === 0 && dns.answered)
    return { dns, http: { failure: dns.failure ?? 'dns_no_answer', headers: {} } };
  return { dns, http: await controlGet(control, url, dns.addresses, env, budget) };
}

/** Step 3b: the control connects (and handshakes) to each endpoint where the probe failed. */
async function controlConnects(
  control: Control,
  failed: readonly { ip: string }[],
  url: URL,
  env: WebEnv,
  budget: Reservation,
): Promise<{
  controlEndpoints: Record<string, { ok: boolean; failure: Failure | null }>;
  controlTcp: Record<string, object>;
  controlTls: Record<string, object>;
}> {
  const scheme = url.protocol === 'https:' ? 'https' : 'http';
  const host = hostOf(url);
  const port = portOf(url);
  const controlEndpoints: Record<string, { ok: boolean; failure: Failure | null }> = {};
  const controlTcp: Record<string, object> = {};
  const controlTls: Record<string, object> = {};
  await Promise.all(
    failed.map(async (c) => {
      const key = endpoint(c.ip, port);
      const r = budget.take()
        ? await controlEndpoint(control, c.ip, port, scheme, host, url, env)
        : { tcp: { ok: false, failure: CAP_FAILURE }, tls: undefined };
      controlEndpoints[key] = r.tcp; // reached: a TLS answer counts even if it did not verify
      controlTcp[key] = { status: r.tcp.ok, failure: r.tcp.failure };
      if (r.tls) controlTls[key] = { server_name: host, status: r.tls.ok, failure: r.tls.failure };
    }),
  );
  return { controlEndpoints, controlTcp, controlTls };
}

/** The measurement's `control` key, as OONI's web_connectivity writes it. */
function controlKeys(
  controlTcp: Record<string, object>,
  controlTls: Record<string, object>,
  view: ControlView | undefined,
): object {
  const cDns = view?.dns;
  const cHttp = view?.http;
  return {
    tcp_connect: controlTcp,
    tls_handshake: controlTls,
    http_request: {
      body_length: cHttp?.summary?.bodyLength ?? -1,
      failure: cHttp?.failure ?? null,
      title: cHttp?.summary?.title ?? '',
      headers: cHttp?.headers ?? {},
      status_code: cHttp?.summary?.status ?? -1,
    },
    dns: { failure: cDns?.failure ?? null, addrs: cDns?.addresses ?? [] },
  };
}

/** Step 1: the local resolver's A and AAAA answers, and the endpoints to try (IPv4 first). */
async function localDns(
  host: string,
  env: WebEnv,
  budget: Reservation,
): Promise<{
  lookups: DnsLookup[];
  addresses: string[];
  dnsFailure: Failure | null;
  endpoints: string[];
}> {
  const step = { timeoutMs: env.timeoutMs, now: env.now };
  const lookups = await Promise.all(
    [DNS_TYPE.A, DNS_TYPE.AAAA].map((qtype) =>
      budget.take()
        ? env.resolver.lookup(host, qtype, { ...step, graceMs: env.dnsGraceMs })
        : Promise.resolve(capLookup(host, qtype, env)),
    ),
  );
  const addresses = [...new Set(lookups.flatMap((l) => l.addresses))];
  const dnsFailure = addresses.length === 0 ? (lookups[0]!.failure ?? lookups[1]!.failure) : null;
  const endpoints = [
    ...addresses.filter((a) => isIP(a) === 4),
    ...addresses.filter((a) => isIP(a) === 6),
  ].slice(0, MAX_ENDPOINTS);
  return { lookups, addresses, dnsFailure, endpoints };
}

interface DirectFetch {
  connects: TcpConnectResult[];
  handshakes: Map<string, TlsResult>;
  /** The connection the GET went over. */
  usable: TcpConnectResult | undefined;
  http: HttpResult | undefined;
  httpFailure: Failure | null;
  /** The step that failed, for the detail line. */
  failedStep: string;
}

/** Step 2: connects to every endpoint, TLS handshakes (https), and one GET over the first usable. */
async function fetchDirect(
  url: URL,
  endpoints: readonly string[],
  dnsFailure: Failure | null,
  env: WebEnv,
  budget: Reservation,
): Promise<DirectFetch> {
  const scheme = url.protocol === 'https:' ? 'https' : 'http';
  const host = hostOf(url);
  const port = portOf(url);
  const step = { timeoutMs: env.timeoutMs, now: env.now };
  const connects: TcpConnectResult[] = await Promise.all(
    endpoints.map((ip) =>
      budget.take()
        ? tcpConnect(ip, port, step)
        : Promise.resolve({ ip, port, t0: env.now(), t: env.now(), failure: CAP_FAILURE }),
    ),
  );
  const handshakes = new Map<string, TlsResult>();
  if (scheme === 'https')
    await Promise.all(
      connects
        .filter((c) => c.socket)
        .map(async (c) => {
          const h = await tlsHandshake(c.socket!, {
            ...step,
            serverName: host,
            ...(env.extraCa ? { extraCa: env.extraCa } : {}),
          });
          handshakes.set(c.ip, h);
        }),
    );
  const usable = connects.find((c) =>
    scheme === 'https' ? handshakes.get(c.ip)?.socket !== undefined : c.socket !== undefined,
  );
  let http: HttpResult | undefined;
  if (usable) {
    const stream: Duplex = scheme === 'https' ? handshakes.get(usable.ip)!.socket! : usable.socket!;
    http = await httpGet(stream, url, { ...step, maxBodyBytes: env.maxBodyBytes });
  }
  for (const c of connects) if (c !== usable) c.socket?.destroy();
  for (const [ip, h] of handshakes) if (ip !== usable?.ip) h.socket?.destroy();
  let httpFailure: Failure | null;
  let failedStep: string;
  if (http) {
    httpFailure = http.failure;
    failedStep = 'HTTP GET';
  } else if (endpoints.length === 0) {
    httpFailure = dnsFailure ?? 'dns_no_answer';
    failedStep = 'DNS';
  } else {
    const tlsFailed = [...handshakes.values()].find((h) => h.failure !== null);
    failedStep = tlsFailed ? 'TLS handshake' : 'TCP connect';
    httpFailure =
      tlsFailed?.failure ??
      connects.find((c) => c.failure !== null)?.failure ??
      'unknown_failure: no connection';
  }

  return { connects, handshakes, usable, http, httpFailure, failedStep };
}

/** The OONI entries of the probe's own steps, one transaction id per connection. */
function ooniEntries(
  m: Pick<DirectFetch, 'connects' | 'handshakes' | 'usable' | 'http'> & { lookups: DnsLookup[] },
  url: URL,
  t0: number,
): { queries: object[]; tcpEntries: object[]; tlsEntries: object[]; requests: object[] } {
  const { lookups, connects, handshakes, usable, http } = m;
  const host = hostOf(url);
  const port = portOf(url);
  let tx = 0;
  const tags = ['classic', 'depth=0'];
  const queries = lookups.map((q) => queryEntry(q, t0, tags, ++tx));
  const tcpEntries: object[] = [];
  const tlsEntries: object[] = [];
  const requests: object[] = [];
  for (const c of connects) {
    const id = ++tx;
    tcpEntries.push(tcpConnectEntry(c, t0, tags, id));
    const h = handshakes.get(c.ip);
    if (h) tlsEntries.push(tlsEntry(h, endpoint(c.ip, port), host, t0, tags, id));
    if (c === usable && http)
      requests.push(
        requestEntry(url.href, endpoint(c.ip, port), http, h?.negotiatedProtocol, t0, tags, id),
      );
  }
  return { queries, tcpEntries, tlsEntries, requests };
}

function capLookup(host: string, qtype: number, env: WebEnv): DnsLookup {
  const t = env.now();
  return {
    hostname: host,
    qtype,
    engine: env.resolver.engine,
    resolverAddress: env.resolver.address,
    t0: t,
    t,
    failure: CAP_FAILURE,
    rcode: undefined,
    addresses: [],
    answers: [],
    raw: undefined,
    lateAnswers: [],
  };
}

async function controlLookup(
  control: Control,
  host: string,
  hostIsAddress: boolean,
  env: WebEnv,
  budget: Reservation,
): Promise<{ failure: Failure | null; addresses: string[]; answered: boolean }> {
  if (hostIsAddress) return { failure: null, addresses: [host], answered: true };
  const step = { timeoutMs: env.timeoutMs, now: env.now };
  const one = async (qtype: number): Promise<DnsLookup> => {
    let last = capLookup(host, qtype, env);
    for (const r of control.resolvers) {
      if (!budget.take()) break;
      last = await r.lookup(host, qtype, step);
      if (last.rcode !== undefined) break; // an answer, even NXDOMAIN: no need for the next resolver
    }
    return last;
  };
  const results = await Promise.all([DNS_TYPE.A, DNS_TYPE.AAAA].map(one));
  const addresses = [...new Set(results.flatMap((r) => r.addresses))];
  return {
    failure: addresses.length > 0 ? null : results[0]!.failure,
    addresses,
    answered: results.some((r) => r.rcode !== undefined),
  };
}

/**
 * GET the URL through the tunnel: the page the site serves to the uncensored side. It goes to the
 * address the control resolved (so the control's DNS and HTTP views agree, and the server needs no
 * resolver of its own), with the URL's name as Host and SNI; by name only if the control's lookup
 * found nothing.
 */
async function controlGet(
  control: Control,
  url: URL,
  addresses: readonly string[],
  env: WebEnv,
  budget: Reservation,
): Promise<ControlHttp> {
  if (!budget.take()) return { failure: CAP_FAILURE, headers: {} };
  const step = { timeoutMs: env.timeoutMs, now: env.now };
  const to = addresses.find((a) => isIP(a) === 4) ?? addresses[0] ?? hostOf(url);
  let stream: Duplex;
  try {
    stream = await dialWithin(control.dialer, { host: to, port: portOf(url) }, env.timeoutMs);
  } catch (err) {
    return { failure: dialFailure(err), headers: {} };
  }
  if (url.protocol === 'https:') {
    const h = await tlsHandshake(stream, {
      ...step,
      serverName: hostOf(url),
      ...(env.extraCa ? { extraCa: env.extraCa } : {}),
    });
    if (!h.socket) return { failure: h.failure, headers: {} };
    stream = h.socket;
  }
  const r = await httpGet(stream, url, { ...step, maxBodyBytes: env.maxBodyBytes });
  const headers: Record<string, string> = {};
  for (const [k, v] of r.headersList) if (!(k in headers)) headers[k] = v;
  const summary = summarize(r);
  return { failure: r.failure, headers, ...(summary ? { summary } : {}) };
}

/**
 * Can the tunnel's side reach `ip:port`? The tunnel gives no connect feedback (Shadowsocks dials
 * "at once"), so reaching means an answer: a TLS handshake for https, any reply to a GET for http.
 */
async function controlEndpoint(
  control: Control,
  ip: string,
  port: number,
  scheme: 'http' | 'https',
  host: string,
  url: URL,
  env: WebEnv,
): Promise<{
  tcp: { ok: boolean; failure: Failure | null };
  tls: { ok: boolean; failure: Failure | null } | undefined;
}> {
  const step = { timeoutMs: env.timeoutMs, now: env.now };
  let stream: Duplex;
  try {
    stream = await dialWithin(control.dialer, { host: ip, port }, env.timeoutMs);
  } catch (err) {
    return { tcp: { ok: false, failure: dialFailure(err) }, tls: undefined };
  }
  if (scheme === 'https') {
    const h = await tlsHandshake(stream, {
      ...step,
      serverName: host,
      ...(env.extraCa ? { extraCa: env.extraCa } : {}),
    });
    h.socket?.destroy();
    // A certificate problem still proves the endpoint answered.
    const answered = h.failure === null || String(h.failure).startsWith('ssl_');
    return {
      tcp: { ok: answered, failure: answered ? null : h.failure },
      tls: { ok: h.failure === null, failure: h.failure },
    };
  }
  const request = Buffer.from(
    `GET ${url.pathname || '/'}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nConnection: close\r\n\r\n`,
    'latin1',
  );
  const r = await exchange(stream, request, 1, step);
  stream.destroy();
  return { tcp: { ok: r.outcome === 'data', failure: r.failure }, tls: undefined };
}

function describe(
  v: WebVerdict,
  dnsFailure: Failure | null,
  failure: string,
  addresses: readonly string[],
  controlAddresses: readonly string[],
  http: HttpResult | undefined,
): string {
  switch (v.blocking) {
    case 'dns':
      return dnsFailure
        ? `local DNS: ${dnsFailure}; the control resolved ${controlAddresses.join(' ') || 'nothing'}`
        : `local DNS gave ${addresses.join(' ')}, the control ${controlAddresses.join(' ') || 'nothing'}`;
    case 'tcp_ip':
      return `${failure}; the control reached the same address`;
    case 'http-failure':
      return failure;
    case 'http-diff':
      return (
        `a different page: status ${http?.status ?? '?'}, ${http?.body.length ?? 0} bytes` +
        (v.body_proportion !== null ? ` (body proportion ${v.body_proportion.toFixed(2)})` : '')
      );
    case false:
      return v.accessible ? '' : `down for the control too (${failure})`;
    case null:
      return 'no control: nothing can be concluded';
  }
}
