/**
 * The one rule for every connection without a key, on every front (raw Shadowsocks, the one port
 * with TLS, Trojan, WebSockets, the plain `--ws-listen` port): from accept until it authenticates
 * (a Shadowsocks request a key opens, a Trojan request with a known password, a WebSocket upgrade
 * on a secret path) or has sent the decoy a complete HTTP request, a connection holds a
 * {@link PreAuthTicket}. The ticket's one timer closes the connection at the deadline whatever stage
 * it is in — TCP accepted, TLS handshaking, TLS done and silent, headers trickling in — and the
 * guard caps how many such connections one source (an IPv4 /32, an IPv6 /64) and everyone together
 * may hold, so that one host cannot fill the port and lock key holders out
 * (docs/probe-resistance.md, "Deadline and caps").
 *
 * The layers above the accepting socket (a TLS socket over it, a WebSocket) do not own the socket:
 * they find its ticket through {@link linkPreAuth} and end it with {@link settlePreAuth}. Settling
 * is idempotent and a stream without a ticket settles nothing, so a front may call it whatever
 * carried the stream.
 *
 * Also here: {@link readFirstBytes}, the buffer-and-decide loop every front runs on its first
 * bytes (buffer, a stage timer, try to decide on each read, then hand the bytes on).
 * @module
 */
import { DEFAULT_AUTH_TIMEOUT_MS } from '../core/defaults.js';
import type { Duplex } from 'node:stream';
import { isIPv4, isIPv6 } from 'node:net';
import { ByteQueue } from '../codec/ss-stream.js';

export { systemTimers, type Timers } from '../core/clock.js';
import { systemTimers, type Timers } from '../core/clock.js';

/** Default deadline: nginx's `client_header_timeout`, what a web server does with silence. */
export const DEFAULT_PRE_AUTH_DEADLINE_MS = DEFAULT_AUTH_TIMEOUT_MS;
/** Default cap on connections without a key, all sources together. */
export const DEFAULT_MAX_PRE_AUTH = 4096;
/** Default cap on connections without a key from one source (an IPv4 /32 or an IPv6 /64). */
export const DEFAULT_MAX_PRE_AUTH_PER_SOURCE = 256;

export interface PreAuthGuardOptions {
  /** From accept until authenticated or a complete decoy request (default 60 s). */
  deadlineMs?: number;
  /** Connections without a key at once, all sources (default 4096). */
  maxTotal?: number;
  /** Connections without a key at once from one /32 or /64 (default 256). */
  maxPerSource?: number;
  timers?: Timers;
  events?: {
    /** A connection was closed at accept: the total cap or its source's cap was reached. */
    refused?(cap: 'total' | 'source'): void;
    /** A connection reached the deadline without authenticating and was closed. */
    expired?(): void;
  };
}

/** One unauthenticated connection's place under the caps and its deadline timer. */
export interface PreAuthTicket {
  /** The connection authenticated (or sent the decoy a whole request): the deadline is off. */
  settle(): void;
  readonly settled: boolean;
}

const tickets = new WeakMap<object, PreAuthTicket>();

/** `inner` (a TLS socket over `outer`, a replay of it) answers for `outer`'s ticket. */
export function linkPreAuth(outer: object, inner: object): void {
  const t = tickets.get(outer);
  if (t) tickets.set(inner, t);
}

/** Ends the pre-authentication phase of `conn`'s connection; nothing if it has no ticket. */
export function settlePreAuth(conn: object): void {
  tickets.get(conn)?.settle();
}

/** Whether `conn` still waits to authenticate under a guard (false once settled or unguarded). */
export function isPreAuth(conn: object): boolean {
  const t = tickets.get(conn);
  return t !== undefined && !t.settled;
}

/**
 * The source a cap counts by: an IPv4 address (IPv4-mapped IPv6 included), or the first 64 bits of
 * an IPv6 address as 16 hex digits. Anything else (no address) counts as one source, ''.
 */
export function sourceOf(address: string | undefined): string {
  if (!address) return '';
  let a = address;
  const zone = a.indexOf('%');
  if (zone >= 0) a = a.slice(0, zone);
  if (isIPv4(a)) return a;
  if (!isIPv6(a)) return '';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
  if (mapped) return mapped[1]!;
  const [head = '', tail] = a.split('::') as [string, string | undefined];
  const groups = (s: string): string[] => (s === '' ? [] : s.split(':'));
  const h = groups(head);
  let prefix: string[];
  if (tail === undefined) prefix = h;
  else {
    const t = groups(tail);
    // An embedded IPv4 tail stands for two groups; only the first four groups matter here.
    const tLen = t.length + (t.length > 0 && t[t.length - 1]!.includes('.') ? 1 : 0);
    prefix = [...h, ...new Array<string>(Math.max(0, 8 - h.length - tLen)).fill('0'), ...t];
  }
  return prefix
    .slice(0, 4)
    .map((g) => g.padStart(4, '0').toLowerCase())
    .join('');
}

