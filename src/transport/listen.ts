/**
 * Listening with errors people can act on: every listener of Ladder (the Shadowsocks server, the
 * port mux, the SOCKS5 and HTTP front ends) binds through here, so "in use", "permission denied" and
 * "no such address" read the same everywhere and name the flag that changes the address.
 * @module
 */
import { isIPv6, type AddressInfo, type Server } from 'node:net';
import { LadderError } from '../errors.js';
import { applyCongestion } from './congestion.js';

/** `what host:port` as people write it (IPv6 in brackets). */
export function describeAddress(what: string, host: string, port: number): string {
  return `${what} ${isIPv6(host) ? `[${host}]` : host}:${port}`;
}

/** Turns a bind error into ERR_LISTEN naming the address, the cause, and `flag` as the fix. */
export function listenError(err: NodeJS.ErrnoException, where: string, flag: string): LadderError {
  switch (err.code) {
    case 'EADDRINUSE':
      return new LadderError(
        'ERR_LISTEN',
        `${where} is already in use; stop what is using it or choose another port with ${flag}`,
        { cause: err },
      );
    case 'EACCES':
      return new LadderError(
        'ERR_LISTEN',
        `${where}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)`,
        { cause: err },
      );
    case 'EADDRNOTAVAIL':
      return new LadderError(
        'ERR_LISTEN',
        `${where}: no such address on this machine; check ${flag}`,
        { cause: err },
      );
    default:
      return new LadderError('ERR_LISTEN', `${where}: ${err.message}`, { cause: err });
  }
}

/** `server.listen` on host:port, exclusively; rejects with {@link listenError}. */
export function listenTcp(
  server: Server,
  host: string,
  port: number,
  what: string,
  flag: string,
): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void =>
      reject(listenError(err, describeAddress(what, host, port), flag));
    server.once('error', onError);
    server.listen({ host, port, exclusive: true }, () => {
      server.off('error', onError);
      // inherited by every connection the listener accepts (congestion.ts)
      applyCongestion(server);
      resolve(server.address() as AddressInfo);
    });
  });
}
