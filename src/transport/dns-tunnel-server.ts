/**
 * The DNS tunnel's server: the authoritative name server of the tunnel domain. Each query under
 * the domain carries a packet of a session (codec/dns-tunnel.ts); the server keeps one
 * {@link TunnelStream} per session and hands new ones to `onSession` (`ladder server` gives them
 * to the Shadowsocks handler as connections, where the pre-authentication deadline and caps
 * apply). It can speak only in answers: a query that brings data is answered at once (with the
 * ACK and whatever is ready); a bare poll is held for up to `holdMs` so that data written
 * meanwhile leaves in its answer.
 *
 * Everything an unauthenticated sender of queries can make the server hold is capped: sessions in
 * all and per source address (the resolver's, usually), polls held per session, bytes buffered
 * per session each way (link.ts), and every session has an idle deadline. Nothing is logged about
 * names or addresses.
 * @module
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { isIPv6, type AddressInfo } from 'node:net';
import { debuglog } from 'node:util';
import { CodecError } from '../errors.js';
import { DNS_RCODE } from '../codec/dns.js';
import {
  checkTunnelDomain,
  decodeTunnelQuery,
  encodeTunnelAnswer,
  maxDownstreamData,
  TUNNEL_FLAG,
  type TunnelQuery,
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
import { describeAddress, listenError } from './listen.js';
import { systemClock, type Clock } from './types.js';

const debug = debuglog('ladder:dns-tunnel');

export interface DnsTunnelServerOptions {
  /** The tunnel domain, delegated to this server. */
  domain: string;
  /** A new session's stream, and the address its queries came from (never log it). */
  onSession(stream: TunnelStream, source: string): void;
  clock?: Clock;
  timers?: TunnelTimers;
  /** Sessions at once, all sources (default 1024). */
  maxSessions?: number;
  /** Sessions at once from one source address (default 256: one resolver serves many clients). */
  maxSessionsPerSource?: number;
  /** A session without a query for this long is closed (default 60 s). */
  idleTimeoutMs?: number;
  /** How long a poll waits for data before its empty answer (default 400 ms, under resolvers' 1 s+). */
  holdMs?: number;
  /** Polls held per session; an older one is answered when more come (default 8). */
  maxHeld?: number;
  /** Unacknowledged bytes a session's writer may have before its writes wait (default 64 KiB). */
  maxBufferedBytes?: number;
  link?: Partial<TunnelLinkOptions>;
}

/**
 * How long a session closed by its owner waits for the client to take its last bytes and FIN: a
 * client that is there polls several times a second; one that is gone must not hold a place under
 * the caps for the whole idle deadline.
 */
const LINGER_MS = 10_000;

/** Sessions remembered after they close, so that late queries get RST rather than a new session. */
const CLOSED_REMEMBERED = 4096;

interface Held {
  readonly query: TunnelQuery & { kind: 'tunnel' };
  readonly reply: (msg: Buffer) => void;
  readonly timer: unknown;
}

export class DnsTunnelServer {
  readonly domain: string;
  readonly #o: Required<
    Omit<DnsTunnelServerOptions, 'domain' | 'onSession' | 'link' | 'clock' | 'timers'>
  > & { onSession: DnsTunnelServerOptions['onSession'] };
  readonly #clock: Clock;
  readonly #timers: TunnelTimers;
  readonly #link: TunnelLinkOptions;
  readonly #sessions = new Map<number, ServerSession>();
  readonly #perSource = new Map<string, number>();
  /** Closed session ids, oldest first (a Map keeps insertion order). */
  readonly #closed = new Map<number, true>();
  #socket: UdpSocket | null = null;

