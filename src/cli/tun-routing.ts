/**
 * What `ladder client --tun` changes in the network namespace it runs in, and how it is undone.
 * Every rule and route added carries the routing protocol tag {@link TUN_PROTO}, so that cleanup
 * finds exactly ours, after a crash too (`ladder client --tun-cleanup`, and every `--tun` start).
 *
 * ```text
 *   link   <name>: TUN, mtu, 100.95.255.253/30, up           (gone with the process)
 *   table  7714:   default dev <name>                          (gone with the device)
 *   rules  7698  from <this machine's address> to <domestic resolver> ipproto udp dport <its port>
 *                lookup main          (with --rules: the client's own queries for DIRECT names)
 *          7699  ipproto udp/tcp dport 53 lookup 7714           (DNS to any address, the servers' too)
 *          7700  to <server> ipproto tcp/udp dport <its port> lookup main   (the client's own flows)
 *          7701  from <this machine's address> lookup main    (sockets bound to it: DIRECT, bypass.ts)
 *          7702  lookup 7714                                   (everything else: into the TUN)
 *          7703  unreachable                                   (kill switch: outlives the process)
 *   IPv6, carried (the device takes fd4c:6164:6472::1/126): table 7714 default dev <name>, and
 *          7699, 7700, 7702 and 7703 as for IPv4. No bypass rule: an IPv6 connect whose first
 *          lookup fails (after kill -9, at 7703) is looked up again with a source address chosen,
 *          which a 'from' rule would match, so every app would go around the dead tunnel.
 *   IPv6, where the device cannot take an IPv6 address (IPv6 off): 7700 to <server v6> and
 *          7703 unreachable: blocked, with or without the kill switch.
 * ```
 * Nothing else: no nftables or iptables rules, no sysctl, no change to the main table or to
 * /etc/resolv.conf (DNS to any address is caught at the device, fake-dns.ts).
 * @module
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { ConfigError, LadderError } from '../errors.js';

/** Routing protocol number tagging Ladder's rules and routes (ip rule ... protocol 231). */
export const TUN_PROTO = '231';
export const TUN_TABLE = '7714';
export const PREF = {
  dnsDirect: 7698,
  dns: 7699,
  server: 7700,
  bypass: 7701,
  tun: 7702,
  kill: 7703,
} as const;
/** The device's /30: its own address, and the NAT peer (tun-front.ts). */
export const TUN_ADDRESS = '100.95.255.253';
export const TUN_NAT_PEER = '100.95.255.254';
export const TUN_PREFIX_LEN = 30;
/** The device's IPv6 /126 (a unique local range, fake-dns.ts DEFAULT_FAKE_RANGE6 says why). */
export const TUN_ADDRESS6 = 'fd4c:6164:6472::1';
export const TUN_NAT_PEER6 = 'fd4c:6164:6472::2';
export const TUN_PREFIX_LEN6 = 126;

export interface Endpoint {
  address: string;
  port: number;
}

function serverRules(family: '-4' | '-6', servers: readonly Endpoint[], tag: string[]): void {
  for (const s of servers)
    for (const proto of ['tcp', 'udp'])
      ip([
        family,
        'rule',
        'add',
        'to',
        s.address,
        'ipproto',
        proto,
        'dport',
        String(s.port),
        'lookup',
        'main',
        'pref',
        `${PREF.server}`,
        ...tag,
      ]);
}

export interface TunRouting {
  name: string;
  mtu: number;
  /** The servers' addresses and ports: only those flows take the ordinary route. */
  servers4: readonly Endpoint[];
  servers6: readonly Endpoint[];
  bypass4: readonly string[];
  /** Domestic resolvers that the client's own bypassing sockets query for DIRECT names. */
  dnsDirect4?: readonly Endpoint[];
  killSwitch: boolean;
  /** IPv6 goes into the device (tunLinkUp gave it its IPv6 address); otherwise it is blocked. */
  ipv6: boolean;
}

function ip(args: string[]): string {
  try {
    return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: string; code?: string; message: string };
    if (e.code === 'ENOENT')
      throw new ConfigError('ERR_TUN', "--tun needs the 'ip' command (iproute2): install it");
    const why = (e.stderr ?? e.message).trim();
    if (/not permitted/i.test(why))
      throw new ConfigError(
        'ERR_TUN_NEEDS_ADMIN',
        `'ip ${args.join(' ')}' was refused (${why}): run as root, e.g. with sudo`,
      );
    throw new LadderError('ERR_TUN', `ip ${args.join(' ')}: ${why}`, { cause: err });
  }
}

function tryIp(args: string[]): boolean {
  try {
    ip(args);
    return true;
  } catch {
    return false;
  }
}

interface RuleJson {
  priority?: number;
  protocol?: string;
}

/** Ladder's rules now present, for one family: their priorities (one entry per rule). */
function ourRules(family: '-4' | '-6'): number[] {
  let text: string;
  try {
    text = ip([family, '-j', 'rule', 'show']);
  } catch {
    return []; // no IPv6 in this kernel: nothing of ours either
  }
  const rules = JSON.parse(text || '[]') as RuleJson[];
  return rules.filter((r) => r.protocol === TUN_PROTO).map((r) => r.priority ?? 0);
}

/** The device of a --tun now running in this namespace (a route in our table), if any. */
export function runningTunDevice(): string | undefined {
  try {
    const routes = JSON.parse(ip(['-j', 'route', 'show', 'table', TUN_TABLE]) || '[]') as {
      dev?: string;
    }[];
    return routes.find((r) => r.dev)?.dev;
  } catch {
    return undefined;
  }
}

/**
 * Removes every rule and route Ladder's --tun added (idempotent; safe when there are none).
 * Returns how many it removed. The device itself goes with its process.
 */