export class PreAuthGuard {
  readonly deadlineMs: number;
  readonly #maxTotal: number;
  readonly #maxPerSource: number;
  readonly #timers: Timers;
  readonly #events: NonNullable<PreAuthGuardOptions['events']>;
  readonly #perSource = new Map<string, number>();
  #total = 0;

  constructor(o: PreAuthGuardOptions = {}) {
    this.deadlineMs = o.deadlineMs ?? DEFAULT_PRE_AUTH_DEADLINE_MS;
    this.#maxTotal = o.maxTotal ?? DEFAULT_MAX_PRE_AUTH;
    this.#maxPerSource = o.maxPerSource ?? DEFAULT_MAX_PRE_AUTH_PER_SOURCE;
    this.#timers = o.timers ?? systemTimers;
    this.#events = o.events ?? {};
  }

  /** Connections without a key now, all sources. */
  get pending(): number {
    return this.#total;
  }

  /** Connections without a key now from `address`'s source. */
  pendingFrom(address: string | undefined): number {
    return this.#perSource.get(sourceOf(address)) ?? 0;
  }

  /**
   * A connection was accepted from `address`: its ticket, or null when a cap is reached (then the
   * connection is destroyed at once, as a full listen queue would drop it, without a byte).
   */
  admit(conn: Duplex, address: string | undefined): PreAuthTicket | null {
    const source = sourceOf(address);
    const fromSource = this.#perSource.get(source) ?? 0;
    const cap =
      this.#total >= this.#maxTotal ? 'total' : fromSource >= this.#maxPerSource ? 'source' : null;
    if (cap) {
      this.#events.refused?.(cap);
      conn.destroy();
      return null;
    }
    this.#total++;
    this.#perSource.set(source, fromSource + 1);
    let settled = false;
    const release = (): void => {
      if (settled) return;
      settled = true;
      this.#timers.clearTimeout(timer);
      conn.off('close', release);
      this.#total--;
      const n = (this.#perSource.get(source) ?? 1) - 1;
      if (n <= 0) this.#perSource.delete(source);
      else this.#perSource.set(source, n);
    };
    const timer = this.#timers.setTimeout(() => {
      if (settled) return;
      release();
      this.#events.expired?.();
      conn.destroy();
    }, this.deadlineMs);
    conn.once('close', release);
    const ticket: PreAuthTicket = {
      settle: release,
      get settled() {
        return settled;
      },
    };
    tickets.set(conn, ticket);
    return ticket;
  }
}

/** A front's view of a connection's first bytes while it decides what they are. */
export interface FirstBytes {
  /** Every byte read so far (and the head given). */
  readonly q: ByteQueue;
  /** Ends the loop: listeners off, stage timer off, the connection paused. Call before acting. */
  stop(): void;
  readonly stopped: boolean;
}

export interface FirstBytesOptions {
  /** Bytes already read from `conn` (decided on first). */
  head?: Buffer;
  /** How long this stage waits for a decision before `onTimeout` (absent: no stage timer). */
  stageTimeoutMs?: number;
  timers?: Timers;
  /** After each read (and at once for a non-empty head): decide, or return to wait for more. */
  onBytes(fb: FirstBytes): void;
  /** The stage timer fired before a decision (the loop has stopped). */
  onTimeout?(fb: FirstBytes): void;
  /** The peer ended before a decision (the loop has stopped). */
  onEnd(fb: FirstBytes): void;
}

/**
 * The loop every front runs on a connection's first bytes: buffer them, run a stage timer, try to
 * decide on each read, then (after `stop()`) hand over, fall back or discard.
 */
export function readFirstBytes(conn: Duplex, o: FirstBytesOptions): FirstBytes {
  const timers = o.timers ?? systemTimers;
  let stopped = false;
  let timer: unknown;
  const onData = (chunk: Buffer): void => {
    fb.q.push(chunk);
    o.onBytes(fb);
  };
  const onEnd = (): void => {
    fb.stop();
    o.onEnd(fb);
  };
  const fb: FirstBytes = {
    q: new ByteQueue(),
    stop() {
      if (stopped) return;
      stopped = true;
      if (timer !== undefined) timers.clearTimeout(timer);
      conn.off('data', onData);
      conn.off('end', onEnd);
      conn.pause();
    },
    get stopped() {
      return stopped;
    },
  };
  if (o.stageTimeoutMs !== undefined)
    timer = timers.setTimeout(() => {
      if (stopped) return;
      fb.stop();
      o.onTimeout?.(fb);
    }, o.stageTimeoutMs);
  conn.on('data', onData);
  conn.on('end', onEnd);
  if (o.head && o.head.length > 0) {
    fb.q.push(o.head);
    o.onBytes(fb);
  }
  if (!stopped) conn.resume();
  return fb;
}
