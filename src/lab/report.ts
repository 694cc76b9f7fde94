/**
 * `ladder lab run`: the report card. For every transport in {@link TRANSPORTS} and every column
 * (no censor, each module alone, each profile), it restarts the censor with that policy, makes N
 * fresh connections from the client namespace, and records the success rate and which modules
 * acted (from the censor's events). Transports are a pluggable table: add an entry with
 * {@link registerTransport}.
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatSsUri } from '../codec/access-key-uri.js';
import { PREFIX_PRESETS } from '../codec/ss-prefix.js';
import { formatTrojanUri } from '../codec/trojan-uri.js';
import { formatLadderKey } from '../codec/ladder-key.js';
import type { TlsFingerprint } from '../codec/tls-fingerprint-param.js';
import {
  caPath,
  AGENT_PATH,
  CLI_PATH,
  eventsPath,
  LADDER_NAME,
  spawnInNamespace,
  startCensor,
  waitForLog,
} from './lab.js';
import { modulePolicy, profilePolicy, PROFILES, type ModuleName, type Policy } from './policy.js';
import { NAIVE_TUNNEL_PORT, SINK_PORT } from './services.js';
import type { LabPlan } from './topology.js';
import {
  startTorBridge,
  startTorClient,
  stopTor,
  torUnavailable,
  waitForBootstrap,
  TOR_HANDSHAKE_DONE,
  type TorPeer,
} from './tor-peers.js';
import {
  openVpnReady,
  openVpnUnavailable,
  pingThroughTunnel,
  startOpenVpn,
  startWireGuard,
  stopVpn,
  wireGuardUnavailable,
  type VpnPeers,
} from './vpn-peers.js';

export interface AttemptResult {
  readonly ok: boolean;
  readonly detail: string;
}

export interface TransportEntry {
  readonly name: string;
  readonly description: string;
  /** Set when the entry exists but cannot be verified yet; the card shows it instead of numbers. */
  readonly unverified?: string;
  /** Slow rows run only when `--only` names them. */
  readonly optIn?: boolean;
  /** The local SOCKS5 port in the client namespace, for rows that run a proxy client there. */
  readonly socksPort?: number;
  /** Why it cannot run on this machine, or undefined. */
  unavailable?(): string | undefined;
  /** Starts what the transport needs (servers, local clients); returns how to stop it. */
  setup?(plan: LabPlan): Promise<void>;
  /**
   * One fresh connection from the client namespace. `page` (curl rows to allowed.lab): fetch that
   * path with a browser's request headers instead of `/` (§14's "browse 100 HTTPS pages").
   */
  attempt(plan: LabPlan, timeoutS: number, page?: string): Promise<AttemptResult>;
}

/** Runs argv in a namespace with a hard timeout; resolves with status and output. */
export function runIn(
  plan: LabPlan,
  ns: string,
  argv: string[],
  timeoutMs: number,
): Promise<{ status: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn('ip', ['netns', 'exec', ns, ...argv], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, out });
    });
    child.on('error', () => resolve({ status: null, out }));
  });
}

/** A desktop Chrome's HTTP/1.1 navigation headers (about 550 bytes with the request line). */
export const BROWSER_HEADERS = [
  'User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36',
  'Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7',
  'Accept-Language: en-US,en;q=0.9',
  'Accept-Encoding: gzip, deflate, br',
  'Upgrade-Insecure-Requests: 1',
  'Sec-Fetch-Site: none',
  'Sec-Fetch-Mode: navigate',
  'Sec-Fetch-User: ?1',
  'Sec-Fetch-Dest: document',
];

/** curl arguments for a page fetch with a browser's headers, or none. */
function pageArgs(page: string | undefined): string[] {
  return page ? BROWSER_HEADERS.flatMap((h) => ['-H', h]) : [];
}

function curlEntry(
  name: string,
  url: (p: LabPlan) => string,
  expect: (p: LabPlan) => string,
  extra: (p: LabPlan) => string[] = () => [],
): TransportEntry {
  return {
    name,
    description: `curl ${name.replace('-', ' to ')}`,
    unavailable: () => (hasCommand('curl') ? undefined : 'curl is not installed'),
    async attempt(plan, timeoutS, page) {
      const r = await runIn(
        plan,
        plan.ns.client,
        [
          'curl',
          '-sS',
          '--max-time',
          String(timeoutS),
          '--connect-timeout',
          String(timeoutS),
          ...extra(plan),
          ...pageArgs(page),
          page ? url(plan).replace(/\/$/, page) : url(plan),
        ],
        (timeoutS + 2) * 1000,
      );
      const ok = r.status === 0 && r.out.includes(expect(plan));
      return { ok, detail: ok ? 'ok' : (r.out.trim().split('\n').pop() ?? `exit ${r.status}`) };
    },
  };
}

function rawEntry(name: string, mode: string, description: string): TransportEntry {
  return {
    name,
    description,
    async attempt(plan, timeoutS) {
      const r = await runIn(
        plan,
        plan.ns.client,
        [
          process.execPath,
          AGENT_PATH,
          'connect',
          '--to',
          `${plan.addr.sinkIp}:${SINK_PORT}`,
          '--mode',
          mode,
          '--timeout',
          String(timeoutS),
        ],
        (timeoutS + 3) * 1000,
      );
      return { ok: r.status === 0, detail: r.out.trim() || `exit ${r.status}` };
    },
  };
}

const SS_PASSWORD = 'ladder-lab-password';
const SS_PORT = 8388;
const SS_LOCAL_PORT = 1080;

