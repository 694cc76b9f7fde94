/**
 * Name resolution for the client's own Ladder server, cached: resolving the name again for every
 * fresh connection would cost a round trip to the resolver before the TCP handshake can start (on
 * a long path with a resolver across it, a whole path round trip per connection). The server's address changes rarely; ss-local resolves it once
 * at start. Here a successful answer is reused for {@link SERVER_LOOKUP_TTL_MS}, concurrent lookups
 * of one name share one query, and the cache holds at most {@link MAX_SERVER_NAMES} names.
 *
 * Past its TTL an answer is still used, for up to {@link SERVER_LOOKUP_STALE_MS}, while a fresh
 * query runs in the background: a connection never waits for the resolver once the name has been
 * resolved. On a lossy path one lost UDP query costs the resolver's retry interval (glibc: 5 s), and
 * a dial that waited for it ran into its own deadline: a SOCKS5 "network unreachable" for a server
 * that was there all along.
 *
 * Only for the proxy server's name (a name the user configured), never for destinations: those are
 * resolved by the server.
 * @module
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import type { LookupFunction } from 'node:net';

export const SERVER_LOOKUP_TTL_MS = 60_000;
export const MAX_SERVER_NAMES = 64;
/** How long past its TTL an answer is still used while it is being refreshed. */
export const SERVER_LOOKUP_STALE_MS = 60 * 60_000;

type Resolve = (host: string) => Promise<LookupAddress[]>;

const systemResolve: Resolve = (host) =>
  new Promise((resolve, reject) =>
    dnsLookup(host, { all: true }, (err, addresses) => (err ? reject(err) : resolve(addresses))),
  );

/** A `net.connect` lookup with a cache; `resolve` and `now` are injectable for tests. */
export function cachedLookup(
  resolve: Resolve = systemResolve,
  now: () => number = Date.now,
  ttlMs = SERVER_LOOKUP_TTL_MS,
  staleMs = SERVER_LOOKUP_STALE_MS,
): LookupFunction {
  const cache = new Map<string, { addresses: LookupAddress[]; expires: number }>();
  const inflight = new Map<string, Promise<LookupAddress[]>>();
  const get = (host: string): Promise<LookupAddress[]> => {
    const hit = cache.get(host);
    const t = now();
    if (hit && hit.expires > t) return Promise.resolve(hit.addresses);
    if (hit && hit.expires + staleMs > t) {
      // stale: answer now, refresh behind it (a failed refresh keeps the old answer)
      query(host).catch(() => undefined);
      return Promise.resolve(hit.addresses);
    }
    return query(host);
  };
  const query = (host: string): Promise<LookupAddress[]> => {
    let p = inflight.get(host);
    if (!p) {
      p = resolve(host).then(
        (addresses) => {
          inflight.delete(host);
          cache.delete(host);
          if (cache.size >= MAX_SERVER_NAMES) cache.delete(cache.keys().next().value!);
          cache.set(host, { addresses, expires: now() + ttlMs });
          return addresses;
        },
        (err: unknown) => {
          inflight.delete(host);
          throw err;
        },
      );
      inflight.set(host, p);
    }
    return p;
  };
  return ((
    host: string,
    options: { all?: boolean; family?: number },
    callback: (err: unknown, address?: unknown, family?: number) => void,
  ) => {
    get(host).then(
      (all) => {
        const fam = options.family === 4 || options.family === 6 ? options.family : 0;
        const list = fam ? all.filter((a) => a.family === fam) : all;
        if (list.length === 0) {
          const err = Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), {
            code: 'ENOTFOUND',
          });
          return callback(err, options.all ? [] : '', 0);
        }
        if (options.all) callback(null, list);
        else callback(null, list[0]!.address, list[0]!.family);
      },
      (err: unknown) => callback(err, options.all ? [] : '', 0),
    );
  }) as unknown as LookupFunction;
}

/** The process's cache for proxy server names. */
export const serverLookup: LookupFunction = cachedLookup();

/**
 * Starts resolving `names` into `lookup`'s cache and returns at once, as ss-local resolves its
 * server at start: the first connection then does not wait for the resolver. A failure is left
 * for that connection to meet (it queries again).
 */
export function warmLookup(lookup: LookupFunction, names: readonly string[]): void {
  const call = lookup as unknown as (host: string, o: { all: true }, cb: () => void) => void;
  for (const host of names) call(host, { all: true }, () => undefined);
}
