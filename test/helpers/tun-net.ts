/**
 * A two-namespace network for `ladder client --tun` tests and benchmarks, addressed only from
 * 198.18.0.0/15 and with no link to the host:
 *
 * ```text
 *   <prefix>c  198.18.60.2/24 ──veth── 198.18.60.1/24  <prefix>s   (ladder server :8388)
 *   2001:2:0:60::2/64 ───────── 2001:2:0:60::1/64
 *   default via 198.18.60.1                             198.18.61.1/32 on lo: the "origin" host
 *   default via 2001:2:0:60::1                          2001:2:0:61::1/128 on lo: its IPv6
 *   /etc/netns/<prefix>c/resolv.conf: nameserver 198.18.62.53 (nothing there: every query must be
 *   answered by the tunnel)
 * ```
 * `tunNetDown` kills nothing but removes the namespaces (and their processes' network with them)
 * and the resolver file; call it in an after hook, it is safe when parts are missing.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { LADDER_CLI, startProcess } from './peers.js';

export const SERVER_ADDR = '198.18.60.1';
export const CLIENT_ADDR = '198.18.60.2';
export const ORIGIN_ADDR = '198.18.61.1';
/** An address where no resolver runs: apps in the client namespace are told to use it. */
export const RESOLVER_ADDR = '198.18.62.53';
export const LADDER_PORT = 8388;
/** IPv6 on the link too, so a test sees that none of it leaves around the tunnel. */
export const SERVER_ADDR6 = '2001:2:0:60::1';
export const CLIENT_ADDR6 = '2001:2:0:60::2';
/** The origin host's IPv6 address (server namespace, on lo). */
export const ORIGIN_ADDR6 = '2001:2:0:61::1';

export interface TunNet {
  client: string;
  server: string;
  /** The veth end in the server namespace (the client's traffic arrives there). */
  serverVeth: string;
}

function run(argv: string[], allowFail = false): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 20_000 });
  if (!allowFail && (r.error || r.status !== 0))
    throw new Error(`${argv.join(' ')}: ${(r.stderr || r.error?.message || '').trim()}`);
  return r.stdout ?? '';
}

/** Runs argv inside namespace `ns` and returns its result (never throws for a non-zero exit). */
export function inNs(
  ns: string,
  argv: string[],
  timeoutMs = 20_000,
): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('ip', ['netns', 'exec', ns, ...argv], {
    encoding: 'utf8',
    timeout: timeoutMs,
  });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

export function tunNetUp(prefix: string): TunNet {
  const net: TunNet = { client: `${prefix}c`, server: `${prefix}s`, serverVeth: `${prefix}s0` };
  tunNetDown(net);
  const cv = `${prefix}c0`;
  mkdirSync(`/etc/netns/${net.client}`, { recursive: true });
  writeFileSync(`/etc/netns/${net.client}/resolv.conf`, `nameserver ${RESOLVER_ADDR}\n`);
  run(['ip', 'netns', 'add', net.client]);
  run(['ip', 'netns', 'add', net.server]);
  run(['ip', 'link', 'add', cv, 'type', 'veth', 'peer', 'name', net.serverVeth]);
  run(['ip', 'link', 'set', cv, 'netns', net.client]);
  run(['ip', 'link', 'set', net.serverVeth, 'netns', net.server]);
  run(['ip', '-n', net.client, 'addr', 'add', `${CLIENT_ADDR}/24`, 'dev', cv]);
  run(['ip', '-n', net.server, 'addr', 'add', `${SERVER_ADDR}/24`, 'dev', net.serverVeth]);
  run(['ip', '-n', net.server, 'addr', 'add', `${ORIGIN_ADDR}/32`, 'dev', 'lo']);
  for (const [ns, dev] of [
    [net.client, cv],
    [net.client, 'lo'],
    [net.server, net.serverVeth],
    [net.server, 'lo'],
  ] as const)
    run(['ip', '-n', ns, 'link', 'set', dev, 'up']);
  run(['ip', '-n', net.client, '-6', 'addr', 'add', `${CLIENT_ADDR6}/64`, 'dev', cv, 'nodad']);
  run([
    'ip',
    '-n',
    net.server,
    '-6',
    'addr',
    'add',
    `${SERVER_ADDR6}/64`,
    'dev',
    net.serverVeth,
    'nodad',
  ]);
  run(['ip', '-n', net.server, '-6', 'addr', 'add', `${ORIGIN_ADDR6}/128`, 'dev', 'lo', 'nodad']);
  run(['ip', '-n', net.client, 'route', 'add', 'default', 'via', SERVER_ADDR]);
  run(['ip', '-n', net.client, '-6', 'route', 'add', 'default', 'via', SERVER_ADDR6]);
  return net;
}

