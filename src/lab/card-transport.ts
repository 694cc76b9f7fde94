/**
 * A row of the lab's report card: a transport, how to set it up and how to make one attempt, and
 * the pieces most rows share (a Ladder client with a key, a curl through a local SOCKS5 port).
 * @module
 */
import { caPath, CLI_PATH, spawnInNamespace, waitForLog } from './lab.js';
import { startLadderServer } from './ladder-server.js';
import { hasCommand, runIn, trackProcess } from './process-runner.js';
import type { LabPlan } from './topology.js';

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
export function pageArgs(page: string | undefined): string[] {
  return page ? BROWSER_HEADERS.flatMap((h) => ['-H', h]) : [];
}

let nextSocksPort = 1081;

/** A local SOCKS5 port in the client namespace that no other row uses. */
export function allocSocksPort(): number {
  return nextSocksPort++;
}

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
export function ladderEntry(
  name: string,
  description: string,
  uri: (p: LabPlan) => string,
  https = false,
  clientArgs: readonly string[] | ((p: LabPlan) => readonly string[]) = [],
): TransportEntry {
  const socksPort = allocSocksPort();
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
        ...(typeof clientArgs === 'function' ? clientArgs(plan) : clientArgs),
      ]);
      trackProcess(child);
      await waitForLog(plan, `ladder-client-${name}`, child, /SOCKS5 listening/);
    },
    attempt: (plan, timeoutS, page) => curlSocks(plan, socksPort, timeoutS, https, page),
  };
}

/** A fresh curl from the client namespace through a local SOCKS5 proxy to the allowed site. */
export async function curlSocks(
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
