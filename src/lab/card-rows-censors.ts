/**
 * The report card's rows for the 2024–2026 techniques: the byte budget, connection-count policing,
 * the multiplexing classifier, whitelist mode and the TLS-in-TLS browsing control.
 * @module
 */
import { caPath, CLI_PATH, LADDER_NAME, spawnInNamespace, waitForLog } from './lab.js';
import {
  LADDER_CONTROL_PORT,
  LADDER_SS_METHOD,
  ladderRotatingKey,
  ladderSsUri,
  ladderTrojanUri,
  startLadderAltServers,
  startLadderServer,
} from './ladder-server.js';
import { hasCommand, runIn, trackProcess } from './process-runner.js';
import {
  allocSocksPort,
  BROWSER_HEADERS,
  ladderEntry,
  type AttemptResult,
  type TransportEntry,
} from './card-transport.js';
import type { LabPlan } from './topology.js';

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

/**
 * Bytes per carrier in the carrier-stall row: above the largest byte budget (32,768 bytes), so every
 * carrier freezes below its cap and only the client's stall watch (carrier-dialer.ts `stallMs`)
 * moves the stream on.
 */
export const CARRIER_STALL_BYTES = 64 * 1024;

/**
 * The carrier-stall row's page, 36,232 bytes: more than one carrier can carry under any budget
 * (at most 32,768 bytes less a TLS handshake), so at least one carrier freezes, and at most a few.
 */
export const STALL_PAGE = '/page/7';

/**
 * Seconds the carrier-stall row gives each attempt whatever the card's timeout: each frozen carrier
 * costs the 5 s stall watch, and a page takes up to three of them under the smallest budgets.
 */
export const CARRIER_STALL_TIMEOUT_S = 30;

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
 * Requests one browsing connection makes in the `-browse` rows: with a browser's request headers
 * each is a client packet of over 411 bytes, so with the ClientHello there are 3 or more, the
 * TSPU's TLS-in-TLS pattern (n4p#363); a single curl request with curl's own headers is 1.
 */
export const BROWSE_FETCHES = 3;

/**
 * `--mux-sessions` of the renewing mux row: a fetch is one or two request/response pairs on the
 * outer flow (the request and its answer; the session's End frames), the TLS handshake two more,
 * so 8 sessions stay under half the `mux` module's 40 pairs.
 */
export const MUX_RENEW_SESSIONS = 8;

/**
 * A DNS query for the allowed site's A record from the client namespace, to `server(plan)`:53 over
 * UDP, by Node's resolver (one try); passes when the answer is the site's address.
 */
export function dnsEntry(
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
 * A row that fetches LARGE_PAGE (or `page`), directly (`uri` undefined) or through a Ladder client
 * with that key.
 */
function largePageRow(
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
    /** Another page of the lab's sites (`/page/N`). */
    page?: string;
    /** Seconds an attempt gets at least, whatever the card's timeout. */
    minTimeoutS?: number;
  } = {},
): TransportEntry {
  const socksPort = allocSocksPort();
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
            trackProcess(child);
            await waitForLog(plan, `ladder-client-${name}`, child, /SOCKS5 listening/);
          },
        }
      : {}),
    async attempt(plan, cardTimeoutS) {
      const timeoutS = Math.max(cardTimeoutS, opts.minTimeoutS ?? 0);
      const scheme = opts.https || !uri ? 'https' : 'http';
      const page = opts.page ?? LARGE_PAGE;
      const url = `${scheme}://${plan.names.allowed}${page}`;
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
      const got =
        r.out.split(`site ${plan.names.allowed}, page ${page.slice('/page/'.length)}\n`).length - 1;
      const ok = r.status === 0 && got === fetches;
      return {
        ok,
        // the end of the output: curl's error follows a partial page's body on its last line
        detail: ok ? 'ok' : `${got}/${fetches} pages begun; …${r.out.trim().slice(-160)}`,
      };
    },
  };
}

/** HTTPS browsing through a key: BROWSE_FETCHES small pages on one connection, browser headers. */
function browseRow(name: string, description: string, uri: (p: LabPlan) => string): TransportEntry {
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
}

/**
 * Control and answer rows for the 2024–2026 techniques: a large page (the byte budget), parallel
 * fetches (connection-count policing), many fetches (the multiplexing classifier), and Trojan whose
 * SNI is the allowed name (whitelist mode, ClientHello scoring, the budget's SNI exemption).
 */
