/**
 * The server's guard against becoming a relay into its own network: dialers that refuse targets in
 * special-purpose ranges (special-addresses.ts: loopback, private, link-local, CGNAT, multicast,
 * documentation, NAT64/6to4/IPv4-mapped forms of those, ...), so that a key holder cannot reach the
 * server's localhost services (the management API, metrics), its LAN or a cloud metadata address.
 *
 * The check sits inside the connect's own address lookup (`net.connect({ lookup })`): the lookup
 * returns every allowed address of a name and Node tries each of them (autoSelectFamily), and the
 * addresses checked are exactly the ones connected to, so a second lookup cannot swap them (DNS
 * rebinding). An IP literal never reaches a lookup in `net.connect`, so literals are judged before.
 * @module
 */
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
import type { Duplex } from 'node:stream';
import { DialError, dialErrorFromSystem } from '../errors.js';
import { DirectDialer, type DirectDialerOptions } from './direct.js';
import { isBlockedAddress, parseAddress } from './special-addresses.js';
import type { PacketDialer, PacketSession, StreamDialer, Target } from './types.js';

export { isBlockedAddress } from './special-addresses.js';

/** Every address of a name, as getaddrinfo gives them (the same resolver `net.connect` uses). */
export type ResolveAll = (host: string, options: LookupOptions) => Promise<LookupAddress[]>;

export interface GuardOptions {
  /** Which addresses are refused (default: isBlockedAddress). Tests let loopback through with it. */
  isBlocked?: (ip: string) => boolean;
  /** Name resolution (default: dns.lookup with all: true). */
  resolve?: ResolveAll;
  /** Called once for each target refused (for a count: it is never told which target). */
  onRefused?: () => void;
}

const systemResolve: ResolveAll = (host, options) =>
  new Promise((resolve, reject) =>
    dnsLookup(host, { ...options, all: true }, (err, addresses) =>
      err ? reject(err) : resolve(addresses),
    ),
  );

/** The error of a refused target; it never names the target (it may be logged). */
export function forbiddenTarget(): DialError {
  return new DialError(
    'ERR_DIAL_FORBIDDEN',
    'target is in a private or special-purpose range (allowed only with ladder server --allow-private-targets)',
  );
}

/** A numeric host in canonical text, as the kernel would be given it; null for a name. */
function numeric(host: string): { address: string; family: 4 | 6 } | null {
  const a = parseAddress(host);
  if (!a) return null;
  if (a.family === 4) return { address: a.bytes.join('.'), family: 4 };
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((a.bytes[i]! << 8) | a.bytes[i + 1]!).toString(16));
  return { address: groups.join(':'), family: 6 };
}

/**
 * Every allowed address of `host`. Rejects with ERR_DIAL_FORBIDDEN when it has addresses and none
 * is allowed, with the resolver's error (ERR_DIAL_DNS) when it has none. Numeric spellings
 * (`2130706433`, `[::1]`, `fe80::1%eth0`) are judged without a lookup.
 */
export async function resolveAllowed(
  host: string,
  o: GuardOptions = {},
  options: LookupOptions = {},
): Promise<LookupAddress[]> {
  const blocked = o.isBlocked ?? isBlockedAddress;
  const n = numeric(host);
  if (n) {
    if (blocked(n.address)) throw refused(o);
    return [n];
  }
  let all: LookupAddress[];
  try {
    all = await (o.resolve ?? systemResolve)(host, options);
  } catch (err) {
    throw dialErrorFromSystem(err, 'target');
  }
  const allowed = all.filter((a) => !blocked(a.address));
  if (allowed.length === 0)
    throw all.length === 0 ? dialErrorFromSystem({ code: 'ENOTFOUND' }, 'target') : refused(o);
  return allowed;
}

function refused(o: GuardOptions): DialError {
  o.onRefused?.();
  return forbiddenTarget();
}

/**
 * A `lookup` for `net.connect` that returns only allowed addresses: all of them when Node asks for
 * all (autoSelectFamily), else the first. Exported for other dialers that resolve (the UDP path).
 */
export function guardedLookup(o: GuardOptions = {}): LookupFunction {
  return (hostname, options, callback) => {
    resolveAllowed(hostname, o, {
      ...(options.family ? { family: options.family } : {}),
      ...(options.hints ? { hints: options.hints } : {}),
    }).then(
      (list) => {
        if (options.all) callback(null, list);
        else callback(null, list[0]!.address, list[0]!.family);
      },
      (err: Error) => callback(err as NodeJS.ErrnoException, ''),
    );
  };
}

/** TCP to public targets only: a DirectDialer whose connect resolves through guardedLookup. */
export class PublicOnlyDialer implements StreamDialer {
  readonly #inner: DirectDialer;
  readonly #guard: GuardOptions;
  readonly #blocked: (ip: string) => boolean;
  constructor(options: DirectDialerOptions & GuardOptions = {}) {
    const { isBlocked, resolve, onRefused, ...direct } = options;
    const guard: GuardOptions = {
      ...(isBlocked ? { isBlocked } : {}),
      ...(resolve ? { resolve } : {}),
      ...(onRefused ? { onRefused } : {}),
    };
    this.#guard = guard;
    this.#blocked = isBlocked ?? isBlockedAddress;
    this.#inner = new DirectDialer({ ...direct, lookup: guardedLookup(guard) });
  }
  dial(target: Target, signal?: AbortSignal): Promise<Duplex> {
    // net.connect skips the lookup for an IP literal (a zone id included): judge it here.
    if (isIP(target.host) !== 0 && this.#blocked(target.host))
      return Promise.reject(refused(this.#guard));
    return this.#inner.dial(target, signal);
  }
}

/** UDP counterpart: datagrams to refused targets are dropped, as a firewall drops them. */
export class PublicOnlyPacketDialer implements PacketDialer {
  readonly #inner: PacketDialer;
  readonly #guard: GuardOptions;
  constructor(inner: PacketDialer, guard: GuardOptions = {}) {
    this.#inner = inner;
    this.#guard = guard;
  }
  open(onPacket: (payload: Buffer, from: Target) => void): PacketSession {
    const s = this.#inner.open(onPacket);
    const guard = this.#guard;
    const blocked = guard.isBlocked ?? isBlockedAddress;
    return {
      send(payload, target) {
        if (isIP(target.host) !== 0) {
          if (!blocked(target.host)) s.send(payload, target);
          else guard.onRefused?.();
          return;
        }
        resolveAllowed(target.host, guard).then(
          (list) => s.send(payload, { host: list[0]!.address, port: target.port }),
          () => {
            /* refused or unresolvable: dropped */
          },
        );
      },
      close: () => s.close(),
    };
  }
}
