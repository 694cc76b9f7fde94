/**
 * The lab's network: four namespaces joined by veth links through the wall, addressed only from
 * 198.18.0.0/15 and 2001:2::/48 (RFC 2544 / RFC 5180 benchmarking space), with no link to the host.
 *
 * ```text
 *   client 198.18.1.2 ──c0═wc── wall ──wa═a0── abroad 198.19.2.2 (+ .10 blocked, .11 allowed,
 *                                 │                                .20 ladder, .21 ss, .30 sink, .40 tor,
 *                                 │                                .53 dns)
 *   domestic 198.18.3.2 ──d0═wd───┘   prober source 198.18.250.1-4 on the wall
 *
 *   wall: ip rule iif {wc,wd,wa} → table 100: default dev t0 (a persistent TUN the censor attaches to)
 *         packets the censor writes back enter on t0 and take the main table to their real next hop
 * ```
 * Every namespace is named `<prefix><role>`; `down` removes every namespace starting with the prefix
 * (killing the processes inside them first, which are the lab's own), and the /etc/netns/<name>
 * resolver files and the state directory, so it also cleans up after a crash. With no censor
 * attached, the TUN device has no carrier and the wall forwards nothing: the lab fails closed.
 * @module
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LadderError } from '../errors.js';

export const DEFAULT_PREFIX = 'ldr-';
export const ROLES = ['client', 'wall', 'abroad', 'domestic'] as const;
export type Role = (typeof ROLES)[number];

export interface LabPlan {
  readonly prefix: string;
  readonly ns: Record<Role, string>;
  readonly stateDir: string;
  readonly tun: string;
  /** MTU of every lab link and the TUN: 9000 by default (see docs/lab.md, "Speed"); 1500 is a real path. */
  readonly mtu: number;
  readonly addr: {
    readonly client: string;
    readonly client6: string;
    readonly domestic: string;
    readonly abroad: string;
    readonly blockedIp: string;
    readonly allowedIp: string;
    readonly ladderIp: string;
    /** More addresses of Ladder's server, for keys that rotate among addresses (`ladder-trojan-rotate`). */
    readonly ladderAltIps: readonly string[];
    readonly ssIp: string;
    readonly sinkIp: string;
    /** A Tor bridge (test/lab/tor.test.ts, the report card's `tor` row). */
    readonly torIp: string;
    readonly dnsIp: string;
    readonly abroad6: string;
  };
  readonly names: { readonly blocked: string; readonly allowed: string; readonly domestic: string };
  /** The "popular VPS provider" prefix that FET detection targets (§1). */
  readonly vpsPrefix: string;
  readonly inside: readonly string[];
  readonly prober: readonly string[];
}

/** Prefix rules: short (namespaces and files carry it), lower-case, ending in '-'. */
export function checkPrefix(prefix: string): void {
  if (!/^[a-z][a-z0-9]{1,7}-$/.test(prefix))
    throw new LadderError(
      'ERR_USAGE',
      `lab prefix '${prefix}' must be 2–8 lower-case letters or digits and a '-', e.g. 'ldr-'`,
    );
}

/** The lab's names and addresses for a prefix (pure). */
export function planLab(
  prefix = DEFAULT_PREFIX,
  stateRoot = '/run/ladder-lab',
  mtu = 9000,
): LabPlan {
  checkPrefix(prefix);
  if (!Number.isInteger(mtu) || mtu < 1280 || mtu > 65000)
    throw new LadderError('ERR_USAGE', `lab MTU ${mtu} must be an integer in 1280..65000`);
  const ns = Object.fromEntries(ROLES.map((r) => [r, `${prefix}${r}`])) as Record<Role, string>;
  return {
    prefix,
    ns,
    stateDir: join(stateRoot, prefix.slice(0, -1)),
    tun: 't0',
    mtu,
    addr: {
      client: '198.18.1.2',
      client6: '2001:2:0:1::2',
      domestic: '198.18.3.2',
      abroad: '198.19.2.2',
      blockedIp: '198.19.2.10',
      allowedIp: '198.19.2.11',
      ladderIp: '198.19.2.20',
      ladderAltIps: ['198.19.2.22', '198.19.2.23'],
      ssIp: '198.19.2.21',
      sinkIp: '198.19.2.30',
      torIp: '198.19.2.40',
      dnsIp: '198.19.2.53',
      abroad6: '2001:2:0:2::2',
    },
    names: { blocked: 'blocked.lab', allowed: 'allowed.lab', domestic: 'domestic.lab' },
    vpsPrefix: '198.19.2.0/24',
    inside: ['198.18.0.0/16', '2001:2:0:1::/64', '2001:2:0:3::/64'],
    prober: ['198.18.250.1', '198.18.250.2', '198.18.250.3', '198.18.250.4'],
  };
}

