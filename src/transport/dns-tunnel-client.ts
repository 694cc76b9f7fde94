/**
 * The DNS tunnel's client: one session is a byte stream (a {@link TunnelStream}) carried in TXT
 * queries sent to a recursive resolver, which forwards them to the tunnel domain's server. The
 * server can only answer, so the client keeps queries in flight: up to `window` while data moves
 * either way, one poll (held by the server) while the session is idle, and after a few empty
 * answers in a row a pause before each poll that doubles up to {@link MAX_POLL_DELAY_MS}, so that
 * an idle session costs the resolver little. A query unanswered after
 * `slotMs` (longer than the server holds a poll) no longer takes a place in the window, so that
 * lost queries do not stall the session; its answer is still taken until `queryTimeoutMs`. The
 * link (dns-tunnel-link.ts) sends again what was lost. A session with no answer at all for
 * `deadMs` fails with ERR_DIAL_TIMEOUT.
 *
 * The stream carries a Shadowsocks stream (ss-dialer.ts `connect`), which authenticates and
 * encrypts; the DNS layer adds neither.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import { debuglog } from 'node:util';
import { CodecError, DialError } from '../errors.js';
import {
  checkTunnelDomain,
  decodeTunnelAnswer,
  encodeTunnelQuery,
  maxUpstreamData,
  TUNNEL_FLAG,
  TUNNEL_NONCE_BYTES,
} from '../codec/dns-tunnel.js';
import {
  DEFAULT_LINK_OPTIONS,
  systemTunnelTimers,
  TunnelLink,
  TunnelStream,
  type TunnelDriver,
  type TunnelLinkOptions,
  type TunnelTimers,
} from './dns-tunnel-link.js';
import { systemClock, type Clock } from './types.js';

const debug = debuglog('ladder:dns-tunnel');

/** The longest pause before a poll of an idle session: the delay data from the server can see. */
export const MAX_POLL_DELAY_MS = 2000;
/** The first pause, after {@link IDLE_POLLS} empty answers in a row. */
const FIRST_POLL_DELAY_MS = 100;
const IDLE_POLLS = 3;

/** Where queries go and answers come from: a UDP socket to the resolver, or a test's channel. */
export interface DatagramPort {
  send(msg: Buffer): void;
  onMessage(fn: (msg: Buffer) => void): void;
  close(): void;
}

export interface DnsTunnelClientOptions {
  /** The tunnel domain (the server's `--dns-tunnel`). */
  domain: string;
  clock?: Clock;
  timers?: TunnelTimers;
  random?: (n: number) => Uint8Array;
  /** Queries in flight while data moves (default 16). */
  window?: number;
  /** A query unanswered this long leaves the window (default 1 s; the server holds polls 0.4 s). */
  slotMs?: number;
  /** A query unanswered this long is given up (default 3 s: resolvers retry within ~2 s). */
  queryTimeoutMs?: number;
  /** No answer at all for this long: the session fails (default 30 s). */
  deadMs?: number;
  /** Unacknowledged bytes before writes wait (default 32 KiB). */
  maxBufferedBytes?: number;
  link?: Partial<TunnelLinkOptions>;
}

/**
 * Opens a session over `port` (the caller's; closed with the session). Returns at once: the DNS
 * layer has no handshake, and a tunnel that does not answer shows as an error on the stream.
 */
export function openDnsTunnel(port: DatagramPort, o: DnsTunnelClientOptions): TunnelStream {
  const random = o.random ?? randomBytes;
  const session = Buffer.from(random(4)).readUInt32BE(0);
  const link = new TunnelLink(session, { ...DEFAULT_LINK_OPTIONS, ...o.link });
  const stream = new TunnelStream(link, o.maxBufferedBytes ?? 32 * 1024);
  new ClientSession(port, o, random, stream);
  return stream;
}