export function tunCleanup(deviceName?: string): number {
  let removed = 0;
  for (const family of ['-4', '-6'] as const)
    for (const pref of ourRules(family))
      if (tryIp([family, 'rule', 'del', 'pref', String(pref), 'protocol', TUN_PROTO])) removed++;
  for (const family of ['-4', '-6'] as const) {
    let routes: number;
    try {
      routes = (JSON.parse(ip([family, '-j', 'route', 'show', 'table', TUN_TABLE]) || '[]') as [])
        .length;
    } catch {
      continue; // no such table (or no IPv6): nothing to flush
    }
    if (routes > 0 && tryIp([family, 'route', 'flush', 'table', TUN_TABLE, 'proto', TUN_PROTO]))
      removed += routes;
  }
  if (deviceName && tryIp(['link', 'del', deviceName])) removed++;
  return removed;
}

/**
 * Assigns the device its addresses and MTU and brings it up. Returns whether it took its IPv6
 * address (false where IPv6 is off: IPv6 is then blocked, not carried). `nodad`: the address is
 * usable at once, and nothing else is on this link to collide with.
 */
export function tunLinkUp(name: string, mtu: number): boolean {
  ip(['link', 'set', 'dev', name, 'mtu', String(mtu)]);
  ip(['addr', 'add', `${TUN_ADDRESS}/${TUN_PREFIX_LEN}`, 'dev', name]);
  // IPv6 needs an MTU of at least 1280 (RFC 8200 §5).
  const v6 =
    mtu >= 1280 &&
    tryIp(['-6', 'addr', 'add', `${TUN_ADDRESS6}/${TUN_PREFIX_LEN6}`, 'dev', name, 'nodad']);
  ip(['link', 'set', 'dev', name, 'up']);
  return v6;
}

/** Sends the namespace's traffic into the device (see the module comment). */
export function tunRoutingUp(r: TunRouting): void {
  const tag = ['protocol', TUN_PROTO];
  ip(['route', 'add', 'default', 'dev', r.name, 'table', TUN_TABLE, 'proto', TUN_PROTO]);
  for (const b of r.bypass4)
    for (const d of r.dnsDirect4 ?? [])
      ip([
        '-4',
        'rule',
        'add',
        'from',
        `${b}/32`,
        'to',
        `${d.address}/32`,
        'ipproto',
        'udp',
        'dport',
        `${d.port}`,
        'lookup',
        'main',
        'pref',
        `${PREF.dnsDirect}`,
        ...tag,
      ]);
  dnsRules('-4', tag);
  serverRules('-4', r.servers4, tag);
  for (const b of r.bypass4)
    ip([
      '-4',
      'rule',
      'add',
      'from',
      `${b}/32`,
      'lookup',
      'main',
      'pref',
      `${PREF.bypass}`,
      ...tag,
    ]);
  if (r.killSwitch) ip(['-4', 'rule', 'add', 'unreachable', 'pref', `${PREF.kill}`, ...tag]);
  if (r.ipv6) {
    ip(['-6', 'route', 'add', 'default', 'dev', r.name, 'table', TUN_TABLE, 'proto', TUN_PROTO]);
    dnsRules('-6', tag);
    serverRules('-6', r.servers6, tag);
    if (r.killSwitch) ip(['-6', 'rule', 'add', 'unreachable', 'pref', `${PREF.kill}`, ...tag]);
  } else if (tryIp(['-6', 'rule', 'add', 'unreachable', 'pref', `${PREF.kill}`, ...tag])) {
    // IPv6 not carried: blocked whatever the kill switch says; skipped where the kernel has none.
    serverRules('-6', r.servers6, tag);
  }
  // Last: from here on, new connections enter the device.
  if (r.ipv6) ip(['-6', 'rule', 'add', 'lookup', TUN_TABLE, 'pref', `${PREF.tun}`, ...tag]);
  ip(['-4', 'rule', 'add', 'lookup', TUN_TABLE, 'pref', `${PREF.tun}`, ...tag]);
}

/** DNS (UDP and TCP port 53) of one family goes to the device, whatever the destination. */
function dnsRules(family: '-4' | '-6', tag: readonly string[]): void {
  for (const proto of ['udp', 'tcp'])
    ip([
      family,
      'rule',
      'add',
      'ipproto',
      proto,
      'dport',
      '53',
      'lookup',
      TUN_TABLE,
      'pref',
      `${PREF.dns}`,
      ...tag,
    ]);
}

/** Routes more servers' flows around the device (rule 7700), once the tunnel is up. */
export function tunAddServers(servers4: readonly Endpoint[], servers6: readonly Endpoint[]): void {
  const tag = ['protocol', TUN_PROTO];
  serverRules('-4', servers4, tag);
  if (servers6.length > 0) serverRules('-6', servers6, tag);
}

/** Global addresses of this namespace outside the device, for the bypass rules. */
export function localAddresses(exceptDevice: string): { v4: string[]; v6: string[] } {
  const list = JSON.parse(ip(['-j', 'addr', 'show']) || '[]') as {
    ifname: string;
    addr_info?: { family: string; local: string; scope: string }[];
  }[];
  const v4: string[] = [];
  const v6: string[] = [];
  for (const link of list) {
    if (link.ifname === exceptDevice) continue;
    for (const a of link.addr_info ?? []) {
      if (a.scope !== 'global') continue;
      (a.family === 'inet' ? v4 : v6).push(a.local);
    }
  }
  return { v4, v6 };
}

/** True if this process may administer the network (CAP_NET_ADMIN, bit 12, in its effective set). */
export function hasNetAdmin(): boolean {
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? (BigInt(`0x${m[1]}`) & (1n << 12n)) !== 0n : true;
  } catch {
    return true; // no /proc: let the first command say what is wrong
  }
}