export const TRANSPORTS: TransportEntry[] = [
  curlEntry(
    'http-allowed',
    (p) => `http://${p.names.allowed}/`,
    (p) => `site ${p.names.allowed}`,
  ),
  curlEntry(
    'http-blocked',
    (p) => `http://${p.names.blocked}/`,
    (p) => `site ${p.names.blocked}`,
  ),
  curlEntry(
    'https-allowed',
    (p) => `https://${p.names.allowed}/`,
    (p) => `site ${p.names.allowed}`,
    (p) => ['--cacert', caPath(p)],
  ),
  curlEntry(
    'https-blocked',
    (p) => `https://${p.names.blocked}/`,
    (p) => `site ${p.names.blocked}`,
    (p) => ['--cacert', caPath(p)],
  ),
  curlEntry(
    'http-domestic',
    (p) => `http://${p.names.domestic}/`,
    (p) => `site ${p.names.domestic}`,
  ),
  rawEntry(
    'random',
    'random',
    'TCP, 256 uniformly random bytes first (a fully encrypted first packet)',
  ),
  rawEntry(
    'random-printable',
    'printable-prefix',
    'TCP, the same with a 6-byte printable prefix (FET exemption Ex2)',
  ),
  rawEntry(
    'ech-hello',
    'hello:cloudflare-ech.com:fe0d',
    'TCP, a ClientHello with SNI cloudflare-ech.com and the ECH extension 0xfe0d to the echo sink (the ech control, n4p#417)',
  ),
  rawEntry(
    'ech-sni-only',
    'hello:cloudflare-ech.com',
    'the same ClientHello without the ECH extension (the TSPU freezes only both together)',
  ),
  {
    name: 'shadowsocks-libev',
    description: "Debian's ss-local → ss-server (chacha20-ietf-poly1305), curl through SOCKS5",
    socksPort: SS_LOCAL_PORT,
    unavailable: () =>
      hasCommand('ss-server') && hasCommand('ss-local')
        ? undefined
        : 'shadowsocks-libev is not installed',
    async setup(plan) {
      const server = spawnInNamespace(plan, 'abroad', 'ss-server', [
        'ss-server',
        '-s',
        plan.addr.ssIp,
        '-p',
        String(SS_PORT),
        '-k',
        SS_PASSWORD,
        '-m',
        'chacha20-ietf-poly1305',
        '-v',
      ]);
      const local = spawnInNamespace(plan, 'client', 'ss-local', [
        'ss-local',
        '-s',
        plan.addr.ssIp,
        '-p',
        String(SS_PORT),
        '-l',
        String(SS_LOCAL_PORT),
        '-b',
        '127.0.0.1',
        '-k',
        SS_PASSWORD,
        '-m',
        'chacha20-ietf-poly1305',
        '-v',
      ]);
      await waitForLog(plan, 'ss-server', server, /listening|running/i);
      await waitForLog(plan, 'ss-local', local, /listening|running/i);
    },
    async attempt(plan, timeoutS) {
      const r = await runIn(
        plan,
        plan.ns.client,
        [
          'curl',
          '-sS',
          '--max-time',
          String(timeoutS),
          '--socks5-hostname',
          `127.0.0.1:${SS_LOCAL_PORT}`,
          `http://${plan.names.allowed}/`,
        ],
        (timeoutS + 2) * 1000,
      );
      const ok = r.status === 0 && r.out.includes(`site ${plan.names.allowed}`);
      return { ok, detail: ok ? 'ok' : (r.out.trim().split('\n').pop() ?? `exit ${r.status}`) };
    },
  },
];

/** Processes the transports started (Ladder's server and clients), stopped at the end of a card. */
const started: ChildProcess[] = [];
/** Tor processes (with their data directories) the `tor` row started. */
const torPeers: TorPeer[] = [];

/** Stops every process the transports' setup started (by the PIDs it recorded). */
export function stopTransports(): void {
  for (const c of started.splice(0))
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  for (const p of torPeers.splice(0)) stopTor(p);
}

/** Ladder's server in abroad: every key on one port, as `ladder server` is meant to be run. */
export const LADDER_PORT = 443;
/**
 * The classic-Shadowsocks control runs on a second server port of the same address: its blocked
 * connections draw FET residuals on their 3-tuple, and the kernel keeps retransmitting their data
 * after an attempt gave up — the next cell's fresh censor sees those as new flows with a
 * non-exempt first payload. On a shared port that spilled onto the next rows (7 of 200 prefixed
 * connections lost in one run); on its own port it cannot.
 */
export const LADDER_CONTROL_PORT = 8388;
const LADDER_SS_METHOD = '2022-blake3-aes-256-gcm';
const ladderSecrets = {
  ss: randomBytes(32).toString('base64'),
  trojan: randomBytes(18).toString('base64url'),
  wsSs: randomBytes(32).toString('base64'),
  wsTrojan: randomBytes(18).toString('base64url'),
  // secret WebSocket paths; every other path of the TLS port is the decoy site
  wsSsPath: `/${randomBytes(9).toString('base64url')}`,
  wsTrojanPath: `/${randomBytes(9).toString('base64url')}`,
};
let ladderServer: Promise<void> | undefined;
/** Extra flags for the lab's `ladder server` processes (the path bench's `--ladder-cc`). */
let ladderServerArgs: readonly string[] = [];

/** Sets extra flags for the Ladder servers the next setups start (e.g. `--tcp-congestion bbr`). */
export function setLadderServerArgs(args: readonly string[]): void {
  ladderServerArgs = args;
}

function ladderSsUri(prefix?: Uint8Array, port = LADDER_PORT): string {
  return formatSsUri({
    method: LADDER_SS_METHOD,
    password: ladderSecrets.ss,
    host: LADDER_NAME,
    port,
    ...(prefix ? { prefix } : {}),
  });
}

function ladderTrojanUri(
  plan: LabPlan,
  mux?: { padding: boolean },
  split = false,
  host = LADDER_NAME,
  sni = LADDER_NAME,
  fp?: TlsFingerprint,
  carrierBytes?: number,
): string {
  const pem = readFileSync(join(plan.stateDir, 'ladder-cert.pem'), 'utf8');
  return formatTrojanUri({
    password: ladderSecrets.trojan,
    host,
    port: LADDER_PORT,
    sni,
    pinSha256: new X509Certificate(pem).fingerprint256,
    // Mux.Cool inside Trojan (v1.mux.cool), as in Ladder's own ladder:// bundles
    ...(mux ? { mux: 8, ...(mux.padding ? {} : { muxPadding: false as const }) } : {}),
    ...(split ? { split: true as const } : {}),
    ...(fp ? { fp } : {}),
    ...(carrierBytes ? { carrierBytes } : {}),
  });
}

function ladderPin(plan: LabPlan): string {
  const pem = readFileSync(join(plan.stateDir, 'ladder-cert.pem'), 'utf8');
  return new X509Certificate(pem).fingerprint256.replace(/:/g, '').toLowerCase();
}

/** Shadowsocks in a WebSocket over TLS, as v2ray-plugin does (mux off: a connection per attempt). */
function ladderWsSsUri(plan: LabPlan): string {
  return formatSsUri({
    method: LADDER_SS_METHOD,
    password: ladderSecrets.wsSs,
    host: LADDER_NAME,
    port: LADDER_PORT,
    plugin: {
      name: 'v2ray-plugin',
      options: {
        tls: '',
        host: LADDER_NAME,
        path: ladderSecrets.wsSsPath,
        mux: '0',
        pin: ladderPin(plan),
      },
    },
  });
}

/** Trojan in a WebSocket over TLS, as v2ray's trojan outbound with network ws. */
function ladderWsTrojanUri(plan: LabPlan): string {
  return formatTrojanUri({
    password: ladderSecrets.wsTrojan,
    host: LADDER_NAME,
    port: LADDER_PORT,
    sni: LADDER_NAME,
    pinSha256: ladderPin(plan),
    type: 'ws',
    wsHost: LADDER_NAME,
    path: ladderSecrets.wsTrojanPath,
  });
}

