/**
 * The report card's Ladder rows: the real `ladder client` in the client namespace with each kind
 * of key against the real server in abroad, split routing, the naive-tunnel control and `--tun`.
 * @module
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PREFIX_PRESETS } from '../codec/ss-prefix.js';
import { AGENT_PATH, caPath, CLI_PATH, LADDER_NAME, spawnInNamespace, waitForLog } from './lab.js';
import {
  LADDER_CONTROL_PORT,
  LADDER_SS_METHOD,
  ladderSsDnsUri,
  ladderSsUri,
  ladderTrojanUri,
  ladderWsSsUri,
  ladderWsTrojanUri,
  startLadderServer,
} from './ladder-server.js';
import { hasCommand, runIn, trackProcess } from './process-runner.js';
import {
  allocSocksPort,
  curlSocks,
  ladderEntry,
  type AttemptResult,
  type TransportEntry,
} from './card-transport.js';
import { censorsEntries, dnsEntry } from './card-rows-censors.js';
import { NAIVE_TUNNEL_PORT } from './services.js';
import type { LabPlan } from './topology.js';

export function ladderTransports(): TransportEntry[] {
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
    ladderEntry(
      'ladder-ss-dns',
      "ladder client → ladder server, Shadowsocks 2022 in Ladder's DNS tunnel: queries through the domestic ISP's resolver, whose upstream delegates the tunnel's zone to the server",
      () => ladderSsDnsUri(),
      false,
      (p) => ['--dns-tunnel-resolver', `${p.addr.domestic}:53`],
    ),
  ];
}

/**
 * Ladder's transports as a user runs them, for the path benchmark (bench/path.ts): every transport
 * once, Trojan also over Mux.Cool with the client's defaults (sessions spread over 3 connections)
 * and with every session on one connection, as v2ray (`--mux-connections 1`). Not report-card rows.
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
    ladderEntry(
      'ladder-trojan-mux1',
      'the same with every session on one connection, as v2ray (--mux-connections 1)',
      (p) => ladderTrojanUri(p, { padding: true }),
      false,
      ['--mux-connections', '1'],
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
      trackProcess(child);
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
  const port = allocSocksPort();
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
      trackProcess(child);
      await waitForLog(plan, 'naive-client', child, /listening/);
    },
    attempt: (plan, timeoutS, page) =>
      curlSocks(plan, port, timeoutS, true, page, ['--proxy', `http://127.0.0.1:${port}`]),
  };
}

let tunClients = 0;

/**
 * `ladder client --tun` (issue #14): each attempt starts the full-device client in the client
 * namespace with a Trojan key (padded Mux.Cool, the allowed site's SNI), fetches the blocked site by name with a plain curl (no proxy
 * setting: DNS and the connection are caught by the TUN device), and stops the client (SIGTERM,
 * which restores the namespace's routing). Per attempt, because while it runs every other row's
 * traffic in the namespace would go through it too. Opt-in.
 */
export function ladderTunEntry(): TransportEntry {
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