/** The `ip` commands (argv without the leading "ip") that build the lab, in order (pure). */
export function upCommands(plan: LabPlan): string[][] {
  const { client, wall, abroad, domestic } = plan.ns;
  const a = plan.addr;
  const inNs = (n: string, ...args: string[]) => ['-n', n, ...args];
  const cmds: string[][] = [];
  for (const n of ROLES) cmds.push(['netns', 'add', plan.ns[n]]);
  cmds.push([
    'link',
    'add',
    'c0',
    'netns',
    client,
    'type',
    'veth',
    'peer',
    'name',
    'wc',
    'netns',
    wall,
  ]);
  cmds.push([
    'link',
    'add',
    'a0',
    'netns',
    abroad,
    'type',
    'veth',
    'peer',
    'name',
    'wa',
    'netns',
    wall,
  ]);
  cmds.push([
    'link',
    'add',
    'd0',
    'netns',
    domestic,
    'type',
    'veth',
    'peer',
    'name',
    'wd',
    'netns',
    wall,
  ]);
  cmds.push(inNs(wall, 'tuntap', 'add', 'dev', plan.tun, 'mode', 'tun'));
  const addr = (n: string, dev: string, cidr: string) =>
    cidr.includes(':')
      ? inNs(n, '-6', 'addr', 'add', cidr, 'dev', dev, 'nodad')
      : inNs(n, 'addr', 'add', cidr, 'dev', dev);
  cmds.push(addr(client, 'c0', `${a.client}/24`), addr(client, 'c0', `${a.client6}/64`));
  cmds.push(addr(wall, 'wc', '198.18.1.1/24'), addr(wall, 'wc', '2001:2:0:1::1/64'));
  cmds.push(addr(domestic, 'd0', `${a.domestic}/24`), addr(domestic, 'd0', '2001:2:0:3::2/64'));
  cmds.push(addr(wall, 'wd', '198.18.3.1/24'), addr(wall, 'wd', '2001:2:0:3::1/64'));
  cmds.push(addr(wall, 'wa', '198.19.2.1/24'), addr(wall, 'wa', '2001:2:0:2::1/64'));
  cmds.push(addr(abroad, 'a0', `${a.abroad}/24`), addr(abroad, 'a0', `${a.abroad6}/64`));
  for (const extra of [
    a.blockedIp,
    a.allowedIp,
    a.ladderIp,
    ...a.ladderAltIps,
    a.ssIp,
    a.sinkIp,
    a.torIp,
    a.dnsIp,
  ])
    cmds.push(addr(abroad, 'a0', `${extra}/32`));
  for (const p of plan.prober) cmds.push(addr(wall, 'lo', `${p}/32`));
  for (const [n, devs] of [
    [client, ['lo', 'c0']],
    [wall, ['lo', 'wc', 'wa', 'wd', plan.tun]],
    [abroad, ['lo', 'a0']],
    [domestic, ['lo', 'd0']],
  ] as const)
    for (const d of devs)
      cmds.push(inNs(n, 'link', 'set', d, ...(d === 'lo' ? [] : ['mtu', String(plan.mtu)]), 'up'));
  cmds.push(inNs(client, 'route', 'add', 'default', 'via', '198.18.1.1'));
  cmds.push(inNs(client, '-6', 'route', 'add', 'default', 'via', '2001:2:0:1::1'));
  cmds.push(inNs(domestic, 'route', 'add', 'default', 'via', '198.18.3.1'));
  cmds.push(inNs(domestic, '-6', 'route', 'add', 'default', 'via', '2001:2:0:3::1'));
  // abroad needs only the lab's own space back through the wall: no default route anywhere
  cmds.push(inNs(abroad, 'route', 'add', '198.18.0.0/15', 'via', '198.19.2.1'));
  cmds.push(inNs(abroad, '-6', 'route', 'add', '2001:2::/48', 'via', '2001:2:0:2::1'));
  for (const fam of [[], ['-6']])
    for (const dev of ['wc', 'wa', 'wd'])
      cmds.push(inNs(wall, ...fam, 'rule', 'add', 'iif', dev, 'lookup', '100', 'pref', '100'));
  cmds.push(inNs(wall, 'route', 'add', 'default', 'dev', plan.tun, 'table', '100'));
  cmds.push(inNs(wall, '-6', 'route', 'add', 'default', 'dev', plan.tun, 'table', '100'));
  return cmds;
}