/** Starts `ladder server` in abroad once per card (the real CLI, the same binary users run). */
function startLadderServer(plan: LabPlan): Promise<void> {
  ladderServer ??= (async () => {
    const child = spawnInNamespace(plan, 'abroad', 'ladder-server', [
      process.execPath,
      CLI_PATH,
      'server',
      '--listen',
      `${plan.addr.ladderIp}:${LADDER_PORT}`,
      '--key',
      ladderSsUri(),
      '--key',
      ladderTrojanUri(plan),
      '--key',
      ladderWsSsUri(plan),
      '--key',
      ladderWsTrojanUri(plan),
      '--tls-cert',
      join(plan.stateDir, 'ladder-cert.pem'),
      '--tls-key',
      join(plan.stateDir, 'ladder-key.pem'),
      // the lab's sites live in 198.18.0.0/15, which a public server refuses to reach by default
      '--allow-private-targets',
      ...ladderServerArgs,
    ]);
    started.push(child);
    const control = spawnInNamespace(plan, 'abroad', 'ladder-server-control', [
      process.execPath,
      CLI_PATH,
      'server',
      '--listen',
      `${plan.addr.ladderIp}:${LADDER_CONTROL_PORT}`,
      '--key',
      ladderSsUri(undefined, LADDER_CONTROL_PORT),
      '--allow-private-targets',
      ...ladderServerArgs,
    ]);
    started.push(control);
    await waitForLog(plan, 'ladder-server', child, /listening/);
    await waitForLog(plan, 'ladder-server-control', control, /listening/);
  })();
  return ladderServer.catch((err: unknown) => {
    ladderServer = undefined;
    throw err;
  });
}

let ladderAltServers: Promise<void> | undefined;

/**
 * Ladder's server on each of abroad's other Ladder addresses (`plan.addr.ladderAltIps`), Trojan
 * only: the addresses a rotating key moves among, one server process each (`--listen` takes one).
 */
function startLadderAltServers(plan: LabPlan): Promise<void> {
  ladderAltServers ??= (async () => {
    await Promise.all(
      plan.addr.ladderAltIps.map(async (ip, i) => {
        const name = `ladder-server-alt${i + 1}`;
        const child = spawnInNamespace(plan, 'abroad', name, [
          process.execPath,
          CLI_PATH,
          'server',
          '--listen',
          `${ip}:${LADDER_PORT}`,
          '--key',
          ladderTrojanUri(plan),
          '--tls-cert',
          join(plan.stateDir, 'ladder-cert.pem'),
          '--tls-key',
          join(plan.stateDir, 'ladder-key.pem'),
          '--allow-private-targets',
          ...ladderServerArgs,
        ]);
        started.push(child);
        await waitForLog(plan, name, child, /listening/);
      }),
    );
  })();
  return ladderAltServers.catch((err: unknown) => {
    ladderAltServers = undefined;
    throw err;
  });
}

/**
 * A ladder:// key of Trojan to each of the server's addresses in turn (the same server name and
 * pinned certificate): what an operator hands out against bans by volume per address.
 */
function ladderRotatingKey(plan: LabPlan): string {
  return formatLadderKey({
    transports: [plan.addr.ladderIp, ...plan.addr.ladderAltIps].map((ip) =>
      ladderTrojanUri(plan, undefined, false, ip),
    ),
  });
}

let nextSocksPort = 1081;

/**
 * `--first-payload-wait` of the rows carrying HTTPS: longer than any attempt's time limit, so the
 * request header always leaves in one record with curl's ClientHello (curl speaks first) and the
 * outer sizes the TLS-in-TLS rules see do not depend on how fast a loaded machine runs curl.
 */
export const HTTPS_ROW_FIRST_PAYLOAD_WAIT_MS = 30_000;

/**
 * One Ladder transport: the real server in abroad and the real `ladder client` in the client
 * namespace with this key; each attempt is a fresh curl through the client's SOCKS5 port, which
 * makes a fresh connection to the server.
 */
function ladderEntry(
  name: string,
  description: string,
  uri: (p: LabPlan) => string,
  https = false,
  clientArgs: readonly string[] = [],
): TransportEntry {
  const socksPort = nextSocksPort++;
  return {
    name,
    description,
    socksPort,
    unavailable: () => (hasCommand('curl') ? undefined : 'curl is not installed'),
    async setup(plan) {
      await startLadderServer(plan);
      const child = spawnInNamespace(plan, 'client', `ladder-client-${name}`, [
        process.execPath,
        CLI_PATH,
        'client',
        '--server',
        uri(plan),
        '--socks',
        `127.0.0.1:${socksPort}`,
        '--no-http',
        ...(https ? ['--first-payload-wait', String(HTTPS_ROW_FIRST_PAYLOAD_WAIT_MS)] : []),
        ...clientArgs,
      ]);
      started.push(child);
      await waitForLog(plan, `ladder-client-${name}`, child, /SOCKS5 listening/);
    },
    attempt: (plan, timeoutS, page) => curlSocks(plan, socksPort, timeoutS, https, page),
  };
}

/** A fresh curl from the client namespace through a local SOCKS5 proxy to the allowed site. */
async function curlSocks(
  plan: LabPlan,
  port: number,
  timeoutS: number,
  https = false,
  page?: string,
  proxy = ['--socks5-hostname', `127.0.0.1:${port}`],
): Promise<AttemptResult> {
  const r = await runIn(
    plan,
    plan.ns.client,
    [
      'curl',
      '-sS',
      '--max-time',
      String(timeoutS),
      ...proxy,
      ...pageArgs(page),
      ...(https
        ? ['--cacert', caPath(plan), `https://${plan.names.allowed}${page ?? '/'}`]
        : [`http://${plan.names.allowed}${page ?? '/'}`]),
    ],
    (timeoutS + 2) * 1000,
  );
  const ok = r.status === 0 && r.out.includes(`site ${plan.names.allowed}`);
  return { ok, detail: ok ? 'ok' : (r.out.trim().split('\n').pop() ?? `exit ${r.status}`) };
}