/** A UDP socket to the resolver at `host:port`. */
export function udpDatagramPort(host: string, port: number): DatagramPort {
  const socket = createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4' });
  socket.on('error', (err) => debug('udp error %s', err.message));
  let closed = false;
  return {
    send: (msg) => {
      if (!closed) socket.send(msg, port, host);
    },
    onMessage: (fn) => socket.on('message', (msg) => fn(msg)),
    close: () => {
      if (closed) return;
      closed = true;
      socket.close();
    },
  };
}

/** Opens a session through the resolver at `resolver` (host and port). */
export function dnsTunnelConnect(
  resolver: { host: string; port: number },
  o: DnsTunnelClientOptions,
): TunnelStream {
  return openDnsTunnel(udpDatagramPort(resolver.host, resolver.port), o);
}

class ClientSession implements TunnelDriver {
  readonly #port: DatagramPort;
  readonly #domain: string;
  readonly #maxUp: number;
  readonly #clock: Clock;
  readonly #timers: TunnelTimers;
  readonly #random: (n: number) => Uint8Array;
  readonly #window: number;
  readonly #queryTimeoutMs: number;
  readonly #slotMs: number;
  /** Queries in flight that still take a place in the window. */
  #live = 0;
  readonly #deadMs: number;
  readonly #stream: TunnelStream;
  readonly #inflight = new Map<number, { timer: unknown; live: boolean }>();
  #lastAnswerAt: number;
  /** The last answer brought data: keep the window full of polls for more. */
  #streaming = true;
  /** Empty answers in a row while there was nothing to send. */
  #empty = 0;
  /** A poll waits for this timer (an idle session's pause). */
  #pollTimer: unknown = null;
  #lingering = false;
  #gone = false;

  constructor(
    port: DatagramPort,
    o: DnsTunnelClientOptions,
    random: (n: number) => Uint8Array,
    stream: TunnelStream,
  ) {
    this.#port = port;
    this.#domain = checkTunnelDomain(o.domain);
    this.#maxUp = maxUpstreamData(this.#domain);
    this.#clock = o.clock ?? systemClock;
    this.#timers = o.timers ?? systemTunnelTimers;
    this.#random = random;
    this.#window = Math.max(1, o.window ?? 16);
    this.#queryTimeoutMs = o.queryTimeoutMs ?? 3000;
    this.#slotMs = Math.min(o.slotMs ?? 1000, this.#queryTimeoutMs);
    this.#deadMs = o.deadMs ?? 30_000;
    this.#stream = stream;
    this.#lastAnswerAt = this.#clock.now();
    stream.attach(this);
    port.onMessage((msg) => this.#onAnswer(msg));
    this.kick();
  }

  get #link(): TunnelLink {
    return this.#stream.link;
  }

