/**
 * `ladder client --tun`: the full-device tunnel's composition root. Flags to a plain config (pure),
 * then: the TUN device, the front (proxy/tun/), the routing (tun-routing.ts), in an order that never
 * leaves the machine half-routed: on any failure, everything done so far is undone.
 * @module
 */
import { lookup } from 'node:dns/promises';
import { isIP, isIPv4 } from 'node:net';
import { ConfigError, LadderError } from '../errors.js';
import { ipv4ToU32 } from '../codec/ip-packet.js';
import { DEFAULT_FAKE_RANGE6, FakeDns } from '../proxy/tun/fake-dns.js';
import { bytesToIPv6, ipv6ToBytes } from '../codec/socks-addr.js';
import { TunDevice } from '../proxy/tun/device.js';
import { TunFront } from '../proxy/tun/tun-front.js';
import { bypassSocketOptions, setBypassAddresses } from '../proxy/tun/bypass.js';
import type { Socket as UdpSocket } from 'node:dgram';
import type { PacketDialer, StreamDialer } from '../transport/types.js';
import {
  TUN_ADDRESS,
  TUN_ADDRESS6,
  TUN_NAT_PEER,
  TUN_NAT_PEER6,
  hasNetAdmin,
  type Endpoint,
  localAddresses,
  runningTunDevice,
  tunAddServers,
  tunCleanup,
  tunLinkUp,
  tunRoutingUp,
} from './tun-routing.js';

/**
 * Hooks for a split-routing dialer's DIRECT connections under --tun: TCP binds to the machine's own
 * IPv4 address (asked per connection, so it holds once the tunnel is up), UDP sockets likewise.
 */
export const tunBypass = {
  bindAddress: (): string | undefined => bypassSocketOptions(4).localAddress,
  onUdpSocket: (socket: UdpSocket): void => {
    const address = bypassSocketOptions(4).localAddress;
    // dgram keeps its family in an undocumented 'type'; IPv6 has no bypass under --tun (tun-routing.ts)
    if (address && (socket as unknown as { type?: string }).type !== 'udp6')
      socket.bind({ address, port: 0 });
  },
};

export const DEFAULT_TUN_NAME = 'ladder0';
/**
 * The device only loops packets between apps and this process (both ends are this machine's own
 * TCP), so its MTU sets the segment size of that loop alone: large means fewer packets to move.
 */
export const DEFAULT_TUN_MTU = 65520;
/** RFC 791: every IPv4 host takes 576-byte datagrams; below that TCP and DNS break. */
export const MIN_TUN_MTU = 576;
export const MAX_TUN_MTU = 65535;

export interface TunConfig {
  name: string;
  mtu: number;
  killSwitch: boolean;
  /** With --rules: the domestic resolver that DIRECT names are resolved at, around the tunnel. */
  dnsDirect?: { host: string; port: number };
}

/** The --tun flags as a config; throws ConfigError (ERR_USAGE) naming the flag and the fix. */
export function tunConfig(values: {
  'tun-name'?: string | undefined;
  'tun-mtu'?: string | undefined;
  'no-kill-switch'?: boolean | undefined;
}): TunConfig {
  const name = values['tun-name'] ?? DEFAULT_TUN_NAME;
  // IFNAMSIZ is 16 with the NUL; ip(8) takes no '/', ':' or spaces either.
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(name) || name === '.' || name === '..')
    throw new ConfigError(
      'ERR_USAGE',
      `--tun-name '${name.slice(0, 20)}' must be 1 to 15 letters, digits, '.', '-' or '_' (default ${DEFAULT_TUN_NAME})`,
    );
  const mtuText = values['tun-mtu'] ?? String(DEFAULT_TUN_MTU);
  const mtu = Number(mtuText);
  if (!/^[0-9]{3,5}$/.test(mtuText) || mtu < MIN_TUN_MTU || mtu > MAX_TUN_MTU)
    throw new ConfigError(
      'ERR_USAGE',
      `--tun-mtu '${mtuText.slice(0, 20)}' must be ${MIN_TUN_MTU} to ${MAX_TUN_MTU} (default ${DEFAULT_TUN_MTU})`,
    );
  return { name, mtu, killSwitch: !values['no-kill-switch'] };
}