function ladderTransports(): TransportEntry[] {
  return [
    ladderEntry(
      'ladder-ss',
      `ladder client → ladder server, Shadowsocks ${LADDER_SS_METHOD} without a prefix (the FET control, port ${LADDER_CONTROL_PORT})`,
      () => ladderSsUri(undefined, LADDER_CONTROL_PORT),
    ),
    ...PREFIX_PRESETS.map((preset) =>
      ladderEntry(
        `ladder-ss-${preset.name}`,
        `the same with the '${preset.name}' prefix (${preset.looksLike}, FET ${preset.exemption})`,
        () => ladderSsUri(preset.bytes),
      ),
    ),
    ladderEntry(
      'ladder-trojan',
      `ladder client → ladder server, Trojan over TLS (SNI ${LADDER_NAME}, pinned certificate)`,
      (p) => ladderTrojanUri(p),
    ),
    ladderEntry(
      'ladder-ws-ss',
      'ladder client → ladder server, Shadowsocks in a WebSocket over TLS (v2ray-plugin style) on a secret path',
      (p) => ladderWsSsUri(p),
    ),
    ladderEntry(
      'ladder-ws-trojan',
      'ladder client → ladder server, Trojan in a WebSocket over TLS (v2ray style) on a secret path',
      (p) => ladderWsTrojanUri(p),
    ),
    ladderEntry(
      'ladder-trojan-https',
      'the same carrying HTTPS (TLS in TLS, what §14 detects)',
      (p) => ladderTrojanUri(p),
      true,
    ),
    // Each attempt a fresh Mux.Cool connection (--mux-sessions 1), so that every page is the first
    // session of an outer flow, the one the §14 rules look at; the client's TLS session cache
    // stays warm as with a long-running client.
    ladderEntry(
      'ladder-trojan-mux-https',
      'Trojan over TLS with Mux.Cool (padded, the default) carrying HTTPS, a connection per session',
      (p) => ladderTrojanUri(p, { padding: true }),
      true,
      ['--mux-sessions', '1'],
    ),
    ladderEntry(
      'ladder-trojan-split-https',
      'plain Trojan over TLS with split=1 carrying HTTPS (the first payload split around the server tickets)',
      (p) => ladderTrojanUri(p, undefined, true),
      true,
    ),
    ladderEntry(
      'ladder-trojan-mux-nopad-https',
      "the same without padding (pad=0) and with Node's TLS (fp=node, which resumes), the reference",
      // fp=node: a client that resumes its TLS session, as a browser does, so that no session
      // tickets from the server end the first run before the inner ClientHello (kept on Node's
      // client as the reference row)
      (p) => ladderTrojanUri(p, { padding: false }, false, LADDER_NAME, LADDER_NAME, 'node'),
      true,
      ['--mux-sessions', '1'],
    ),
    ladderEntry(
      'ladder-ws-ss-https',
      'Shadowsocks in a WebSocket over TLS carrying HTTPS (TLS in TLS)',
      (p) => ladderWsSsUri(p),
      true,
    ),
    ladderEntry(
      'ladder-ws-trojan-https',
      'Trojan in a WebSocket over TLS carrying HTTPS (TLS in TLS)',
      (p) => ladderWsTrojanUri(p),
      true,
    ),
    naiveTunnelEntry(),
    ladderRulesEntry(),
    ...censorsEntries(),
    dnsEntry(
      'dns-isp-resolver',
      "a DNS query for allowed.lab through the domestic ISP's resolver, which asks the abroad resolver: the path DNS tunnels take in Iran's shutdowns (n4p#561)",
      (p) => p.addr.domestic,
    ),
    dnsEntry(
      'dns-direct',
      'the same query sent from the client to the abroad resolver itself',
      (p) => p.addr.dnsIp,
    ),
  ];
}

/**
 * A page of the lab's sites larger than every byte budget (14–32 KB, reference
 * censorship-2024-2026.md): page 2 is 54,547 bytes (services.ts pageSize).
 */
export const LARGE_PAGE = '/page/2';

/**
 * Bytes per carrier in the carrier row: with the TLS handshake (about 2 KB from the server) and
 * record overhead a carrier stays under the smallest byte budget (14,336 bytes, n4p#490).
 */
export const CARRIER_BYTES = 8192;

/** Parallel fetches of the connection-count rows: more than the 6 connections policed. */
export const PARALLEL_FETCHES = 8;

/** The client's cap in the capped row: the connections the TSPU allows (n4p#546, Xray's advice). */
export const CONN_CAP = 6;

/**
 * Sequential fetches of the large page in the rotation rows, a fresh connection each: about 58 KB
 * on the wire each, so 3 fit under the card's 200 KiB volume ban and the 4th crosses it.
 */
export const ROTATE_FETCHES = 6;

/** The rotating row's `--rotate-after`: 2 fetches per address, well under the card's ban. */
export const ROTATE_AFTER = '100k';

/** Sequential fetches over one multiplexed connection in the `mux-many` rows. */
export const MANY_FETCHES = 50;

/**
 * `--mux-sessions` of the renewing mux row: a fetch is one or two request/response pairs on the
 * outer flow (the request and its answer; the session's End frames), the TLS handshake two more,
 * so 8 sessions stay under half the `mux` module's 40 pairs.
 */
export const MUX_RENEW_SESSIONS = 8;

/**
 * Requests one browsing connection makes in the `-browse` rows: with a browser's request headers
 * each is a client packet of over 411 bytes, so with the ClientHello there are 3 or more, the
 * TSPU's TLS-in-TLS pattern (n4p#363); a single curl request with curl's own headers is 1.
 */
export const BROWSE_FETCHES = 3;

/**
 * A DNS query for the allowed site's A record from the client namespace, to `server(plan)`:53 over
 * UDP, by Node's resolver (one try); passes when the answer is the site's address.
 */
function dnsEntry(
  name: string,
  description: string,
  server: (p: LabPlan) => string,
): TransportEntry {
  return {
    name,
    description,
    async attempt(plan, timeoutS) {
      const script = [
        "const { Resolver } = require('node:dns').promises;",
        `const r = new Resolver({ timeout: ${timeoutS * 1000}, tries: 1 });`,
        `r.setServers([${JSON.stringify(server(plan))}]);`,
        `r.resolve4(${JSON.stringify(plan.names.allowed)}).then(`,
        "  (a) => { console.log(a.join(',')); process.exit(0); },",
        '  (e) => { console.log(e.code); process.exit(1); });',
      ].join('\n');
      const r = await runIn(
        plan,
        plan.ns.client,
        [process.execPath, '-e', script],
        (timeoutS + 2) * 1000,
      );
      const ok = r.status === 0 && r.out.trim() === plan.addr.allowedIp;
      return { ok, detail: ok ? 'ok' : r.out.trim().split('\n').pop() || `exit ${r.status}` };
    },
  };
}

/**
 * Control and answer rows for the 2024–2026 techniques: a large page (the byte budget), parallel
 * fetches (connection-count policing), many fetches (the multiplexing classifier), and Trojan whose
 * SNI is the allowed name (whitelist mode, ClientHello scoring, the budget's SNI exemption).
 */