export function censorsEntries(): TransportEntry[] {
  return [
    browseRow(
      'ladder-ss-https-browse',
      `Shadowsocks ${LADDER_SS_METHOD} carrying HTTPS browsing (${BROWSE_FETCHES} requests with a browser's headers on one connection): the tls-in-tls-ru control`,
      () => ladderSsUri(undefined, LADDER_CONTROL_PORT),
    ),
    browseRow(
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
    largePageRow(
      'https-large',
      `curl to https://allowed.lab${LARGE_PAGE} (54,547 bytes): the byte-budget control`,
      undefined,
    ),
    largePageRow(
      'https-parallel',
      `${PARALLEL_FETCHES} parallel curl fetches of it: the connection-count control`,
      undefined,
      { fetches: PARALLEL_FETCHES, parallel: true, keepAlive: true },
    ),
    largePageRow(
      'ladder-trojan-large',
      'Trojan over TLS (SNI ladder.lab) fetching the large page',
      (p) => ladderTrojanUri(p),
    ),
    largePageRow(
      'ladder-trojan-carrier',
      `the same over carriers of ${CARRIER_BYTES} bytes (trojan:// carrier=): each connection ends before the byte budget and the next takes the stream on (the answer to byte-budget)`,
      (p) =>
        ladderTrojanUri(p, undefined, false, LADDER_NAME, LADDER_NAME, undefined, CARRIER_BYTES),
    ),
    largePageRow(
      'ladder-trojan-carrier-stall',
      `the same over carriers of ${CARRIER_STALL_BYTES} bytes, above every byte budget, fetching ${STALL_PAGE} (36,232 bytes): each carrier freezes below its cap; after 5 s without a byte the client opens the next at the offset it holds (at least ${CARRIER_STALL_TIMEOUT_S} s per attempt)`,
      (p) =>
        ladderTrojanUri(
          p,
          undefined,
          false,
          LADDER_NAME,
          LADDER_NAME,
          undefined,
          CARRIER_STALL_BYTES,
        ),
      { page: STALL_PAGE, minTimeoutS: CARRIER_STALL_TIMEOUT_S },
    ),
    largePageRow(
      'ladder-trojan-allowed-sni',
      'the same with the allowed name as SNI (fronting through an allowed SNI; the certificate is pinned)',
      (p) => ladderTrojanUri(p, undefined, false, LADDER_NAME, p.names.allowed),
    ),
    largePageRow(
      'ladder-trojan-parallel',
      `Trojan over TLS, ${PARALLEL_FETCHES} parallel fetches: a connection each, all open until the last ends`,
      (p) => ladderTrojanUri(p),
      { fetches: PARALLEL_FETCHES, parallel: true, keepAlive: true },
    ),
    largePageRow(
      'ladder-trojan-parallel-capped',
      `the same with the client's --max-connections-per-server ${CONN_CAP}: the fetches beyond it wait for a connection to close (the answer to connection policing without Mux.Cool)`,
      (p) => ladderTrojanUri(p),
      {
        fetches: PARALLEL_FETCHES,
        parallel: true,
        clientArgs: ['--max-connections-per-server', String(CONN_CAP)],
      },
    ),
    largePageRow(
      'ladder-trojan-mux-parallel',
      `Trojan with Mux.Cool, ${PARALLEL_FETCHES} parallel fetches over one connection (the answer to connection policing)`,
      (p) => ladderTrojanUri(p, { padding: true }),
      { fetches: PARALLEL_FETCHES, parallel: true, clientArgs: ['--mux-sessions', '128'] },
    ),
    largePageRow(
      'ladder-trojan-mux-many',
      `Trojan with Mux.Cool, ${MANY_FETCHES} fetches one after another over one connection (the multiplexing control)`,
      (p) => ladderTrojanUri(p, { padding: true }),
      { fetches: MANY_FETCHES, clientArgs: ['--mux-sessions', '128'] },
    ),
    largePageRow(
      'ladder-trojan-failover',
      `a ladder:// key of Trojan to three server addresses, ${ROTATE_FETCHES} fetches one after another, a connection each; failover only (the volume-ban control)`,
      (p) => ladderRotatingKey(p),
      { fetches: ROTATE_FETCHES, altServers: true },
    ),
    largePageRow(
      'ladder-trojan-rotate',
      `the same with the client's --rotate-after ${ROTATE_AFTER}: new connections move to the next address after that volume (the answer to bans by volume per address)`,
      (p) => ladderRotatingKey(p),
      { fetches: ROTATE_FETCHES, altServers: true, clientArgs: ['--rotate-after', ROTATE_AFTER] },
    ),
    largePageRow(
      'ladder-trojan-mux-renew',
      `the same with the client's --mux-sessions ${MUX_RENEW_SESSIONS}: a fresh Mux.Cool connection after ${MUX_RENEW_SESSIONS} sessions, so no flow has the pair count of a long-lived mux (the answer to the multiplexing classifier that keeps mux)`,
      (p) => ladderTrojanUri(p, { padding: true }),
      { fetches: MANY_FETCHES, clientArgs: ['--mux-sessions', String(MUX_RENEW_SESSIONS)] },
    ),
    largePageRow(
      'ladder-trojan-many',
      `plain Trojan, ${MANY_FETCHES} fetches one after another, a connection each (the answer to the multiplexing classifier)`,
      (p) => ladderTrojanUri(p),
      { fetches: MANY_FETCHES },
    ),
  ];
}