const NEEDS_ADMIN =
  "--tun needs CAP_NET_ADMIN (to create the TUN device and change routing), which this process lacks: run it as root, e.g. 'sudo ladder client --server ... --tun'. (setcap cap_net_admin+ep on node alone is not enough: the routing is changed by the 'ip' command, which does not inherit file capabilities.)";

/** `ladder client --tun-cleanup`: removes what a killed --tun left behind. Idempotent. */
export function runTunCleanup(log: (line: string) => void): number {
  if (!hasNetAdmin()) throw new ConfigError('ERR_TUN_NEEDS_ADMIN', NEEDS_ADMIN);
  const running = runningTunDevice();
  if (running)
    throw new ConfigError(
      'ERR_TUN',
      `a 'ladder client --tun' is running on ${running}: stop it (Ctrl-C or kill) and it removes its routing itself`,
    );
  const n = tunCleanup();
  log(
    n > 0
      ? `ladder client: removed ${n} rule${n === 1 ? '' : 's'} and route${n === 1 ? '' : 's'} left by --tun`
      : 'ladder client: nothing left by --tun to remove',
  );
  return 0;
}

async function resolveServers(servers: readonly { host: string; port: number }[]): Promise<{
  v4: Endpoint[];
  v6: Endpoint[];
  pinned: Map<string, string[]>;
}> {
  const v4: Endpoint[] = [];
  const v6: Endpoint[] = [];
  const pinned = new Map<string, string[]>();
  for (const { host, port } of servers) {
    let addrs: string[];
    if (isIP(host)) addrs = [host];
    else {
      try {
        addrs = (await lookup(host, { all: true })).map((a) => a.address);
      } catch (err) {
        throw new LadderError(
          'ERR_SERVER_UNREACHABLE',
          `--tun: the server name '${host.slice(0, 60)}' does not resolve (${(err as NodeJS.ErrnoException).code ?? 'error'}); check the network, or use a key with the server's address`,
        );
      }
      pinned.set(host.toLowerCase(), addrs);
    }
    for (const address of addrs) (isIP(address) === 4 ? v4 : v6).push({ address, port });
  }
  return { v4, v6, pinned };
}

/**
 * The running tunnel: calling it takes it all down again; `addServers` routes another key's
 * servers around the device (the control page connecting a key), or throws ConfigError naming why
 * it cannot.
 */
export type TunHandle = (() => Promise<void>) & {
  addServers(servers: readonly { host: string; port: number }[]): void;
};

/**
 * The server endpoints routed around the tunnel, and the same addresses as the front's exclusion
 * sets (packets to them never enter the tunnel).
 */
class RoutedServers {
  readonly v4 = new Set<number>();
  readonly v6 = new Set<string>();
  readonly #routed = new Set<string>();

  constructor(endpoints: readonly Endpoint[]) {
    this.add(endpoints);
  }