function censorsEntries(): TransportEntry[] {
  const large = (
    name: string,
    description: string,
    uri: ((p: LabPlan) => string) | undefined,
    opts: {
      https?: boolean;
      fetches?: number;
      parallel?: boolean;
      clientArgs?: string[];
      /**
       * Parallel fetches keep their connections until curl exits: all of them are open at once
       * whatever the machine's speed (the connection-count controls).
       */
      keepAlive?: boolean;
      /** Also start the server on its other addresses (the rotation rows). */
      altServers?: boolean;
    } = {},
  ): TransportEntry => {
    const socksPort = nextSocksPort++;
    const fetches = opts.fetches ?? 1;
    return {
      name,
      description,
      unavailable: () => (hasCommand('curl') ? undefined : 'curl is not installed'),
      ...(uri
        ? {
            async setup(plan: LabPlan) {
              await startLadderServer(plan);
              if (opts.altServers) await startLadderAltServers(plan);
              const child = spawnInNamespace(plan, 'client', `ladder-client-${name}`, [
                process.execPath,
                CLI_PATH,
                'client',
                '--server',
                uri(plan),
                '--socks',
                `127.0.0.1:${socksPort}`,
                '--no-http',
                ...(opts.clientArgs ?? []),
              ]);
              started.push(child);
              await waitForLog(plan, `ladder-client-${name}`, child, /SOCKS5 listening/);
            },
          }
        : {}),
      async attempt(plan, timeoutS) {
        const scheme = opts.https || !uri ? 'https' : 'http';
        const url = `${scheme}://${plan.names.allowed}${LARGE_PAGE}`;
        const r = await runIn(
          plan,
          plan.ns.client,
          [
            'curl',
            '-sS',
            '--max-time',
            String(timeoutS),
            ...(opts.parallel ? ['--parallel', '--parallel-immediate'] : []),
            // a fresh connection per fetch: no HTTP keep-alive over one SOCKS connection
            ...(fetches > 1 && !opts.keepAlive ? ['-H', 'Connection: close'] : []),
            ...(uri ? ['--socks5-hostname', `127.0.0.1:${socksPort}`] : []),
            ...(scheme === 'https' ? ['--cacert', caPath(plan)] : []),
            ...Array.from({ length: fetches }, () => url),
          ],
          (timeoutS + 2) * 1000,
        );
        const got = r.out.split(`site ${plan.names.allowed}, page 2`).length - 1;
        const ok = r.status === 0 && got === fetches;
        return {
          ok,
          detail: ok ? 'ok' : `${got}/${fetches} pages; ${r.out.trim().split('\n').pop() ?? ''}`,
        };
      },
    };
  };
  /** HTTPS browsing through a key: BROWSE_FETCHES small pages on one connection, browser headers. */
  const browse = (name: string, description: string, uri: (p: LabPlan) => string) => {
    const entry = ladderEntry(name, description, uri, true);
    const socksPort = entry.socksPort!;
    return {
      ...entry,
      async attempt(plan: LabPlan, timeoutS: number): Promise<AttemptResult> {
        const url = `https://${plan.names.allowed}/`;
        const r = await runIn(
          plan,
          plan.ns.client,
          [
            'curl',
            '-sS',
            '--max-time',
            String(timeoutS),
            '--socks5-hostname',
            `127.0.0.1:${socksPort}`,
            '--cacert',
            caPath(plan),
            ...BROWSER_HEADERS.flatMap((h) => ['-H', h]),
            ...Array.from({ length: BROWSE_FETCHES }, () => url),
          ],
          (timeoutS + 2) * 1000,
        );
        const got = r.out.split(`site ${plan.names.allowed}`).length - 1;
        const ok = r.status === 0 && got === BROWSE_FETCHES;
        return {
          ok,
          detail: ok
            ? 'ok'
            : `${got}/${BROWSE_FETCHES} pages; ${r.out.trim().split('\n').pop() ?? ''}`,
        };
      },
    };
  };
  return [
    browse(
      'ladder-ss-https-browse',
      `Shadowsocks ${LADDER_SS_METHOD} carrying HTTPS browsing (${BROWSE_FETCHES} requests with a browser's headers on one connection): the tls-in-tls-ru control`,
      () => ladderSsUri(undefined, LADDER_CONTROL_PORT),
    ),
    browse(
      'ladder-trojan-https-browse',
      'the same browsing over Trojan (TLS outside: the answer to tls-in-tls-ru)',
      (p) => ladderTrojanUri(p),
    ),
    ladderEntry(
      'ladder-ss-https',
      `Shadowsocks ${LADDER_SS_METHOD} carrying one HTTPS request (TLS inside a fully encrypted tunnel, one client packet of ≥ 411 bytes: passes tls-in-tls-ru)`,
      () => ladderSsUri(undefined, LADDER_CONTROL_PORT),
      true,
    ),
    large(
      'https-large',
      `curl to https://allowed.lab${LARGE_PAGE} (54,547 bytes): the byte-budget control`,
      undefined,
    ),
    large(
      'https-parallel',
      `${PARALLEL_FETCHES} parallel curl fetches of it: the connection-count control`,
      undefined,
      { fetches: PARALLEL_FETCHES, parallel: true, keepAlive: true },
    ),
    large('ladder-trojan-large', 'Trojan over TLS (SNI ladder.lab) fetching the large page', (p) =>
      ladderTrojanUri(p),
    ),
    large(
      'ladder-trojan-carrier',
      `the same over carriers of ${CARRIER_BYTES} bytes (trojan:// carrier=): each connection ends before the byte budget and the next takes the stream on (the answer to byte-budget)`,
      (p) =>
        ladderTrojanUri(p, undefined, false, LADDER_NAME, LADDER_NAME, undefined, CARRIER_BYTES),
    ),
    large(
      'ladder-trojan-allowed-sni',
      'the same with the allowed name as SNI (fronting through an allowed SNI; the certificate is pinned)',
      (p) => ladderTrojanUri(p, undefined, false, LADDER_NAME, p.names.allowed),
    ),
    large(
      'ladder-trojan-parallel',
      `Trojan over TLS, ${PARALLEL_FETCHES} parallel fetches: a connection each, all open until the last ends`,
      (p) => ladderTrojanUri(p),
      { fetches: PARALLEL_FETCHES, parallel: true, keepAlive: true },
    ),
    large(
      'ladder-trojan-parallel-capped',
      `the same with the client's --max-connections-per-server ${CONN_CAP}: the fetches beyond it wait for a connection to close (the answer to connection policing without Mux.Cool)`,
      (p) => ladderTrojanUri(p),
      {
        fetches: PARALLEL_FETCHES,
        parallel: true,
        clientArgs: ['--max-connections-per-server', String(CONN_CAP)],
      },
    ),
    large(
      'ladder-trojan-mux-parallel',
      `Trojan with Mux.Cool, ${PARALLEL_FETCHES} parallel fetches over one connection (the answer to connection policing)`,
      (p) => ladderTrojanUri(p, { padding: true }),
      { fetches: PARALLEL_FETCHES, parallel: true, clientArgs: ['--mux-sessions', '128'] },
    ),
    large(
      'ladder-trojan-mux-many',
      `Trojan with Mux.Cool, ${MANY_FETCHES} fetches one after another over one connection (the multiplexing control)`,
      (p) => ladderTrojanUri(p, { padding: true }),
      { fetches: MANY_FETCHES, clientArgs: ['--mux-sessions', '128'] },
    ),
    large(
      'ladder-trojan-failover',
      `a ladder:// key of Trojan to three server addresses, ${ROTATE_FETCHES} fetches one after another, a connection each; failover only (the volume-ban control)`,
      (p) => ladderRotatingKey(p),
      { fetches: ROTATE_FETCHES, altServers: true },
    ),
    large(
      'ladder-trojan-rotate',
      `the same with the client's --rotate-after ${ROTATE_AFTER}: new connections move to the next address after that volume (the answer to bans by volume per address)`,
      (p) => ladderRotatingKey(p),
      { fetches: ROTATE_FETCHES, altServers: true, clientArgs: ['--rotate-after', ROTATE_AFTER] },
    ),
    large(
      'ladder-trojan-mux-renew',
      `the same with the client's --mux-sessions ${MUX_RENEW_SESSIONS}: a fresh Mux.Cool connection after ${MUX_RENEW_SESSIONS} sessions, so no flow has the pair count of a long-lived mux (the answer to the multiplexing classifier that keeps mux)`,
      (p) => ladderTrojanUri(p, { padding: true }),
      { fetches: MANY_FETCHES, clientArgs: ['--mux-sessions', String(MUX_RENEW_SESSIONS)] },
    ),
    large(
      'ladder-trojan-many',
      `plain Trojan, ${MANY_FETCHES} fetches one after another, a connection each (the answer to the multiplexing classifier)`,
      (p) => ladderTrojanUri(p),
      { fetches: MANY_FETCHES },
    ),
  ];
}