/** sysctls for the wall: forward, and no reverse-path filter (injected packets enter on the TUN). */
export function wallSysctls(plan: LabPlan): string[] {
  return [
    'net.ipv4.ip_forward=1',
    'net.ipv6.conf.all.forwarding=1',
    'net.ipv4.conf.all.rp_filter=0',
    'net.ipv4.conf.default.rp_filter=0',
    ...['wc', 'wa', 'wd', plan.tun].map((d) => `net.ipv4.conf.${d}.rp_filter=0`),
    `net.ipv4.conf.${plan.tun}.accept_local=1`,
  ];
}

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** Why the lab cannot run here, or undefined if it can. */
export function labUnavailable(): string | undefined {
  if (!isRoot())
    return 'the lab needs root (network namespaces and a TUN device); run it with sudo';
  if (!existsSync('/dev/net/tun')) return '/dev/net/tun is missing (load the tun module)';
  const r = spawnSync('ip', ['-V'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return "the 'ip' command (iproute2) is missing";
  return undefined;
}

function ip(args: string[], allowFail = false): void {
  const r = spawnSync('ip', args, { encoding: 'utf8', timeout: 10_000 });
  if (!allowFail && (r.error || r.status !== 0))
    throw new LadderError(
      'ERR_LAB',
      `ip ${args.join(' ')}: ${(r.stderr || r.error?.message || '').trim()}`,
    );
}

/** Namespaces that exist now whose names start with the prefix. */
export function labNamespaces(prefix: string): string[] {
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) return [];
  return r.stdout
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter((n) => n.startsWith(prefix) && ROLES.some((role) => n === `${prefix}${role}`));
}

/** Builds the topology. Fails (after undoing what it did) if any part of the lab already exists. */
export function createTopology(plan: LabPlan): void {
  const why = labUnavailable();
  if (why) throw new LadderError('ERR_LAB_NEEDS_ROOT', why);
  if (labNamespaces(plan.prefix).length > 0)
    throw new LadderError(
      'ERR_LAB',
      `a lab with prefix '${plan.prefix}' is already up; run 'ladder lab down' first`,
    );
  try {
    for (const c of upCommands(plan)) {
      if (c[0] === 'netns' && c[1] === 'add') {
        ip(c);
        continue;
      }
      ip(c);
      // sysctls right after the wall's TUN exists (its per-device rp_filter needs the device)
      if (c.includes('tuntap')) {
        const r = spawnSync(
          'ip',
          ['netns', 'exec', plan.ns.wall, 'sysctl', '-q', '-w', ...wallSysctls(plan)],
          {
            encoding: 'utf8',
            timeout: 10_000,
          },
        );
        if (r.status !== 0)
          throw new LadderError('ERR_LAB', `sysctl in ${plan.ns.wall}: ${r.stderr.trim()}`);
      }
    }
    // resolver settings: `ip netns exec` bind-mounts /etc/netns/<name>/resolv.conf over /etc/resolv.conf
    for (const role of ['client', 'abroad', 'domestic'] as const) {
      const dir = `/etc/netns/${plan.ns[role]}`;
      mkdirSync(dir, { recursive: true });
      writeFileSync(
        join(dir, 'resolv.conf'),
        `# ladder lab\nnameserver ${plan.addr.dnsIp}\noptions timeout:2 attempts:1\n`,
      );
      writeFileSync(join(dir, 'hosts'), '127.0.0.1 localhost\n::1 localhost\n');
    }
    mkdirSync(plan.stateDir, { recursive: true });
  } catch (err) {
    destroyLab(plan);
    throw err;
  }
}

/** PIDs of processes running in a namespace. */
export function namespacePids(ns: string): number[] {
  const r = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) return [];
  return r.stdout
    .split('\n')
    .map(Number)
    .filter((n) => Number.isInteger(n) && n > 0);
}

/**
 * Removes everything the lab with this prefix created: processes inside its namespaces (only the
 * lab starts processes there), the namespaces (which takes their veths and TUN with them), the
 * /etc/netns files and the state directory. Idempotent; returns what it removed.
 */
export function destroyLab(plan: LabPlan): string[] {
  const removed: string[] = [];
  const names = labNamespaces(plan.prefix);
  for (const n of names) for (const pid of namespacePids(n)) killQuietly(pid, 'SIGTERM');
  const deadline = Date.now() + 3000;
  for (const n of names) {
    while (namespacePids(n).length > 0 && Date.now() < deadline) sleepMs(50);
    for (const pid of namespacePids(n)) killQuietly(pid, 'SIGKILL');
  }
  for (const n of names) {
    ip(['netns', 'del', n], true);
    removed.push(n);
  }
  for (const role of ROLES) {
    const dir = `/etc/netns/${plan.ns[role]}`;
    if (existsSync(dir)) {
      rmSync(dir, { recursive: true, force: true });
      removed.push(dir);
    }
  }
  if (existsSync(plan.stateDir)) {
    rmSync(plan.stateDir, { recursive: true, force: true });
    removed.push(plan.stateDir);
  }
  return removed;
}

function killQuietly(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
