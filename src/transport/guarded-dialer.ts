/**
 * A dialer that refuses targets in private, loopback, link-local and other special-purpose ranges,
 * after name resolution, so that a key holder cannot reach the server's own localhost services (the
 * management API, metrics) or its LAN through the tunnel. Names are resolved here and the checked
 * address is what gets dialled, so a second lookup cannot swap it (DNS rebinding).
 * @module
 */
import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import { DialError, dialErrorFromSystem } from '../errors.js';
import type { PacketDialer, PacketSession, StreamDialer, Target } from './types.js';

/** Special-purpose ranges (IANA IPv4/IPv6 special-purpose address registries) that a proxy server must not reach by default. */
export const NON_PUBLIC = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const)
  NON_PUBLIC.addSubnet(net, bits, 'ipv4');
for (const [net, bits] of [
  ['::', 128],
  ['::1', 128],
  ['64:ff9b:1::', 48],
  ['100::', 64],
  ['2001::', 23],
  ['2001:db8::', 32],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const)
  NON_PUBLIC.addSubnet(net, bits, 'ipv6');

export function isPublicAddress(ip: string): boolean {
  const family = isIP(ip);
  if (family === 0) return false;
  if (family === 6 && ip.toLowerCase().startsWith('::ffff:') && isIP(ip.slice(7)) === 4) {
    return !NON_PUBLIC.check(ip.slice(7), 'ipv4');
  }
  return !NON_PUBLIC.check(ip, family === 4 ? 'ipv4' : 'ipv6');
}

async function resolvePublic(target: Target): Promise<Target> {
  let ip = target.host;
  if (isIP(ip) === 0) {
    try {
      ip = (await lookup(target.host)).address;
    } catch (err) {
      throw dialErrorFromSystem(err, 'target');
    }
  }
  if (!isPublicAddress(ip)) {
    throw new DialError('ERR_DIAL_FORBIDDEN', 'target is in a private or special-purpose range');
  }
  return { host: ip, port: target.port };
}

export class PublicOnlyDialer implements StreamDialer {
  readonly #inner: StreamDialer;
  constructor(inner: StreamDialer) {
    this.#inner = inner;
  }
  async dial(target: Target, signal?: AbortSignal): Promise<Duplex> {
    return this.#inner.dial(await resolvePublic(target), signal);
  }
}

/** UDP counterpart: datagrams to non-public targets are dropped. */
export class PublicOnlyPacketDialer implements PacketDialer {
  readonly #inner: PacketDialer;
  constructor(inner: PacketDialer) {
    this.#inner = inner;
  }
  open(onPacket: (payload: Buffer, from: Target) => void): PacketSession {
    const s = this.#inner.open(onPacket);
    return {
      send(payload, target) {
        resolvePublic(target).then(
          (t) => s.send(payload, t),
          () => {
            /* dropped, as a firewall drops it */
          },
        );
      },
      close: () => s.close(),
    };
  }
}