/**
 * Ladder's transports as a user runs them, for the path benchmark (bench/path.ts): every transport
 * once, Trojan also over Mux.Cool with the client's default session count. Not report-card rows.
 */
export function ladderBenchTransports(): TransportEntry[] {
  return [
    ladderEntry('ladder-ss', 'Shadowsocks 2022 without a prefix', () =>
      ladderSsUri(undefined, LADDER_CONTROL_PORT),
    ),
    ladderEntry(`ladder-ss-${PREFIX_PRESETS[0]!.name}`, 'Shadowsocks 2022 with a prefix', () =>
      ladderSsUri(PREFIX_PRESETS[0]!.bytes),
    ),
    ladderEntry('ladder-trojan', 'Trojan over TLS', (p) => ladderTrojanUri(p)),
    ladderEntry('ladder-trojan-mux', 'Trojan over TLS with Mux.Cool (default sessions)', (p) =>
      ladderTrojanUri(p, { padding: true }),
    ),
    ladderEntry('ladder-ws-ss', 'Shadowsocks in a WebSocket over TLS', (p) => ladderWsSsUri(p)),
    ladderEntry('ladder-ws-trojan', 'Trojan in a WebSocket over TLS', (p) => ladderWsTrojanUri(p)),
  ];
}

let trojanNode: TransportEntry | undefined;

/**
 * Trojan over TLS with Node's TLS client (`fp=node`), for lab tests that need a client whose JA3
 * stays the same from one connection to the next: the default client (fp=chrome) permutes its
 * extensions as Chrome does, so each of its ClientHellos has another JA3. Not a report-card row.
 */
export function ladderTrojanNodeTransport(): TransportEntry {
  trojanNode ??= ladderEntry(
    'ladder-trojan-node',
    `ladder client → ladder server, Trojan over TLS with Node's TLS client (fp=node)`,
    (p) => ladderTrojanUri(p, undefined, false, LADDER_NAME, LADDER_NAME, 'node'),
  );
  return trojanNode;
}

/** The rules of the `ladder-rules` row (docs/routing.md): one of each decision. */
export function labRules(plan: LabPlan): string {
  return `# ladder lab: split routing (issue #15)
DOMAIN,ads.lab,REJECT
DOMAIN-SUFFIX,${plan.names.domestic},DIRECT
# the domestic network: a name needs its address (resolved through the tunnel) to pass this rule
IP-CIDR,${plan.addr.domestic.replace(/\.\d+$/, '.0')}/24,DIRECT
MATCH,PROXY
`;
}

/** Ports of the `ladder-rules` row's client in the client namespace. */
export const RULES_CLIENT = { socks: 1180, http: 1181 } as const;

/**
 * Split routing (issue #15): the real `ladder client --rules` with a Trojan key, the lab's resolver
 * as the domestic one (the censor's DNS module poisons it for the blocked name) and, through the
 * tunnel, as the remote one. An attempt succeeds when the blocked site is reached through the tunnel,
 * the domestic site directly (it sees the client's own address) and the REJECT rule refuses.
 */
function ladderRulesEntry(): TransportEntry {
  return {
    name: 'ladder-rules',
    description:
      'ladder client --rules: domestic.lab direct, blocked.lab through Trojan (name resolved by the server, never locally), ads.lab refused',
    unavailable: () => (hasCommand('curl') ? undefined : 'curl is not installed'),
    async setup(plan) {
      await startLadderServer(plan);
      const rules = join(plan.stateDir, 'rules.txt');
      writeFileSync(rules, labRules(plan));
      const dns = `${plan.addr.dnsIp}:53`;
      const child = spawnInNamespace(plan, 'client', 'ladder-client-rules', [
        process.execPath,
        CLI_PATH,
        'client',
        '--server',
        ladderTrojanUri(plan),
        '--socks',
        `127.0.0.1:${RULES_CLIENT.socks}`,
        '--http',
        `127.0.0.1:${RULES_CLIENT.http}`,
        '--rules',
        rules,
        '--dns-direct',
        dns,
        '--dns-remote',
        dns,
        '--log-connections',
      ]);
      started.push(child);
      await waitForLog(plan, 'ladder-client-rules', child, /routing by/);
    },
    async attempt(plan, timeoutS) {
      const get = (url: string): Promise<{ status: number | null; out: string }> =>
        runIn(
          plan,
          plan.ns.client,
          [
            'curl',
            '-sS',
            '--max-time',
            String(timeoutS),
            '--socks5-hostname',
            `127.0.0.1:${RULES_CLIENT.socks}`,
            url,
          ],
          (timeoutS + 2) * 1000,
        );
      const blocked = await get(`http://${plan.names.blocked}/whoami`);
      if (
        !blocked.out.includes(`site ${plan.names.blocked}, from `) ||
        blocked.out.includes(`from ${plan.addr.client}`)
      )
        return { ok: false, detail: `blocked.lab: ${blocked.out.trim().split('\n').pop()}` };
      const domestic = await get(`http://${plan.names.domestic}/whoami`);
      if (!domestic.out.includes(`site ${plan.names.domestic}, from ${plan.addr.client}`))
        return { ok: false, detail: `domestic.lab: ${domestic.out.trim().split('\n').pop()}` };
      const ads = await get('http://ads.lab/');
      if (ads.status === 0) return { ok: false, detail: 'ads.lab was not refused' };
      return { ok: true, detail: 'ok' };
    },
  };
}

/**
 * The TLS-in-TLS control (§14): curl through the lab's naive tunnel (a local proxy in client that
 * answers CONNECT at once and a relay in abroad, src/lab/services.ts) to https://allowed.lab/.
 */
function naiveTunnelEntry(): TransportEntry {
  const port = nextSocksPort++;
  return {
    name: 'naive-tunnel-https',
    description: 'HTTPS through a naive TLS tunnel that relays at once (the TLS-in-TLS control)',
    unavailable: () => (hasCommand('curl') ? undefined : 'curl is not installed'),
    async setup(plan) {
      const child = spawnInNamespace(plan, 'client', 'naive-client', [
        process.execPath,
        AGENT_PATH,
        'naive-client',
        '--listen',
        `127.0.0.1:${port}`,
        '--server',
        `${plan.addr.sinkIp}:${NAIVE_TUNNEL_PORT}`,
        '--servername',
        plan.names.allowed,
        '--ca',
        caPath(plan),
      ]);
      started.push(child);
      await waitForLog(plan, 'naive-client', child, /listening/);
    },
    attempt: (plan, timeoutS, page) =>
      curlSocks(plan, port, timeoutS, true, page, ['--proxy', `http://127.0.0.1:${port}`]),
  };
}

TRANSPORTS.push(...ladderTransports(), ...vpnTransports(), torTransport(), ladderTunEntry());

