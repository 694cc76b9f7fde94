/**
 * Real VPN peers for the lab's fingerprint modules (docs/censorship-techniques.md §10, §11): Debian's `openvpn` (TLS mode,
 * UDP, point to point) and WireGuard through `wireguard-go` (userspace, configured by `wg` from
 * wireguard-tools) — a server in abroad, a client in client, tunnel addresses from 198.18.200.0/24
 * and 198.18.201.0/24 (the lab's space). Processes are started with spawnInNamespace (PIDs recorded)
 * and die with the lab's namespaces at `down`.
 * @module
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LadderError } from '../errors.js';
import { spawnInNamespace, waitForLog } from './lab.js';
import type { LabPlan, Role } from './topology.js';

export const OPENVPN_PORT = 1194;
export const WIREGUARD_PORT = 51820;
/** Tunnel addresses: server .1, client .2. */
export const OPENVPN_NET = '198.18.200';
export const WIREGUARD_NET = '198.18.201';

function has(cmd: string): boolean {
  return ['/usr/sbin', '/usr/bin', '/sbin', '/bin'].some((d) => existsSync(`${d}/${cmd}`));
}

export function openVpnUnavailable(): string | undefined {
  return has('openvpn') ? undefined : "Debian's openvpn is not installed (apt-get install openvpn)";
}

export function wireGuardUnavailable(): string | undefined {
  if (!has('wireguard-go') || !has('wg'))
    return 'wireguard-go and wg are not installed (apt-get install wireguard-go wireguard-tools)';
  return undefined;
}

export interface VpnPeers {
  readonly children: ChildProcess[];
  /** The server's tunnel address, to ping from the client namespace. */
  readonly serverTunnelIp: string;
}

/** Starts an OpenVPN server in abroad and a client in client; resolves when both are up. */
export async function startOpenVpn(plan: LabPlan): Promise<VpnPeers> {
  const dir = plan.stateDir;
  // openssl, not src/codec/x509.ts: OpenVPN checks the client certificate's purpose, and Ladder's
  // certificates say serverAuth only. These carry no extended key usage at all.
  const ossl = (...args: string[]) => {
    const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8', timeout: 20_000 });
    if (r.status !== 0) throw new LadderError('ERR_LAB', `openssl ${args[0]}: ${r.stderr.trim()}`);
  };
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  ossl(
    'req',
    '-x509',
    ...ec,
    '-keyout',
    'vpn-ca.key',
    '-out',
    'vpn-ca.pem',
    '-subj',
    '/CN=lab vpn CA',
    '-days',
    '30',
  );
  for (const who of ['server', 'client']) {
    ossl(
      'req',
      ...ec,
      '-keyout',
      `vpn-${who}.key`,
      '-out',
      `vpn-${who}.csr`,
      '-subj',
      `/CN=vpn-${who}`,
    );
    ossl(
      'x509',
      '-req',
      '-in',
      `vpn-${who}.csr`,
      '-CA',
      'vpn-ca.pem',
      '-CAkey',
      'vpn-ca.key',
      '-set_serial',
      String(Date.now()),
      '-out',
      `vpn-${who}.pem`,
      '-days',
      '30',
    );
  }
  const common = [
    'openvpn',
    '--dev',
    'tun',
    '--proto',
    'udp',
    '--ca',
    join(dir, 'vpn-ca.pem'),
    '--dh',
    'none',
    '--data-ciphers',
    'AES-256-GCM',
    '--ping',
    '1',
    '--verb',
    '3',
  ];
  // fresh logs: readiness is read from them
  for (const f of ['openvpn-server', 'openvpn-client']) writeFileSync(join(dir, `${f}.log`), '');
  const server = spawnInNamespace(plan, 'abroad', 'openvpn-server', [
    ...common,
    '--tls-server',
    '--local',
    plan.addr.ssIp,
    '--lport',
    String(OPENVPN_PORT),
    '--ifconfig',
    `${OPENVPN_NET}.1`,
    `${OPENVPN_NET}.2`,
    '--cert',
    join(dir, 'vpn-server.pem'),
    '--key',
    join(dir, 'vpn-server.key'),
  ]);
  await waitForLog(plan, 'openvpn-server', server, /link local \(bound\)/, 10_000);
  const client = spawnInNamespace(plan, 'client', 'openvpn-client', [
    ...common,
    '--tls-client',
    '--remote',
    plan.addr.ssIp,
    String(OPENVPN_PORT),
    '--nobind',
    '--ifconfig',
    `${OPENVPN_NET}.2`,
    `${OPENVPN_NET}.1`,
    '--cert',
    join(dir, 'vpn-client.pem'),
    '--key',
    join(dir, 'vpn-client.key'),
  ]);
  return { children: [server, client], serverTunnelIp: `${OPENVPN_NET}.1` };
}

