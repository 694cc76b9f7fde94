/**
 * Ladder's server in the lab's abroad namespace, as the report card and the lab tests run it: the
 * real CLI with every key on one port, a classic-Shadowsocks control on a second port, and the
 * key URIs the rows' clients use.
 * @module
 */
import { randomBytes, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatSsUri } from '../codec/access-key-uri.js';
import { formatTrojanUri } from '../codec/trojan-uri.js';
import { formatLadderKey } from '../codec/ladder-key.js';
import type { TlsFingerprint } from '../codec/tls-fingerprint-param.js';
import { CLI_PATH, LADDER_NAME, spawnInNamespace, waitForLog } from './lab.js';
import { LADDER_DNS_TUNNEL_DOMAIN } from './services.js';
import { trackProcess } from './process-runner.js';
import type { LabPlan } from './topology.js';

/** Ladder's server in abroad: every key on one port, as `ladder server` is meant to be run. */
export const LADDER_PORT = 443;
/**
 * The classic-Shadowsocks control runs on a second server port of the same address: its blocked
 * connections draw FET residuals on their 3-tuple, and the kernel keeps retransmitting their data
 * after an attempt gave up — the next cell's fresh censor sees those as new flows with a
 * non-exempt first payload. On a shared port those would spill onto the next rows; on its own port
 * they cannot.
 */
export const LADDER_CONTROL_PORT = 8388;
export const LADDER_SS_METHOD = '2022-blake3-aes-256-gcm';
/** The lab server's secrets and WebSocket paths, made on first use. */
interface LadderSecrets {
  readonly ss: string;
  readonly trojan: string;
  readonly wsSs: string;
  readonly wsTrojan: string;
  readonly wsSsPath: string;
  readonly wsTrojanPath: string;
}
let secrets: LadderSecrets | undefined;

function ladderSecrets(): LadderSecrets {
  secrets ??= {
    ss: randomBytes(32).toString('base64'),
    trojan: randomBytes(18).toString('base64url'),
    wsSs: randomBytes(32).toString('base64'),
    wsTrojan: randomBytes(18).toString('base64url'),
    // secret WebSocket paths; every other path of the TLS port is the decoy site
    wsSsPath: `/${randomBytes(9).toString('base64url')}`,
    wsTrojanPath: `/${randomBytes(9).toString('base64url')}`,
  };
  return secrets;
}
let ladderServer: Promise<void> | undefined;
/** Extra flags for the lab's `ladder server` processes (the path bench's `--ladder-cc`). */
let ladderServerArgs: readonly string[] = [];

/** Sets extra flags for the Ladder servers the next setups start (e.g. `--tcp-congestion bbr`). */
export function setLadderServerArgs(args: readonly string[]): void {
  ladderServerArgs = args;
}

export function ladderSsUri(prefix?: Uint8Array, port = LADDER_PORT): string {
  return formatSsUri({
    method: LADDER_SS_METHOD,
    password: ladderSecrets().ss,
    host: LADDER_NAME,
    port,
    ...(prefix ? { prefix } : {}),
  });
}

/** Shadowsocks in the DNS tunnel, under the zone the lab's resolver delegates to the server. */
export function ladderSsDnsUri(): string {
  return formatSsUri({
    method: LADDER_SS_METHOD,
    password: ladderSecrets().ss,
    host: LADDER_NAME,
    port: LADDER_PORT,
    dns: LADDER_DNS_TUNNEL_DOMAIN,
  });
}

export function ladderTrojanUri(
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
    password: ladderSecrets().trojan,
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
export function ladderWsSsUri(plan: LabPlan): string {
  return formatSsUri({
    method: LADDER_SS_METHOD,
    password: ladderSecrets().wsSs,
    host: LADDER_NAME,
    port: LADDER_PORT,
    plugin: {
      name: 'v2ray-plugin',
      options: {
        tls: '',
        host: LADDER_NAME,
        path: ladderSecrets().wsSsPath,
        mux: '0',
        pin: ladderPin(plan),
      },
    },
  });
}

/** Trojan in a WebSocket over TLS, as v2ray's trojan outbound with network ws. */
export function ladderWsTrojanUri(plan: LabPlan): string {
  return formatTrojanUri({
    password: ladderSecrets().wsTrojan,
    host: LADDER_NAME,
    port: LADDER_PORT,
    sni: LADDER_NAME,
    pinSha256: ladderPin(plan),
    type: 'ws',
    wsHost: LADDER_NAME,
    path: ladderSecrets().wsTrojanPath,
  });
}

/** Starts `ladder server` in abroad once per card (the real CLI, the same binary users run). */
export function startLadderServer(plan: LabPlan): Promise<void> {
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
      '--dns-tunnel',
      LADDER_DNS_TUNNEL_DOMAIN,
      '--dns-tunnel-listen',
      `${plan.addr.ladderIp}:53`,
      ...ladderServerArgs,
    ]);
    trackProcess(child);
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
    trackProcess(control);
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
export function startLadderAltServers(plan: LabPlan): Promise<void> {
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
        trackProcess(child);
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
export function ladderRotatingKey(plan: LabPlan): string {
  return formatLadderKey({
    transports: [plan.addr.ladderIp, ...plan.addr.ladderAltIps].map((ip) =>
      ladderTrojanUri(plan, undefined, false, ip),
    ),
  });
}

/** The next setup starts the lab's Ladder servers anew (after a card has stopped them). */
export function forgetLadderServer(): void {
  ladderServer = undefined;
  ladderAltServers = undefined;
}