let tunClients = 0;

/**
 * `ladder client --tun` (issue #14): each attempt starts the full-device client in the client
 * namespace with a Trojan key (padded Mux.Cool, the allowed site's SNI), fetches the blocked site by name with a plain curl (no proxy
 * setting: DNS and the connection are caught by the TUN device), and stops the client (SIGTERM,
 * which restores the namespace's routing). Per attempt, because while it runs every other row's
 * traffic in the namespace would go through it too. Opt-in.
 */
function ladderTunEntry(): TransportEntry {
  return {
    name: 'ladder-tun',
    description:
      'ladder client --tun (Trojan over TLS with padded Mux.Cool, SNI of the allowed site): a plain curl of the blocked site by name, DNS and all through the tunnel',
    optIn: true,
    unavailable: () => (hasCommand('curl') ? undefined : 'curl is not installed'),
    setup: (plan) => startLadderServer(plan),
    attempt: (plan, timeoutS) => tunAttempt(plan, timeoutS),
  };
}

/** One --tun attempt (see ladderTunEntry); exported for test/lab/tun-lab.test.ts. */
export async function tunAttempt(
  plan: LabPlan,
  timeoutS: number,
  fetch: (plan: LabPlan, timeoutS: number) => Promise<AttemptResult> = curlBlockedByName,
): Promise<AttemptResult> {
  const name = `ladder-tun-${tunClients++}`;
  const child = spawnInNamespace(plan, 'client', name, [
    process.execPath,
    CLI_PATH,
    'client',
    '--server',
    // The server's address, not its name: the client asks no resolver anything before the tunnel.
    // The SNI of the allowed site, as a user would in a sensitive period (allow-listed TLS only);
    // the pinned certificate authenticates the server. Padded Mux.Cool, so that HTTPS inside does
    // not show the TLS-in-TLS shape the sensitive period's resetting module looks for.
    ladderTrojanUri(plan, { padding: true }, false, plan.addr.ladderIp, plan.names.allowed),
    '--tun',
    '--tun-name',
    `${plan.prefix}tun`.slice(0, 15),
  ]);
  child.ref(); // spawnInNamespace unrefs; this attempt waits for the exit below
  const exited = new Promise<void>((r) => {
    if (child.exitCode !== null || child.signalCode !== null) r();
    else child.once('exit', () => r());
  });
  try {
    await waitForLog(plan, name, child, /tunnel up/, 20_000);
    return await fetch(plan, timeoutS);
  } catch (err) {
    return { ok: false, detail: (err as Error).message.split('\n')[0]! };
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
}

/** A plain curl (no proxy) of the blocked site by name from the client namespace. */
export async function curlBlockedByName(plan: LabPlan, timeoutS: number): Promise<AttemptResult> {
  const r = await runIn(
    plan,
    plan.ns.client,
    ['curl', '-sS', '--max-time', String(timeoutS), `http://${plan.names.blocked}/`],
    (timeoutS + 2) * 1000,
  );
  const ok = r.status === 0 && r.out.includes(`site ${plan.names.blocked}`);
  return { ok, detail: ok ? 'ok' : (r.out.trim().split('\n').pop() ?? `exit ${r.status}`) };
}

/**
 * Reference: Debian's tor. A bridge in abroad (once per card); each attempt is a fresh Tor client
 * (new data directory) in the client namespace, a success if its bootstrap reaches 15% (the TLS and
 * link handshake with the bridge done; with no directory authority in the lab it goes no further
 * than about 30%). Opt-in (a tor process per attempt).
 */
function torTransport(): TransportEntry {
  let n = 0;
  return {
    name: 'tor',
    description: "Debian's tor: a client bootstrapping through the lab's bridge (reference)",
    optIn: true,
    unavailable: torUnavailable,
    async setup(plan) {
      torPeers.push(await startTorBridge(plan));
    },
    async attempt(plan, timeoutS) {
      const client = startTorClient(plan, `tor-client-${n++ % 4}`);
      try {
        const pct = await waitForBootstrap(
          plan,
          client,
          TOR_HANDSHAKE_DONE,
          Math.max(timeoutS, 5) * 1000,
        );
        const ok = pct >= TOR_HANDSHAKE_DONE;
        return { ok, detail: ok ? 'ok' : `bootstrap stopped at ${pct}%` };
      } finally {
        stopTor(client);
      }
    },
  };
}

/**
 * Reference VPNs (issue #3): each attempt starts a fresh OpenVPN or WireGuard pair (server in abroad,
 * client in client), sends 150 pings through the tunnel (enough for the fingerprints' 100-packet
 * window) and succeeds if the tunnel still answers afterwards. Slow (seconds per attempt), so they
 * run only when --only names them; use a small --n.
 */
function vpnTransports(): TransportEntry[] {
  const entry = (
    name: string,
    description: string,
    unavailable: () => string | undefined,
    start: (p: LabPlan) => Promise<VpnPeers>,
  ): TransportEntry => ({
    name,
    description,
    optIn: true,
    unavailable: () =>
      unavailable() ?? (hasCommand('ping') ? undefined : 'ping is not installed (iputils-ping)'),
    async attempt(plan) {
      let peers: VpnPeers | undefined;
      try {
        peers = await start(plan);
        if (name === 'openvpn') await openVpnReady(plan, peers, 10_000);
        pingThroughTunnel(plan, peers, 150);
        const ok = pingThroughTunnel(plan, peers, 3);
        return { ok, detail: ok ? 'ok' : 'tunnel dead' };
      } catch (err) {
        return { ok: false, detail: (err as Error).message.split('\n')[0]! };
      } finally {
        if (peers) await stopVpn(peers);
      }
    },
  });
  return [
    entry(
      'openvpn',
      "Debian's openvpn, TLS mode over UDP (reference)",
      openVpnUnavailable,
      startOpenVpn,
    ),
    entry(
      'wireguard',
      'WireGuard (wireguard-go + wg) over UDP (reference)',
      wireGuardUnavailable,
      startWireGuard,
    ),
  ];
}

/** Adds a transport to the report card (e.g. a new Ladder transport). */
export function registerTransport(t: TransportEntry): void {
  TRANSPORTS.push(t);
}

function hasCommand(name: string): boolean {
  return ['/usr/bin', '/usr/sbin', '/bin', '/usr/local/bin'].some((d) =>
    existsSync(`${d}/${name}`),
  );
}

export interface Column {
  readonly name: string;
  readonly policy: (plan: LabPlan) => Policy;
}

/** Report-card columns: no censor, one module at a time, then the profiles. */
export function columns(): Column[] {
  const mod = (name: ModuleName, label: string = name, overrides: object = {}): Column => ({
    name: label,
    policy: (p) => modulePolicy(name, p, overrides),
  });
  return [
    { name: 'none', policy: () => ({ modules: {} }) },
    mod('dns'),
    mod('ipblock'),
    mod('http'),
    mod('sni'),
    mod('fet', 'fet p=0.263'),
    mod('fet', 'fet p=1', { p: 1 }),
    mod('probe', 'probe', { trigger: 'all' }),
    mod('tor'),
    mod('quic'),
    mod('tls-in-tls'),
    mod('allowlist'),
    // 2024–2026 techniques (reference censorship-2024-2026.md)
    mod('byte-budget'),
    mod('whitelist'),
    mod('conn-count'),
    mod('hello-score'),
    // only browser ClientHellos pass (JA4 allow-list, GREASE, the post-quantum share)
    mod('tls-fingerprint', 'browser-only', { browserOnly: true }),
    mod('sni', 'sni reassembled', { reassemble: true }),
    mod('iran'),
    // the ISP's resolver is one of the few addresses that still reach abroad
    {
      name: 'iran allowlist',
      policy: (p) => modulePolicy('iran', p, { clientAllowlist: [`${p.addr.domestic}/32`] }),
    },
    // the published threshold is not known; a lower one shows the ban inside a cell's few pages
    mod('volume-ban', 'volume-ban', { bytes: 200 * 1024 }),
    mod('mux'),
    mod('tls-in-tls-ru'),
    mod('ech'),
    mod('port443-reset'),
    ...PROFILES.map((name) => ({ name, policy: (p: LabPlan) => profilePolicy(name, p) })),
  ];
}

export interface Cell {
  readonly transport: string;
  readonly column: string;
  readonly ok: number;
  readonly n: number;
  /** Modules that acted on this cell's connections, with counts. */
  readonly modules: Record<string, number>;
}

export interface CardOptions {
  readonly n: number;
  readonly timeoutS: number;
  /** Multiplies published durations (residuals, prober delays). */
  readonly timeFactor: number;
  readonly seed: number;
  readonly only?: readonly string[];
  /** Column names to run (default: all). */
  readonly columns?: readonly string[];
  readonly onProgress?: (line: string) => void;
}

/** Runs the matrix. The lab must be up (services running); the censor is restarted per column. */
export async function runReportCard(plan: LabPlan, o: CardOptions): Promise<Cell[]> {
  const transports = TRANSPORTS.filter((t) => (o.only ? o.only.includes(t.name) : !t.optIn));
  const usable: TransportEntry[] = [];
  try {
    return await runCells(plan, o, transports, usable);
  } finally {
    stopTransports();
    ladderServer = undefined;
    ladderAltServers = undefined;
  }
}

async function runCells(
  plan: LabPlan,
  o: CardOptions,
  transports: TransportEntry[],
  usable: TransportEntry[],
): Promise<Cell[]> {
  const cells: Cell[] = [];
  for (const t of transports) {
    const why = t.unverified ?? t.unavailable?.();
    if (why) {
      o.onProgress?.(`${t.name}: skipped — ${why}`);
      continue;
    }
    await t.setup?.(plan);
    usable.push(t);
  }
  for (const col of columns().filter(
    (c) => !o.columns || c.name === 'none' || o.columns.includes(c.name),
  )) {
    const policy = { ...col.policy(plan), timeFactor: o.timeFactor, seed: o.seed };
    // A campaign must finish inside its cell: prober delays are capped (the published long tail of
    // hours would outlast the card), and the card waits for the verdict (below).
    if (policy.modules.probe)
      policy.modules = { ...policy.modules, probe: { ...policy.modules.probe, maxDelayS: 2 } };
    if (policy.modules.tor)
      policy.modules = { ...policy.modules, tor: { ...policy.modules.tor, maxDelayS: 2 } };
    for (const t of usable) {
      await startCensor(plan, policy); // fresh state: no residuals from the previous cell
      let ok = 0;
      const from = eventsSize(plan);
      for (let i = 0; i < o.n; i++) {
        const r = await t.attempt(plan, o.timeoutS);
        if (r.ok) ok++;
        // The prober's verdict on a first flow decides what the next ones meet: wait for it.
        if (i === 0) await awaitProbeVerdicts(plan, from);
        // Independent trials: after a failure, wait out any residual (180 s × timeFactor).
        if (!r.ok) await new Promise((res) => setTimeout(res, 180_000 * o.timeFactor + 100));
      }
      await awaitProbeVerdicts(plan, from);
      const modules = countEvents(plan, from);
      cells.push({ transport: t.name, column: col.name, ok, n: o.n, modules });
      o.onProgress?.(
        `${t.name} × ${col.name}: ${ok}/${o.n}${
          Object.keys(modules).length
            ? ` (${Object.entries(modules)
                .map(([k, v]) => `${k}:${v}`)
                .join(' ')})`
            : ''
        }`,
      );
    }
  }
  return cells;
}

function eventsSize(plan: LabPlan): number {
  const f = eventsPath(plan);
  return existsSync(f) ? readFileSync(f).length : 0;
}

/** Waits (at most 90 s) until every probe campaign scheduled since `from` has a verdict. */
async function awaitProbeVerdicts(plan: LabPlan, from: number): Promise<void> {
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    const text = existsSync(eventsPath(plan))
      ? readFileSync(eventsPath(plan)).subarray(from).toString()
      : '';
    const count = (re: RegExp) => (text.match(re) ?? []).length;
    if (
      count(/"module":"(probe|tor)","action":"schedule"/g) <=
      count(/"module":"(probe|tor)","action":"(confirm|clear)"/g)
    )
      return;
  }
}

