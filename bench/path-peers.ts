/**
 * The other peers of the path benchmark (bench/path.ts), each in the lab as a user runs it: its
 * server in abroad (on the ss address, a port each), its client in the client namespace.
 *
 *   trojan-gfw          trojan -c (client: SOCKS5)            -> trojan -c (server), TLS 1.3
 *   v2ray-ss            v2ray (socks in, shadowsocks out)     -> v2ray (shadowsocks in), aes-256-gcm
 *   v2ray-vmess         v2ray (socks in, vmess out)           -> v2ray (vmess in), aes-128-gcm
 *   v2ray-trojan        v2ray (socks in, trojan out, tls)     -> v2ray (trojan in, tls)
 *   wireguard           wireguard-go + wg, both ends          (the origin routed through the tunnel)
 *   openvpn             openvpn, TLS mode over UDP            (the same)
 *
 * The TLS peers use Ladder's lab certificate (ladder.lab, issued by the lab CA) and verify it with
 * the CA, as Ladder's own clients verify it by pin. The VPNs carry no SOCKS5: the measuring client
 * connects to an address of the origin routed through the tunnel device (`direct`; WireGuard the
 * allowed site's, OpenVPN the blocked site's, with no censor on the path), and resolves nothing (a browser behind a VPN would ask a resolver through the tunnel first, once per name).
 * Every process is started with spawnInNamespace (PID recorded) and stopped by {@link stopPeers};
 * the lab's teardown kills whatever is left in its namespaces.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { caPath, LADDER_NAME, spawnInNamespace, waitForLog } from '../src/lab/lab.js';
import type { LabPlan, Role } from '../src/lab/topology.js';
import {
  openVpnReady,
  openVpnUnavailable,
  startOpenVpn,
  startWireGuard,
  stopVpn,
  wireGuardUnavailable,
  type VpnPeers,
} from '../src/lab/vpn-peers.js';

export interface PathPeer {
  readonly name: string;
  /** Local SOCKS5 port in the client namespace; absent for a full-device tunnel. */
  readonly socksPort?: number;
  /** For a full-device tunnel: the origin's address, routed through the tunnel. */
  direct?: string;
  /** Names in the server processes' command lines, to sum their RSS. */
  readonly serverNames: readonly string[];
  unavailable(): string | undefined;
  setup(plan: LabPlan): Promise<void>;
}

const children: ChildProcess[] = [];
const vpns: VpnPeers[] = [];

/** Stops every process these peers started, by PID. */
export function stopPeers(): void {
  for (const c of children.splice(0))
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  for (const v of vpns.splice(0)) stopVpn(v);
}

function has(cmd: string): boolean {
  return ['/usr/bin', '/usr/sbin', '/bin', '/usr/local/bin'].some((d) => existsSync(`${d}/${cmd}`));
}

const PASSWORD = 'ladder-path-bench-password';
const VMESS_ID = '6f9b1e4c-2c1d-4c47-9d3e-5b2a7c1e8f10';

function start(
  plan: LabPlan,
  role: Role,
  name: string,
  argv: string[],
  ready: RegExp,
): Promise<void> {
  const child = spawnInNamespace(plan, role, name, argv);
  children.push(child);
  return waitForLog(plan, name, child, ready);
}

function writeConfig(plan: LabPlan, name: string, config: object): string {
  const file = join(plan.stateDir, `${name}.json`);
  writeFileSync(file, JSON.stringify(config, null, 2), { mode: 0o600 });
  return file;
}

const TROJAN_TCP = {
  no_delay: true,
  keep_alive: true,
  reuse_port: false,
  fast_open: false,
  fast_open_qlen: 20,
};

function trojanGfw(socksPort: number, port: number): PathPeer {
  return {
    name: 'trojan-gfw',
    socksPort,
    serverNames: ['trojan-gfw-server'],
    unavailable: () =>
      has('trojan') ? undefined : 'trojan is not installed (apt-get install trojan)',
    async setup(plan) {
      const server = writeConfig(plan, 'trojan-gfw-server', {
        run_type: 'server',
        local_addr: plan.addr.ssIp,
        local_port: port,
        remote_addr: plan.addr.allowedIp,
        remote_port: 80,
        password: [PASSWORD],
        log_level: 1,
        ssl: {
          cert: join(plan.stateDir, 'ladder-cert.pem'),
          key: join(plan.stateDir, 'ladder-key.pem'),
          key_password: '',
          prefer_server_cipher: true,
          alpn: ['http/1.1'],
          reuse_session: true,
          session_ticket: false,
          session_timeout: 600,
          plain_http_response: '',
          curves: '',
          dhparam: '',
        },
        tcp: { prefer_ipv4: true, ...TROJAN_TCP },
        mysql: { enabled: false },
      });
      const client = writeConfig(plan, 'trojan-gfw-client', {
        run_type: 'client',
        local_addr: '127.0.0.1',
        local_port: socksPort,
        remote_addr: plan.addr.ssIp,
        remote_port: port,
        password: [PASSWORD],
        log_level: 1,
        ssl: {
          verify: true,
          verify_hostname: true,
          cert: caPath(plan),
          sni: LADDER_NAME,
          alpn: ['http/1.1'],
          reuse_session: true,
          session_ticket: false,
          curves: '',
        },
        tcp: TROJAN_TCP,
      });
      // the config's file name, in the command line, tells this server's RSS from the others'
      await start(plan, 'abroad', 'trojan-gfw-server', ['trojan', '-c', server], /started at/i);
      await start(plan, 'client', 'trojan-gfw-client', ['trojan', '-c', client], /started at/i);
    },
  };
}

