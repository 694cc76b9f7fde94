/**
 * The report card's reference rows: curl to the lab's sites, raw first packets to the echo sink,
 * Debian's shadowsocks-libev, Tor through a bridge and the reference VPNs.
 * @module
 */
import { AGENT_PATH, caPath, spawnInNamespace, waitForLog } from './lab.js';
import { SINK_PORT } from './services.js';
import { atStop, hasCommand, runIn } from './process-runner.js';
import { pageArgs, type TransportEntry } from './card-transport.js';
import type { LabPlan } from './topology.js';
import {
  startTorBridge,
  startTorClient,
  stopTor,
  torUnavailable,
  waitForBootstrap,
  TOR_HANDSHAKE_DONE,
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
/** ss-server's port in abroad (the `shadowsocks-libev` row). */
export const SS_PORT = 8388;
const SS_LOCAL_PORT = 1080;

/** The rows without Ladder: plain curl, raw first packets and shadowsocks-libev. */
export function referenceRows(): TransportEntry[] {
  return [
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
    libevRow(),
  ];
}

/** Debian's ss-local → ss-server, curl through its SOCKS5 port. */
function libevRow(): TransportEntry {
  return {
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
  };
}

/**
 * Reference: Debian's tor. A bridge in abroad (once per card); each attempt is a fresh Tor client
 * (new data directory) in the client namespace, a success if its bootstrap reaches 15% (the TLS and
 * link handshake with the bridge done; with no directory authority in the lab it goes no further
 * than about 30%). Opt-in (a tor process per attempt).
 */
export function torTransport(): TransportEntry {
  let n = 0;
  return {
    name: 'tor',
    description: "Debian's tor: a client bootstrapping through the lab's bridge (reference)",
    optIn: true,
    unavailable: torUnavailable,
    async setup(plan) {
      const bridge = await startTorBridge(plan);
      atStop(() => stopTor(bridge));
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
export function vpnTransports(): TransportEntry[] {
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
