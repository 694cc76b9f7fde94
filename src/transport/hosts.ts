/**
 * Static host names, as /etc/hosts has them, looked up before DNS: `ladder server --hosts FILE`.
 * Operators pin names this way (sing-box and Xray have the same in their DNS settings); tests use it
 * to send traffic to a named host on loopback without asking any resolver.
 *
 * The dialers here rewrite a mapped name to its address before the inner dialer sees the target,
 * so a guard behind them (PublicOnlyDialer) checks the address the name maps to.
 * @module
 */
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import { ConfigError } from '../errors.js';
import type { PacketDialer, PacketSession, StreamDialer, Target } from './types.js';

/**
 * Parses hosts-file text: `address name [name...]` per line, `#` comments. Names are matched
 * without case; the first line naming a host wins, as in /etc/hosts (pure).
 */
export function parseHosts(text: string, source = 'hosts file'): Map<string, string> {
  const map = new Map<string, string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim();
    if (line === '') return;
    const [addr, ...names] = line.split(/\s+/);
    if (isIP(addr!) === 0)
      throw new ConfigError(
        'ERR_CONFIG',
        `${source} line ${i + 1}: '${addr}' is not an IP address`,
      );
    if (names.length === 0)
      throw new ConfigError('ERR_CONFIG', `${source} line ${i + 1}: no host name after ${addr}`);
    for (const n of names) {
      const name = n.toLowerCase().replace(/\.$/, '');
      if (!map.has(name)) map.set(name, addr!);
    }
  });
  return map;
}

function mapTarget(hosts: ReadonlyMap<string, string>, t: Target): Target {
  if (isIP(t.host) !== 0) return t;
  const addr = hosts.get(t.host.toLowerCase().replace(/\.$/, ''));
  return addr ? { host: addr, port: t.port } : t;
}

export class HostsDialer implements StreamDialer {
  readonly #hosts: ReadonlyMap<string, string>;
  readonly #inner: StreamDialer;
  constructor(hosts: ReadonlyMap<string, string>, inner: StreamDialer) {
    this.#hosts = hosts;
    this.#inner = inner;
  }
  dial(target: Target, signal?: AbortSignal): Promise<Duplex> {
    return this.#inner.dial(mapTarget(this.#hosts, target), signal);
  }
}

export class HostsPacketDialer implements PacketDialer {
  readonly #hosts: ReadonlyMap<string, string>;
  readonly #inner: PacketDialer;
  constructor(hosts: ReadonlyMap<string, string>, inner: PacketDialer) {
    this.#hosts = hosts;
    this.#inner = inner;
  }
  open(onPacket: (payload: Buffer, from: Target) => void): PacketSession {
    const s = this.#inner.open(onPacket);
    return {
      send: (payload, target) => s.send(payload, mapTarget(this.#hosts, target)),
      close: () => s.close(),
    };
  }
}