  /** Sends queries while there is room in the window and a reason to. */
  kick(): void {
    if (this.#gone) return;
    const now = this.#clock.now();
    if (this.#link.done || (this.#lingering && this.#link.finAcked)) return this.#finish();
    for (;;) {
      const wants = this.#link.wantsToSend(now);
      const target = wants || this.#streaming ? this.#window : 1;
      if (this.#live >= target) break;
      if (this.#live >= 1 && !wants && !this.#streaming) break;
      if (!wants && !this.#streaming && this.#empty >= IDLE_POLLS) {
        this.#pollLater();
        break;
      }
      this.#send(now);
    }
  }

  /** An idle session's next poll, after a pause that doubles with each empty answer. */
  #pollLater(): void {
    if (this.#pollTimer !== null) return;
    const delay = Math.min(
      MAX_POLL_DELAY_MS,
      FIRST_POLL_DELAY_MS * 2 ** Math.min(16, this.#empty - IDLE_POLLS),
    );
    this.#pollTimer = this.#timers.setTimeout(() => {
      this.#pollTimer = null;
      if (this.#gone || this.#live > 0) return;
      this.#send(this.#clock.now());
    }, delay);
  }

  #send(now: number): void {
    if (this.#link.wantsToSend(now)) this.#empty = 0;
    let id: number;
    do id = Buffer.from(this.#random(2)).readUInt16BE(0);
    while (this.#inflight.has(id));
    const packet = this.#link.next(this.#maxUp, now);
    const msg = encodeTunnelQuery(this.#domain, packet, id, this.#random(TUNNEL_NONCE_BYTES));
    const q = { timer: this.#timers.setTimeout(() => this.#late(id), this.#slotMs), live: true };
    this.#inflight.set(id, q);
    this.#live++;
    this.#port.send(msg);
  }

  /** The query is late: its place in the window goes to a new one; its answer is still taken. */
  #late(id: number): void {
    const q = this.#inflight.get(id);
    if (!q || this.#gone) return;
    q.live = false;
    this.#live--;
    q.timer = this.#timers.setTimeout(() => this.#lost(id), this.#queryTimeoutMs - this.#slotMs);
    this.kick();
  }

  #lost(id: number): void {
    if (!this.#inflight.delete(id) || this.#gone) return;
    if (this.#clock.now() - this.#lastAnswerAt >= this.#deadMs) {
      const err = new DialError(
        'ERR_DIAL_TIMEOUT',
        `DNS tunnel: no answer through the resolver for ${Math.round(this.#deadMs / 1000)} s; check --dns-tunnel-resolver and that the tunnel domain is delegated to the server`,
      );
      this.#finish();
      if (!this.#stream.destroyed) this.#stream.destroy(err);
      return;
    }
    this.kick();
  }

  #onAnswer(msg: Buffer): void {
    if (this.#gone) return;
    let a: ReturnType<typeof decodeTunnelAnswer>;
    try {
      a = decodeTunnelAnswer(msg);
    } catch (err) {
      if (!(err instanceof CodecError)) throw err;
      return;
    }
    const q = this.#inflight.get(a.id);
    if (q === undefined) return;
    const p = a.packet;
    if (p && p.session !== this.#link.session) return;
    this.#inflight.delete(a.id);
    this.#timers.clearTimeout(q.timer);
    if (q.live) this.#live--;
    const now = this.#clock.now();
    this.#lastAnswerAt = now;
    if (!p) return this.kick(); // a resolver's error: as if lost
    if ((p.flags & TUNNEL_FLAG.RST) !== 0) {
      // After the server's FIN, a RST only says it has finished too (our last ACK was lost).
      if (this.#link.peerEnded && (this.#lingering || this.#link.finAcked)) return this.#finish();
      const err = new DialError(
        'ERR_DIAL_REFUSED',
        'DNS tunnel: the server refused or closed the session (it is full, or restarted)',
      );
      this.#finish();
      if (!this.#stream.destroyed) this.#stream.destroy(err);
      return;
    }
    const r = this.#link.receive(p, now, this.#lingering || this.#stream.accepting);
    if (!this.#lingering) this.#stream.deliver(r);
    this.#streaming = p.data.length > 0;
    if (this.#streaming || this.#link.wantsToSend(now)) this.#empty = 0;
    else this.#empty++;
    this.kick();
  }

  destroyed(err: Error | null): void {
    if (this.#gone) return;
    if (err === null && !this.#link.finAcked) {
      // Closed by its owner: what was written still goes, then a FIN, as a TCP socket's would.
      this.#lingering = true;
      if (!this.#stream.writableEnded) this.#link.end();
      this.kick();
      return;
    }
    this.#finish();
  }

  #finish(): void {
    if (this.#gone) return;
    this.#gone = true;
    if (this.#pollTimer !== null) this.#timers.clearTimeout(this.#pollTimer);
    this.#pollTimer = null;
    for (const q of this.#inflight.values()) this.#timers.clearTimeout(q.timer);
    this.#inflight.clear();
    this.#live = 0;
    this.#port.close();
  }
}