/** Resolves once no IPv6 address in the client namespace is still tentative (link-local DAD). */
export async function tunNetSettled(net: TunNet, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (run(['ip', '-n', net.client, '-6', 'addr', 'show', 'tentative']).trim() !== '') {
    if (Date.now() > deadline) throw new Error('IPv6 addresses still tentative');
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function tunNetDown(net: TunNet): void {
  for (const ns of [net.client, net.server]) {
    // Processes left in a namespace keep it alive but lose their network with it; tests stop
    // theirs by PID first.
    run(['ip', 'netns', 'del', ns], true);
  }
  rmSync(`/etc/netns/${net.client}`, { recursive: true, force: true });
}

/** Everything --tun may change in a namespace, as text to compare before and after. */
export function routingSnapshot(ns: string): string {
  return [
    ['ip', '-4', 'route', 'show', 'table', 'all'],
    ['ip', '-6', 'route', 'show', 'table', 'all'],
    ['ip', '-4', 'rule', 'show'],
    ['ip', '-6', 'rule', 'show'],
    ['ip', 'link', 'show'],
    ['nft', 'list', 'ruleset'],
    ['iptables-save'],
  ]
    .map((argv) => {
      const r = inNs(ns, argv);
      // iptables-save stamps its output with the time: drop comment lines. `ip link show` says
      // "Peer netns reference is invalid" while some other namespace on the host is being
      // created or deleted (another lab's): not this namespace's state.
      const stderr = r.stderr.replace(/^Error: Peer netns reference is invalid\.\n/gm, '');
      return `$ ${argv.join(' ')}\n${r.stdout.replace(/^#.*\n/gm, '')}${stderr}`;
    })
    .join('\n');
}

/**
 * Counts, in the server namespace, the packets arriving from the client namespace: to the Ladder
 * port, and to anything else (IPv4 and IPv6, TCP, UDP and every other protocol but ARP/NDP).
 */
export function watchServerSide(
  net: TunNet,
): () => { ladder: number; other: number; what: string } {
  const v = net.serverVeth;
  const rules = `table inet tnwatch {
  set seen { type inet_proto . inet_service; size 1024; }
  set protos { type inet_proto; size 256; }
  chain input {
    type filter hook input priority -300; policy accept;
    iifname "${v}" meta l4proto { tcp, udp } th dport ${LADDER_PORT} counter comment "ladder"
    iifname "${v}" meta l4proto { tcp, udp } th dport != ${LADDER_PORT} add @seen { meta l4proto . th dport } counter comment "other"
    iifname "${v}" meta l4proto != { tcp, udp, ipv6-icmp } add @protos { meta l4proto } counter comment "other"
  }
}
`;
  const r = spawnSync('ip', ['netns', 'exec', net.server, 'nft', '-f', '-'], {
    input: rules,
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`nft: ${r.stderr}`);
  return () => {
    const out = inNs(net.server, ['nft', '-j', 'list', 'table', 'inet', 'tnwatch']).stdout;
    const counts = { ladder: 0, other: 0, what: '' };
    const doc = JSON.parse(out) as {
      nftables: {
        rule?: { comment?: string; expr: { counter?: { packets: number } }[] };
        set?: { name: string; elem?: unknown[] };
      }[];
    };
    for (const item of doc.nftables) {
      if (item.set?.elem) counts.what += `${item.set.name}: ${JSON.stringify(item.set.elem)} `;
      const rule = item.rule;
      if (!rule?.comment) continue;
      const c = rule.expr.find((e) => e.counter)?.counter?.packets ?? 0;
      if (rule.comment === 'ladder') counts.ladder += c;
      else counts.other += c;
    }
    return counts;
  };
}

/**
 * Starts `ladder client <args>` in namespace `ns` and resolves once its output matches `ready`
 * (within `timeoutMs`, or startProcess's default).
 */
export function startLadderClientIn(
  ns: string,
  args: string[],
  ready: RegExp,
  timeoutMs?: number,
): ReturnType<typeof startProcess> {
  return startProcess(
    ['ip', 'netns', 'exec', ns, process.execPath, LADDER_CLI, 'client', ...args],
    ready,
    timeoutMs === undefined ? {} : { timeoutMs },
  );
}