  constructor(o: DnsTunnelServerOptions) {
    this.domain = checkTunnelDomain(o.domain);
    this.#clock = o.clock ?? systemClock;
    this.#timers = o.timers ?? systemTunnelTimers;
    this.#link = { ...DEFAULT_LINK_OPTIONS, ...o.link };
    this.#o = {
      onSession: o.onSession,
      maxSessions: o.maxSessions ?? 1024,
      maxSessionsPerSource: o.maxSessionsPerSource ?? 256,
      idleTimeoutMs: o.idleTimeoutMs ?? 60_000,
      holdMs: o.holdMs ?? 400,
      maxHeld: o.maxHeld ?? 8,
      maxBufferedBytes: o.maxBufferedBytes ?? 64 * 1024,
    };
  }

  /** Sessions open now. */
  get sessions(): number {
    return this.#sessions.size;
  }

  /** Sessions open now from `source`. */
  sessionsFrom(source: string): number {
    return this.#perSource.get(source) ?? 0;
  }

  /**
   * One datagram from `source`; `reply` sends an answer back. Malformed messages are dropped
   * without an answer; queries outside the domain are REFUSED; names under it that carry no
   * packet get an empty answer.
   */
  handle(msg: Buffer, source: string, reply: (out: Buffer) => void): void {
    let q: TunnelQuery;
    try {
      q = decodeTunnelQuery(msg, this.domain);
    } catch (err) {
      if (!(err instanceof CodecError)) throw err;
      debug('dropped a malformed query');
      return;
    }
    if (q.kind === 'foreign') return reply(encodeTunnelAnswer(q.message, null, DNS_RCODE.REFUSED));
    if (q.kind === 'other') return reply(encodeTunnelAnswer(q.message, null));
    const id = q.packet.session;
    let s = this.#sessions.get(id);
    if (!s) {
      if (this.#closed.has(id) || !this.#admit(source)) return reply(rst(q));
      s = this.#open(id, source);
      if (!s) return reply(rst(q));
    }
    s.query(q, reply);
  }

  #admit(source: string): boolean {
    if (this.#sessions.size >= this.#o.maxSessions) {
      debug('session refused: the cap on sessions');
      return false;
    }
    if ((this.#perSource.get(source) ?? 0) >= this.#o.maxSessionsPerSource) {
      debug('session refused: the cap on sessions per source');
      return false;
    }
    return true;
  }

  #open(id: number, source: string): ServerSession | undefined {
    const link = new TunnelLink(id, this.#link);
    const stream = new TunnelStream(link, this.#o.maxBufferedBytes);
    const s = new ServerSession(this.#o, this.#clock, this.#timers, stream, () => {
      if (this.#sessions.get(id) !== s) return;
      this.#sessions.delete(id);
      const n = (this.#perSource.get(source) ?? 1) - 1;
      if (n <= 0) this.#perSource.delete(source);
      else this.#perSource.set(source, n);
      this.#closed.set(id, true);
      if (this.#closed.size > CLOSED_REMEMBERED)
        this.#closed.delete(this.#closed.keys().next().value!);
    });
    this.#sessions.set(id, s);
    this.#perSource.set(source, (this.#perSource.get(source) ?? 0) + 1);
    this.#o.onSession(stream, source);
    // The handler may refuse it at once (a cap of its own).
    return this.#sessions.get(id);
  }

  /** Binds UDP at `host:port`. Rejects with ERR_LISTEN naming the address and the flag. */
  async listen(host: string, port: number): Promise<AddressInfo> {
    const socket = createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4' });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', (err: NodeJS.ErrnoException) =>
        reject(
          listenError(err, describeAddress('DNS tunnel UDP', host, port), '--dns-tunnel-listen'),
        ),
      );
      socket.bind(port, host, () => resolve());
    });
    socket.removeAllListeners('error');
    socket.on('error', (err) => debug('udp error %s', err.message));
    socket.on('message', (msg, rinfo) =>
      this.handle(msg, rinfo.address, (out) => socket.send(out, rinfo.port, rinfo.address)),
    );
    this.#socket = socket;
    return socket.address();
  }

  /** Closes every session and the socket. */
  close(): void {
    for (const s of [...this.#sessions.values()]) s.close();
    this.#socket?.close();
    this.#socket = null;
  }
}

function rst(q: TunnelQuery & { kind: 'tunnel' }): Buffer {
  const p = { session: q.packet.session, flags: TUNNEL_FLAG.RST, seq: 0, ack: 0 };
  return encodeTunnelAnswer(q.message, { ...p, data: new Uint8Array(0) });
}

type SessionLimits = Required<Pick<DnsTunnelServerOptions, 'idleTimeoutMs' | 'holdMs' | 'maxHeld'>>;

/** One session: its link, its stream, the polls it holds and its idle deadline. */
class ServerSession implements TunnelDriver {
  readonly stream: TunnelStream;
  readonly #o: SessionLimits;
  readonly #clock: Clock;
  readonly #timers: TunnelTimers;
  readonly #remove: () => void;
  readonly #held: Held[] = [];
  #idle: unknown;
  /** The stream was destroyed without an error: the link stays until the peer has every byte. */
  #lingering = false;
  #gone = false;

  constructor(
    o: SessionLimits,
    clock: Clock,
    timers: TunnelTimers,
    stream: TunnelStream,
    remove: () => void,
  ) {
    this.#o = o;
    this.#clock = clock;
    this.#timers = timers;
    this.stream = stream;
    this.#remove = remove;
    stream.attach(this);
    this.#idle = timers.setTimeout(() => this.#expire(), o.idleTimeoutMs);
  }

  get #link(): TunnelLink {
    return this.stream.link;
  }

  query(q: TunnelQuery & { kind: 'tunnel' }, reply: (msg: Buffer) => void): void {
    if (this.#gone) return reply(rst(q));
    this.#restartIdle();
    const now = this.#clock.now();
    const accept = this.#lingering || this.stream.accepting;
    const r = this.#link.receive(q.packet, now, accept);
    if (!this.#lingering) this.stream.deliver(r);
    if (q.packet.data.length > 0 || this.#link.wantsToSend(now)) this.#answer(q, reply);
    else {
      const timer = this.#timers.setTimeout(() => this.#release(held), this.#o.holdMs);
      const held: Held = { query: q, reply, timer };
      this.#held.push(held);
      if (this.#held.length > this.#o.maxHeld) this.#release(this.#held[0]!);
    }
    this.kick();
    this.#finishIfDone();
  }

  #restartIdle(): void {
    this.#timers.clearTimeout(this.#idle);
    const ms = this.#lingering ? Math.min(LINGER_MS, this.#o.idleTimeoutMs) : this.#o.idleTimeoutMs;
    this.#idle = this.#timers.setTimeout(() => this.#expire(), ms);
  }

  #release(h: Held): void {
    const i = this.#held.indexOf(h);
    if (i < 0) return;
    this.#held.splice(i, 1);
    this.#timers.clearTimeout(h.timer);
    this.#answer(h.query, h.reply);
    this.#finishIfDone();
  }

  #answer(q: TunnelQuery & { kind: 'tunnel' }, reply: (msg: Buffer) => void): void {
    const packet = this.#link.next(maxDownstreamData(q), this.#clock.now());
    reply(encodeTunnelAnswer(q.message, packet));
  }

  /** Answers held polls while there is something to say. */
  kick(): void {
    while (this.#held.length > 0 && this.#link.wantsToSend(this.#clock.now()))
      this.#release(this.#held[0]!);
  }

  destroyed(err: Error | null): void {
    if (this.#gone) return;
    if (err === null && !this.#link.finAcked) {
      // As a TCP socket closed by its owner: what was written still goes out, then a FIN.
      this.#lingering = true;
      this.#restartIdle();
      if (!this.stream.writableEnded) this.#link.end();
      this.kick();
      this.#finishIfDone();
      return;
    }
    this.#finish();
  }

  #finishIfDone(): void {
    // Done both ways: the session leaves the table; the stream is its owner's to destroy.
    if ((this.#lingering && this.#link.finAcked) || this.#link.done) this.#finish();
  }

  #expire(): void {
    debug('session idle, closed');
    this.close();
  }

  /** Ends the session now: held polls get RST, the stream is destroyed. */
  close(): void {
    this.#finish();
    this.stream.destroy();
  }

  #finish(): void {
    if (this.#gone) return;
    this.#gone = true;
    this.#timers.clearTimeout(this.#idle);
    for (const h of this.#held.splice(0)) {
      this.#timers.clearTimeout(h.timer);
      h.reply(rst(h.query));
    }
    this.#remove();
  }
}
