/**
 * `--tcp-congestion <name>`: the TCP congestion control of Ladder's own sockets (tcp(7)
 * TCP_CONGESTION), e.g. `bbr` on a server whose default is `cubic`: on a long path with random loss
 * a loss-based sender halves its window at every loss, BBR paces at the measured bandwidth. Node has
 * no setsockopt, so the small native addon in native/sockopt sets it.
 *
 * Where it applies, once {@link useCongestionControl} has chosen one:
 * - every listener that binds through listen.ts: set on the listening socket, the kernel gives it to
 *   every connection the listener accepts (the server's sockets to its clients carry the downloads);
 * - every connection a dialer opens to a Ladder server or a target ({@link applyCongestion} on
 *   connect).
 *
 * The name is checked at start against the kernel's list (`net.ipv4.tcp_available_congestion_control`
 * and, for a process without CAP_NET_ADMIN, `tcp_allowed_congestion_control`) and by setting it on a
 * probe socket, so a missing module or a forbidden choice is an error naming the fix, not a silent
 * default.
 * @module
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { LadderError } from '../errors.js';

interface SockoptAddon {
  setCongestion(fd: number, name: string): void;
  getCongestion(fd: number): string;
  /** TCP_INFO's ca_state (0: open) and unacked segments; absent from an addon built before it. */
  tcpState?(fd: number): [number, number];
  /** TCP_CC_INFO's BBR pacing gain (256 = 1.0), null when not BBR; absent from an older addon. */
  bbrPacingGain?(fd: number): number | null;
}

let addon: SockoptAddon | undefined;
/** The congestion control chosen for this process, or undefined for the kernel's default. */
let chosen: string | undefined;

/** Loads native/sockopt's addon; when it is not built, the reason as a string. */
export function loadSockoptAddon(): SockoptAddon | string {
  if (addon) return addon;
  const require = createRequire(import.meta.url);
  // dist/src/transport/ and src/transport/ both sit three levels below the repository root
  const candidates = [
    '../../../native/sockopt/build/Release/ladder_sockopt.node',
    '../../native/sockopt/build/Release/ladder_sockopt.node',
    join(process.cwd(), 'native/sockopt/build/Release/ladder_sockopt.node'),
  ];
  let why = 'not found';
  for (const c of candidates) {
    try {
      addon = require(c) as SockoptAddon;
      return addon;
    } catch (err) {
      why = (err as Error).message.split('\n')[0]!;
    }
  }
  return why;
}

function readList(file: string): string[] | undefined {
  try {
    return readFileSync(file, 'utf8').trim().split(/\s+/).filter(Boolean);
  } catch {
    return undefined;
  }
}

/** The file descriptor behind a socket or server (libuv's handle), or undefined before it has one. */
function fdOf(s: Socket | Server): number | undefined {
  const fd = (s as unknown as { _handle?: { fd?: number } | null })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/** Explains a failed setsockopt in terms of what the user can change. */
function explain(name: string, err: NodeJS.ErrnoException, flag: string): LadderError {
  const available = readList('/proc/sys/net/ipv4/tcp_available_congestion_control');
  const allowed = readList('/proc/sys/net/ipv4/tcp_allowed_congestion_control');
  const list = available ? ` (this kernel has: ${available.join(' ')})` : '';
  if (err.code === 'ENOENT')
    return new LadderError(
      'ERR_USAGE',
      `${flag} ${name}: this kernel has no '${name}' congestion control${list}; load its module (modprobe tcp_${name}) or choose one it has`,
      { cause: err },
    );
  if (err.code === 'EPERM')
    return new LadderError(
      'ERR_USAGE',
      `${flag} ${name}: not allowed for this process${allowed ? ` (allowed without CAP_NET_ADMIN: ${allowed.join(' ')})` : ''}; run as root or add it to net.ipv4.tcp_allowed_congestion_control`,
      { cause: err },
    );
  return new LadderError('ERR_USAGE', `${flag} ${name}: ${err.message}`, { cause: err });
}

/**
 * Chooses the congestion control of every socket made from now on (undefined: the kernel's
 * default). Checks it on a probe socket first; throws ERR_USAGE naming `flag` and the fix when the
 * name is malformed, the addon is not built, or the kernel refuses it.
 */
export async function useCongestionControl(
  name: string | undefined,
  flag = '--tcp-congestion',
): Promise<void> {
  if (name === undefined) {
    chosen = undefined;
    return;
  }
  if (!/^[a-z0-9_-]{1,15}$/.test(name))
    throw new LadderError(
      'ERR_USAGE',
      `${flag} '${name}': a congestion control is named by 1–15 lower-case letters, digits or '_' (e.g. bbr, cubic)`,
    );
  const a = loadSockoptAddon();
  if (typeof a === 'string')
    throw new LadderError(
      'ERR_USAGE',
      `${flag} needs the native socket-option addon, which is not built (run 'node scripts/build-native.mjs'; it needs a C compiler): ${a}`,
    );
  const probe = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => resolve());
    });
    const fd = fdOf(probe);
    if (fd === undefined) throw new LadderError('ERR_USAGE', `${flag}: no socket to check it on`);
    try {
      a.setCongestion(fd, name);
    } catch (err) {
      throw explain(name, err as NodeJS.ErrnoException, flag);
    }
  } finally {
    probe.close();
  }
  chosen = name;
}

