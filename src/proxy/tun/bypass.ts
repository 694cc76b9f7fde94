/**
 * How a connection skips the TUN while `ladder client --tun` runs: bind it to one of the machine's
 * own addresses. The tunnel's routing (cli/tun-routing.ts) sends sockets bound to those addresses
 * by the main table (`ip rule from <address> lookup main`), and everything unbound into the device.
 * A DIRECT route of a split-routing dialer uses this, e.g.
 * `net.connect({ host, port, ...bypassSocketOptions(4) })`; without --tun it returns `{}`.
 * IPv4 only: IPv6 is blocked while --tun runs (a 'from' rule cannot be made safe for IPv6, see
 * cli/tun-routing.ts), so `bypassSocketOptions(6)` returns `{}` and such a DIRECT connection fails.
 * @module
 */

let v4: string | undefined;
let v6: string | undefined;

/** Set by the --tun start (and cleared at its stop): the addresses bypassing sockets bind to. */
export function setBypassAddresses(a: { v4?: string | undefined; v6?: string | undefined }): void {
  v4 = a.v4;
  v6 = a.v6;
}

/** Socket options (net.connect, dgram bind) that keep a socket of `family` out of the TUN. */
export function bypassSocketOptions(family: 4 | 6 = 4): { localAddress?: string } {
  const a = family === 4 ? v4 : v6;
  return a ? { localAddress: a } : {};
}

/** True while --tun runs in this process. */
export function tunActive(): boolean {
  return v4 !== undefined || v6 !== undefined;
}