/** Waits for the OpenVPN client's "Initialization Sequence Completed" (or fails after `ms`). */
export function openVpnReady(plan: LabPlan, peers: VpnPeers, ms: number): Promise<void> {
  return waitForLog(
    plan,
    'openvpn-client',
    peers.children[1]!,
    /Initialization Sequence Completed/,
    ms,
  );
}

function run(plan: LabPlan, role: Role, argv: string[], input?: string): string {
  const r = spawnSync('ip', ['netns', 'exec', plan.ns[role], ...argv], {
    encoding: 'utf8',
    timeout: 10_000,
    ...(input !== undefined ? { input } : {}),
  });
  if (r.status !== 0)
    throw new LadderError('ERR_LAB', `${argv.join(' ')} in ${plan.ns[role]}: ${r.stderr.trim()}`);
  return r.stdout.trim();
}

/**
 * Starts WireGuard (wireguard-go, foreground) in abroad and client, keys made with `wg genkey`, and
 * configures them with `wg set`. The client's first packet to the server starts the handshake.
 */
export async function startWireGuard(plan: LabPlan): Promise<VpnPeers> {
  const children: ChildProcess[] = [];
  const keys = (role: Role) => {
    const priv = run(plan, role, ['wg', 'genkey']);
    return { priv, pub: run(plan, role, ['wg', 'pubkey'], priv + '\n') };
  };
  const sk = keys('abroad');
  const ck = keys('client');
  const env = { WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1' };
  for (const [role, addr, own, peer, endpoint] of [
    ['abroad', `${WIREGUARD_NET}.1`, sk, ck, undefined],
    ['client', `${WIREGUARD_NET}.2`, ck, sk, `${plan.addr.ssIp}:${WIREGUARD_PORT}`],
  ] as const) {
    const name = `wireguard-${role}`;
    // wg reaches wireguard-go through /var/run/wireguard/<dev>.sock, which all namespaces share:
    // each device gets a name of its own (the lab prefix keeps labs apart).
    const dev = wgDevice(plan, role);
    const child = spawnInNamespace(plan, role, name, [
      'env',
      ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
      'wireguard-go',
      '-f',
      dev,
    ]);
    children.push(child);
    const deadline = Date.now() + 10_000;
    while (spawnSync('ip', ['-n', plan.ns[role], 'link', 'show', dev]).status !== 0) {
      if (Date.now() > deadline || child.exitCode !== null)
        throw new LadderError('ERR_LAB', `wireguard-go did not create ${dev} in ${plan.ns[role]}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const keyFile = join(plan.stateDir, `${name}.key`);
    writeFileSync(keyFile, own.priv + '\n', { mode: 0o600 });
    run(plan, role, [
      'wg',
      'set',
      dev,
      'private-key',
      keyFile,
      ...(role === 'abroad' ? ['listen-port', String(WIREGUARD_PORT)] : []),
      'peer',
      peer.pub,
      'allowed-ips',
      `${WIREGUARD_NET}.0/24`,
      ...(endpoint ? ['endpoint', endpoint] : []),
    ]);
    run(plan, role, ['ip', 'addr', 'add', `${addr}/24`, 'dev', dev]);
    run(plan, role, ['ip', 'link', 'set', dev, 'up']);
  }
  return { children, serverTunnelIp: `${WIREGUARD_NET}.1` };
}

function wgDevice(plan: LabPlan, role: Role): string {
  return `${plan.prefix}wg${role[0]}`;
}

/** Pings the server through the tunnel from the client namespace; true if any reply came back. */
export function pingThroughTunnel(plan: LabPlan, peers: VpnPeers, count: number): boolean {
  const r = spawnSync(
    'ip',
    [
      'netns',
      'exec',
      plan.ns.client,
      'ping',
      '-c',
      String(count),
      '-i',
      '0.02',
      '-W',
      '1',
      '-w',
      String(Math.ceil(count * 0.05) + 3),
      peers.serverTunnelIp,
    ],
    { encoding: 'utf8', timeout: 60_000 },
  );
  return r.status === 0;
}

/** Stops the peers this lab started (by PID). */
export function stopVpn(peers: VpnPeers): void {
  for (const c of peers.children)
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
}