/** The congestion control chosen with {@link useCongestionControl}, if any. */
export function congestionControl(): string | undefined {
  return chosen;
}

/**
 * Sets the chosen congestion control on a socket or a listening server, if one was chosen. A
 * socket closed meanwhile is left alone; any other refusal is rare after the start-up check and
 * leaves the kernel's default on that socket rather than failing the connection.
 */
export function applyCongestion(s: Socket | Server): void {
  if (chosen === undefined || addon === undefined) return;
  const fd = fdOf(s);
  if (fd === undefined) return;
  try {
    addon.setCongestion(fd, chosen);
  } catch {
    // the socket went away between the check and here, or the module was unloaded
  }
}

/** The congestion control a socket or server runs now (for tests and `--verbose`), if readable. */
export function socketCongestion(s: Socket | Server): string | undefined {
  const a = loadSockoptAddon();
  const fd = fdOf(s);
  if (typeof a === 'string' || fd === undefined) return undefined;
  return a.getCongestion(fd);
}

let restartAllowed: ((name: string) => boolean) | undefined;

/** Whether this process may set `name` on a socket: root, or listed in tcp_allowed_congestion_control. */
function mayUse(name: string): boolean {
  if (!restartAllowed) {
    const allowed = readList('/proc/sys/net/ipv4/tcp_allowed_congestion_control') ?? [];
    const root = process.getuid?.() === 0;
    restartAllowed = (n) => root || allowed.includes(n);
  }
  return restartAllowed(name);
}

/** linux/tcp.h `TCP_CA_Open`: no loss being repaired. */
const TCP_CA_OPEN = 0;
/** The algorithm a restart passes through; the kernel always has it (tcp(7)). */
const RESTART_VIA = 'reno';
/**
 * A BBR pacing gain above this (2.0, in TCP_CC_INFO's units of 1/256) is start-up's (2.89): no
 * other state of BBR v1 paces above 1.25.
 */
const BBR_STARTUP_GAIN_MIN = 2 * 256;
/**
 * Segments in flight that still count as quiet: the server's answers to the End frames of the
 * sessions just closed (a page's, before its download's New) are in flight for a round trip.
 */
const RESTART_MAX_UNACKED = 8;

/**
 * Whether a restart has anything to give a connection: it is quiet (TCP_INFO's `caState` open, at
 * most a few segments `unacked`) and, if it runs BBR, out of start-up (`bbrPacingGain` null for
 * another algorithm, or undefined when the addon cannot tell).
 */
export function restartWorthwhile(
  caState: number,
  unacked: number,
  bbrPacingGain: number | null | undefined,
): boolean {
  if (caState !== TCP_CA_OPEN || unacked > RESTART_MAX_UNACKED) return false;
  return !(typeof bbrPacingGain === 'number' && bbrPacingGain > BBR_STARTUP_GAIN_MIN);
}

/**
 * Starts a connection's congestion control afresh, for a connection about to carry a new transfer
 * after carrying little: a Mux.Cool connection whose sessions have all ended. BBR otherwise keeps
 * the bandwidth it measured on the light traffic before (a page's requests) and, in its steady
 * state, raises it by a quarter once every eight round trips, where a fresh connection's start-up
 * doubles it every round trip; on a lossy long path a download on a reused connection then ran at a
 * fraction of a fresh one's rate for its first ten seconds (docs/benchmarks.md, "Path benchmark").
 * Setting TCP_CONGESTION to another algorithm and back runs the algorithm's init again. Done only
 * on a quiet connection (TCP_INFO: no loss being repaired, at most a few segments in flight, such
 * as the answers to the last sessions' End): BBR's init takes its first pacing rate from the window
 * of the moment, and a connection restarted in loss recovery (window 1) was seen to sit in
 * retransmission back-off for seconds; with nothing at all in flight required, a download after a
 * page's sessions was seen to miss its restart. And only where this process may set both
 * algorithms, so a socket never stays on the other one. And not on a BBR connection still in its
 * start-up (a connection opened ahead that carried only a part of a page): a restart
 * there throws away the estimate start-up has built, and on the lossy peak path the new start-up
 * was seen to end at once far below it. Returns whether it was done.
 */
export function restartCongestion(s: Socket): boolean {
  const a = loadSockoptAddon();
  const fd = fdOf(s);
  if (typeof a === 'string' || fd === undefined) return false;
  try {
    const state = a.tcpState?.(fd);
    if (!state || !restartWorthwhile(state[0], state[1], a.bbrPacingGain?.(fd))) return false;
    const name = a.getCongestion(fd);
    if (name === RESTART_VIA || !mayUse(name) || !mayUse(RESTART_VIA)) return false;
    a.setCongestion(fd, RESTART_VIA);
    a.setCongestion(fd, name);
    return true;
  } catch {
    // the socket went away meanwhile
    return false;
  }
}