  /** The endpoints not routed yet. */
  fresh(endpoints: readonly Endpoint[]): Endpoint[] {
    return endpoints.filter((e) => !this.#routed.has(`${e.address} ${e.port}`));
  }

  add(endpoints: readonly Endpoint[]): void {
    for (const e of endpoints) {
      this.#routed.add(`${e.address} ${e.port}`);
      if (isIPv4(e.address)) this.v4.add(ipv4ToU32(e.address));
      else this.v6.add(bytesToIPv6(ipv6ToBytes(e.address)));
    }
  }
}

/**
 * Endpoints of servers added while the tunnel runs. Names cannot be resolved now (the system's
 * lookups get fake answers): only addresses, or names resolved at start.
 */
function pinnedEndpoints(
  servers: readonly { host: string; port: number }[],
  pinned: ReadonlyMap<string, string[]>,
): Endpoint[] {
  const endpoints: Endpoint[] = [];
  for (const { host, port } of servers) {
    const addrs = isIP(host) ? [host] : pinned.get(host.toLowerCase());
    if (!addrs)
      throw new ConfigError(
        'ERR_TUN',
        `under --tun, a server named '${host.slice(0, 60)}' that the client did not resolve at start cannot be routed around the tunnel: use a key with the server's address, or restart the client with this key in --server`,
      );
    for (const address of addrs) endpoints.push({ address, port });
  }
  return endpoints;
}

/** Refuses to start without CAP_NET_ADMIN or beside another --tun in this namespace. */
function assertTunCanStart(): void {
  if (!hasNetAdmin()) throw new ConfigError('ERR_TUN_NEEDS_ADMIN', NEEDS_ADMIN);
  const running = runningTunDevice();
  if (running)
    throw new ConfigError(
      'ERR_TUN',
      `a 'ladder client --tun' is already running in this network namespace (device ${running}): stop it first`,
    );
}

/** The front on the device: dials through the key, fake DNS that answers the servers' names. */
function tunFront(
  device: TunDevice,
  dialers: { stream: StreamDialer; packet: PacketDialer },
  pinned: Map<string, string[]>,
  servers: RoutedServers,
  ipv6: boolean,
): TunFront {
  return new TunFront({
    device,
    dialer: dialers.stream,
    packetDialer: dialers.packet,
    fakeDns: new FakeDns({ pinned, ...(ipv6 ? { range6: DEFAULT_FAKE_RANGE6 } : {}) }),
    tunAddress: ipv4ToU32(TUN_ADDRESS),
    natPeer: ipv4ToU32(TUN_NAT_PEER),
    excluded: (ip) => servers.v4.has(ip),
    ...(ipv6
      ? {
          tunAddress6: ipv6ToBytes(TUN_ADDRESS6),
          natPeer6: ipv6ToBytes(TUN_NAT_PEER6),
          excluded6: (ip: Uint8Array) => servers.v6.has(bytesToIPv6(ip)),
        }
      : {}),
  });
}

/** Routes everything into the device but the servers, this machine's own addresses and DNS. */
function routingUp(
  cfg: TunConfig,
  resolved: { v4: Endpoint[]; v6: Endpoint[] },
  ipv6: boolean,
): void {
  const own = localAddresses(cfg.name);
  tunRoutingUp({
    name: cfg.name,
    mtu: cfg.mtu,
    servers4: resolved.v4,
    servers6: resolved.v6,
    bypass4: own.v4,
    dnsDirect4:
      cfg.dnsDirect && isIPv4(cfg.dnsDirect.host)
        ? [{ address: cfg.dnsDirect.host, port: cfg.dnsDirect.port }]
        : [],
    killSwitch: cfg.killSwitch,
    ipv6,
  });
  setBypassAddresses({ v4: own.v4[0] });
}

/**
 * Starts the full-device tunnel; resolves, once routing is in place, to its {@link TunHandle}.
 * `servers` are the key's (key-dialers.ts serverEndpointsOfKey).
 */
export async function startTun(
  cfg: TunConfig,
  dialers: { stream: StreamDialer; packet: PacketDialer },
  servers: readonly { host: string; port: number }[],
  log: (line: string) => void,
): Promise<TunHandle> {
  assertTunCanStart();
  // Before routing changes: the server names still resolve the ordinary way.
  const resolved = await resolveServers(servers);
  const device = TunDevice.create(cfg.name);
  const routed = new RoutedServers([...resolved.v4, ...resolved.v6]);
  let front: TunFront | undefined;
  let ipv6: boolean;
  const down = async (): Promise<void> => {
    setBypassAddresses({});
    tunCleanup();
    device.close();
    await front?.close();
  };
  // An exit we did not plan (an uncaught error) still takes the routing down: the kill switch
  // rule stays only after kill -9, which runs nothing.
  const onExit = (): void => {
    tunCleanup();
  };
  try {
    tunCleanup(); // what a killed --tun left behind
    ipv6 = tunLinkUp(cfg.name, cfg.mtu);
    front = tunFront(device, dialers, resolved.pinned, routed, ipv6);
    await front.listen();
    const f = front;
    device.start((p) => f.handlePacket(p));
    routingUp(cfg, resolved, ipv6);
    process.once('exit', onExit);
  } catch (err) {
    await down();
    throw err;
  }
  log(
    `ladder client: tunnel up on ${cfg.name} (mtu ${cfg.mtu}, kill switch ${cfg.killSwitch ? 'on' : 'off'}, IPv6 ${ipv6 ? 'carried' : 'blocked'})`,
  );
  const close = async (): Promise<void> => {
    process.off('exit', onExit);
    await down();
    log(`ladder client: tunnel down, routing restored`);
  };
  const addServers = (more: readonly { host: string; port: number }[]): void => {
    const fresh = routed.fresh(pinnedEndpoints(more, resolved.pinned));
    tunAddServers(
      fresh.filter((e) => isIPv4(e.address)),
      fresh.filter((e) => !isIPv4(e.address)),
    );
    routed.add(fresh);
  };
  return Object.assign(close, { addServers });
}