function countEvents(plan: LabPlan, from: number): Record<string, number> {
  const f = eventsPath(plan);
  if (!existsSync(f)) return {};
  const out: Record<string, number> = {};
  for (const line of readFileSync(f).subarray(from).toString().split('\n')) {
    if (!line) continue;
    try {
      const e = JSON.parse(line) as { module: string; action: string };
      if (
        e.action === 'spared' ||
        e.action === 'schedule' ||
        e.action === 'probe' ||
        (e.module === 'tor' && e.action === 'flag')
      )
        continue;
      const k = `${e.module}/${e.action}`;
      out[k] = (out[k] ?? 0) + 1;
    } catch {
      // partial line
    }
  }
  return out;
}

/** The matrix as text: one row per transport, one column per policy, "ok/n" in each cell. */
export function formatCard(cells: readonly Cell[]): string {
  const cols = [...new Set(cells.map((c) => c.column))];
  const rows = [...new Set(cells.map((c) => c.transport))];
  const w0 = Math.max(9, ...rows.map((r) => r.length));
  const widths = cols.map((c) => Math.max(c.length, 7));
  const lines = [
    ['transport'.padEnd(w0), ...cols.map((c, i) => c.padStart(widths[i]!))].join('  '),
  ];
  for (const r of rows) {
    const parts = [r.padEnd(w0)];
    cols.forEach((c, i) => {
      const cell = cells.find((x) => x.transport === r && x.column === c);
      parts.push((cell ? `${Math.round((100 * cell.ok) / cell.n)}%` : '-').padStart(widths[i]!));
    });
    lines.push(parts.join('  '));
  }
  lines.push('', 'which module acted (events per cell):');
  for (const c of cells)
    if (Object.keys(c.modules).length > 0)
      lines.push(
        `  ${c.transport} × ${c.column}: ${Object.entries(c.modules)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ')}`,
      );
  return lines.join('\n');
}