type V2rayKind = 'ss' | 'vmess' | 'trojan';

function v2ray(kind: V2rayKind, socksPort: number, port: number): PathPeer {
  const name = `v2ray-${kind}`;
  const tls = kind === 'trojan';
  return {
    name,
    socksPort,
    serverNames: [`${name}-server`],
    unavailable: () =>
      has('v2ray') ? undefined : 'v2ray is not installed (apt-get install v2ray)',
    async setup(plan) {
      const inbound =
        kind === 'ss'
          ? { method: 'aes-256-gcm', password: PASSWORD, network: 'tcp' }
          : kind === 'vmess'
            ? { clients: [{ id: VMESS_ID, alterId: 0 }] }
            : { clients: [{ password: PASSWORD }] };
      const outbound =
        kind === 'ss'
          ? {
              servers: [
                { address: plan.addr.ssIp, port, method: 'aes-256-gcm', password: PASSWORD },
              ],
            }
          : kind === 'vmess'
            ? {
                vnext: [
                  {
                    address: plan.addr.ssIp,
                    port,
                    users: [{ id: VMESS_ID, alterId: 0, security: 'aes-128-gcm' }],
                  },
                ],
              }
            : { servers: [{ address: plan.addr.ssIp, port, password: PASSWORD }] };
      const log = { loglevel: 'warning', access: '/dev/null' };
      const server = writeConfig(plan, `${name}-server`, {
        log,
        inbounds: [
          {
            protocol: kind === 'ss' ? 'shadowsocks' : kind,
            settings: inbound,
            streamSettings: {
              network: 'tcp',
              ...(tls
                ? {
                    security: 'tls',
                    tlsSettings: {
                      certificates: [
                        {
                          certificateFile: join(plan.stateDir, 'ladder-cert.pem'),
                          keyFile: join(plan.stateDir, 'ladder-key.pem'),
                        },
                      ],
                      alpn: ['http/1.1'],
                    },
                  }
                : {}),
            },
            listen: plan.addr.ssIp,
            port,
          },
        ],
        outbounds: [{ protocol: 'freedom' }],
      });
      const client = writeConfig(plan, `${name}-client`, {
        log,
        inbounds: [
          {
            listen: '127.0.0.1',
            port: socksPort,
            protocol: 'socks',
            settings: { auth: 'noauth', udp: false },
          },
        ],
        outbounds: [
          {
            protocol: kind === 'ss' ? 'shadowsocks' : kind,
            settings: outbound,
            streamSettings: {
              network: 'tcp',
              ...(tls
                ? {
                    security: 'tls',
                    tlsSettings: {
                      serverName: LADDER_NAME,
                      alpn: ['http/1.1'],
                      certificates: [{ usage: 'verify', certificateFile: caPath(plan) }],
                    },
                  }
                : {}),
            },
          },
        ],
      });
      await start(plan, 'abroad', `${name}-server`, ['v2ray', '-config', server], /started/i);
      await start(plan, 'client', `${name}-client`, ['v2ray', '-config', client], /started/i);
    },
  };
}

function run(plan: LabPlan, role: Role, argv: string[]): string {
  const r = spawnSync('ip', ['netns', 'exec', plan.ns[role], ...argv], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  if (r.status !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr.trim()}`);
  return r.stdout.trim();
}

/** A full-device VPN: the origin's address routed through it from the client namespace. */
function vpn(name: 'wireguard' | 'openvpn'): PathPeer {
  const peer: PathPeer = {
    name,
    serverNames: [name === 'wireguard' ? 'wireguard-go' : 'openvpn'],
    unavailable: () => (name === 'wireguard' ? wireGuardUnavailable() : openVpnUnavailable()),
    async setup(plan) {
      // Each VPN its own address of the lab's web service (both answer as allowed.lab, the
      // certificate names both), so that the two tunnels' routes do not collide.
      const origin = name === 'wireguard' ? plan.addr.allowedIp : plan.addr.blockedIp;
      if (name === 'openvpn') {
        const peers = await startOpenVpn(plan);
        vpns.push(peers);
        await openVpnReady(plan, peers, 30_000);
        run(plan, 'client', ['ip', 'route', 'add', `${origin}/32`, 'via', peers.serverTunnelIp]);
      } else {
        const peers = await startWireGuard(plan);
        vpns.push(peers);
        // the client's peer must accept the origin's address as a destination too
        const dev = `${plan.prefix}wgc`;
        const server = run(plan, 'client', ['wg', 'show', dev, 'peers']).split('\n')[0]!;
        run(plan, 'client', [
          'wg',
          'set',
          dev,
          'peer',
          server,
          'allowed-ips',
          `${peers.serverTunnelIp.replace(/\.\d+$/, '.0')}/24,${origin}/32`,
        ]);
        run(plan, 'client', ['ip', 'route', 'add', `${origin}/32`, 'dev', dev]);
      }
      peer.direct = origin;
    },
  };
  return peer;
}

/** The peers beside shadowsocks-libev and Ladder, with SOCKS5 ports from `firstSocksPort`. */
export function pathPeers(firstSocksPort = 1300): PathPeer[] {
  return [
    trojanGfw(firstSocksPort, 8443),
    v2ray('ss', firstSocksPort + 1, 8391),
    v2ray('vmess', firstSocksPort + 2, 8390),
    v2ray('trojan', firstSocksPort + 3, 8444),
    vpn('wireguard'),
    vpn('openvpn'),
  ];
}
