/**
 * The Trojan server side, for connections whose TLS (or WebSocket) layer is already unwrapped.
 *
 * A connection that is not a Trojan request with a known password — an ordinary HTTPS request, a
 * probe, a wrong password, silence — is handed with every byte it sent to the fallback web site, so
 * that anyone without a key sees only a web server (docs/probe-resistance.md, "TLS transports").
 * Password hashes are compared in constant time against every user.
 *
 * A request for v1.mux.cool (any port) carries Mux.Cool, as v2ray's trojan outbound sends it with
 * `mux` enabled (v2ray-core common/mux/server.go dispatches it so for every inbound): each session's
 * New frame names its own target, which is dialled as a Trojan CONNECT's would be; the sessions
 * count against the one lease the connection took.
 *
 * A request for carrier.ladder.invalid carries one connection of a carrier session
 * (codec/trojan-carrier.ts, carrier-sessions.ts): a stream spread over short connections, each under
 * a censor's per-connection byte budget. Each carrier takes its own lease.
 * @module
 */
import { DEFAULT_IDLE_TIMEOUT_MS } from '../core/defaults.js';
import { timingSafeEqual } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { Socket } from 'node:net';
import { debuglog } from 'node:util';
import { CodecError, LadderError, type ErrorCode } from '../errors.js';
import {
  TROJAN_CMD,
  TROJAN_HASH_LENGTH,
  decodeTrojanRequest,
  takeTrojanUdpPacket,
  encodeTrojanUdpPacket,
  trojanUdpPacketLength,
  type TrojanRequest,
} from '../codec/trojan.js';
import { ByteQueue } from '../codec/ss-stream.js';
import { MUX_COOL_TARGET } from '../codec/mux-cool.js';
import { MuxCool, type MuxSession } from '../stream/mux-cool.js';
import { CARRIER_TARGET } from '../codec/trojan-carrier.js';
import { CarrierSessions, type CarrierSessionsOptions } from './carrier-sessions.js';
import { leasedRelay } from './access/leased-relay.js';
import { restartCongestion } from '../transport/congestion.js';
import type { PacketDialer, StreamDialer } from '../transport/types.js';
import type { Fallback } from './decoy/decoy-site.js';
import { CountingGate, type AccessGate, type Lease } from './access/gate.js';
import { readFirstBytes, settlePreAuth, type FirstBytes } from './pre-auth.js';

const debug = debuglog('ladder:trojan');
/** hash + CRLF + cmd + longest address + CRLF */
const MAX_REQUEST_LENGTH = TROJAN_HASH_LENGTH + 2 + 1 + (1 + 1 + 255 + 2) + 2;

export interface TrojanUser {
  readonly id: string;
  /** hex(SHA224(password)) as 56 ASCII bytes. */
  readonly hash: Buffer;
}

export interface TrojanEvents {
  /** A connection went to the fallback site; `code` says why. */
  fallback?(code: ErrorCode): void;
  accepted?(userId: string): void;
  closed?(userId: string, up: number, down: number): void;
}

export interface TrojanHandlerOptions {
  users: readonly TrojanUser[];
  dialer: StreamDialer;
  packetDialer?: PacketDialer;
  fallback: Fallback;
  /** Hand a connection that has not completed a request within this long to the fallback (default 30 s). */
  handshakeTimeoutMs?: number;
  /**
   * An authenticated relay, Mux.Cool connection without sessions, or UDP association with no bytes
   * either way for this long is closed (default 5 min; `--idle-timeout`).
   */
  idleTimeoutMs?: number;
  /** Mux.Cool sessions at once on one connection; more are refused with End (default 256). */
  maxMuxSessions?: number;
  events?: TrojanEvents;
  /** Caps and deadlines of carrier sessions (carrier-sessions.ts CARRIER_DEFAULTS). */
  carrier?: Omit<CarrierSessionsOptions, 'dialer' | 'idleTimeoutMs'>;
  /** Admits authenticated users and takes their byte counts (default: admit all). */
  gate?: AccessGate;
}

export class TrojanHandler {
  #users: readonly TrojanUser[];
  readonly #o: TrojanHandlerOptions;
  readonly #gate: AccessGate;
  #carriers: CarrierSessions | null = null;

  constructor(options: TrojanHandlerOptions) {
    this.#users = options.users;
    this.#o = options;
    this.#gate = options.gate ?? new CountingGate();
  }

  /** Carrier sessions open now. */
  get carrierSessions(): number {
    return this.#carriers?.size ?? 0;
  }

  setUsers(users: readonly TrojanUser[]): void {
    this.#users = users;
  }

  /** Finds the user whose hash matches, comparing against every user in constant time each. */
  #findUser(hash: Buffer): TrojanUser | undefined {
    let found: TrojanUser | undefined;
    for (const u of this.#users) if (timingSafeEqual(u.hash, hash) && !found) found = u;
    return found;
  }

  /**
   * Serves one connection; anything that is not a request with a known password goes, with every
   * byte it sent, to `fallback` (default: the handler's web site; inside a WebSocket the caller
   * passes the Shadowsocks probe rule instead, see ws-front.ts).
   */
  handle(conn: Duplex, fallback: Fallback = this.#o.fallback): void {
    conn.on('error', () => conn.destroy());
    const toFallback = (fb: FirstBytes, code: ErrorCode): void => {
      fb.stop();
      this.#o.events?.fallback?.(code);
      debug('fallback %s', code);
      fallback.handle(conn, fb.q.takeAll());
    };
    readFirstBytes(conn, {
      stageTimeoutMs: this.#o.handshakeTimeoutMs ?? 30_000,
      onTimeout: (fb) => toFallback(fb, 'ERR_PROBE_TIMEOUT'),
      onEnd: (fb) => toFallback(fb, 'ERR_PROBE_SHORT'),
      onBytes: (fb) => {
        const q = fb.q;
        const head = q.peek(Math.min(q.length, MAX_REQUEST_LENGTH + 64));
        let decoded;
        try {
          decoded = decodeTrojanRequest(head, 0);
        } catch (err) {
          toFallback(fb, err instanceof LadderError ? err.code : 'ERR_TROJAN');
          return;
        }
        if (decoded === null) {
          if (q.length > MAX_REQUEST_LENGTH) toFallback(fb, 'ERR_TROJAN');
          return;
        }
        const user = this.#findUser(decoded.value.hash);
        if (!user) {
          toFallback(fb, 'ERR_CIPHER');
          return;
        }
        // A refused key (device limit) is treated as a wrong password: the decoy gets the bytes.
        const client = (conn as { remoteAddress?: string }).remoteAddress ?? '';
        const transport = decoded.value.command === TROJAN_CMD.UDP_ASSOCIATE ? 'udp' : 'tcp';
        const lease = this.#gate.open(user.id, client, transport);
        if (!lease) {
          toFallback(fb, 'ERR_ACCESS_DENIED');
          return;
        }
        fb.stop();
        settlePreAuth(conn);
        q.take(decoded.bytesRead);
        this.#o.events?.accepted?.(user.id);
        void this.#serve(conn, user, decoded.value, q.takeAll(), lease);
      },
    });
  }

  async #serve(
    conn: Duplex,
    user: TrojanUser,
    req: TrojanRequest,
    rest: Buffer,
    lease: Lease,
  ): Promise<void> {
    lease.onRevoke(() => conn.destroy());
    if (req.command === TROJAN_CMD.UDP_ASSOCIATE) {
      this.#serveUdp(conn, user, rest, lease);
      return;
    }
    if (req.target.host.toLowerCase() === MUX_COOL_TARGET.host) {
      this.#serveMux(conn, user, rest, lease);
      return;
    }
    if (req.target.host.toLowerCase() === CARRIER_TARGET.host) {
      this.#carriers ??= new CarrierSessions({
        dialer: this.#o.dialer,
        idleTimeoutMs: this.#o.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
        ...this.#o.carrier,
      });
      conn.once('close', () => this.#o.events?.closed?.(user.id, 0, 0));
      this.#carriers.attach(conn, user.id, rest, lease);
      return;
    }
    let up: Duplex;
    try {
      up = await this.#o.dialer.dial(req.target);
    } catch (err) {
      debug('dial failed %s', err instanceof LadderError ? err.code : 'ERR_DIAL');
      conn.destroy();
      lease.close();
      this.#o.events?.closed?.(user.id, 0, 0);
      return;
    }
    if (conn.destroyed) {
      up.destroy();
      lease.close();
      this.#o.events?.closed?.(user.id, 0, 0);
      return;
    }
    const t = await leasedRelay(conn, up, lease, {
      idleTimeoutMs: this.#o.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
      first: rest,
      paused: conn,
    });
    lease.close();
    this.#o.events?.closed?.(user.id, t.up, t.down);
  }

  /** Mux.Cool inside the Trojan connection: every session is a CONNECT to the target its New names. */
  #serveMux(conn: Duplex, user: TrojanUser, rest: Buffer, lease: Lease): void {
    let up = 0;
    let down = 0;
    let live = 0;
    let served = 0;
    // UDP sessions (network 2) are refused with End by MuxCool: UDP goes over UDP ASSOCIATE.
    new MuxCool(conn, {
      role: 'server',
      head: rest,
      maxSessions: this.#o.maxMuxSessions ?? 256,
      // Over TLS directly (not inside a WebSocket): the socket's write callback frees a frame.
      reuseFrames: conn instanceof Socket,
      idleTimeoutMs: this.#o.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
      onSession: (s, target) => {
        // A session on a connection that has carried others and now carries none: the download
        // it may be starts with the congestion control's start-up, as on a fresh connection.
        if (live === 0 && served > 0 && conn instanceof Socket) restartCongestion(conn);
        live++;
        served++;
        s.once('close', () => live--);
        void this.#serveSession(s, target, lease).then(([u, d]) => {
          up += u;
          down += d;
        });
      },
    });
    conn.once('close', () => {
      lease.close();
      this.#o.events?.closed?.(user.id, up, down);
    });
    conn.resume();
    debug('mux connection');
  }

  /** One Mux.Cool session: dial its target and relay; resolves with the bytes up and down. */
  async #serveSession(
    s: MuxSession,
    target: TrojanRequest['target'],
    lease: Lease,
  ): Promise<[number, number]> {
    s.on('error', (e) => debug('mux session error %s', e instanceof LadderError ? e.code : ''));
    let out: Duplex;
    try {
      out = await this.#o.dialer.dial(target);
    } catch (err) {
      debug('mux dial failed %s', err instanceof LadderError ? err.code : 'ERR_DIAL');
      s.destroy(err instanceof Error ? err : new LadderError('ERR_DIAL', String(err)));
      return [0, 0];
    }
    if (s.destroyed) {
      out.destroy();
      return [0, 0];
    }
    const t = await leasedRelay(s, out, lease, {
      idleTimeoutMs: this.#o.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
    });
    return [t.up, t.down];
  }

  #serveUdp(conn: Duplex, user: TrojanUser, rest: Buffer, lease: Lease): void {
    if (!this.#o.packetDialer) {
      conn.destroy();
      lease.close();
      return;
    }
    const q = new ByteQueue();
    let up = 0;
    let down = 0;
    // An association with no datagram either way for the idle timeout is closed, as a relay is.
    const idleMs = this.#o.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    const idle = setTimeout(() => conn.destroy(), idleMs);
    idle.unref();
    const touch = (): void => {
      idle.refresh();
    };
    const session = this.#o.packetDialer.open((payload, from) => {
      touch();
      const frame = Buffer.allocUnsafe(trojanUdpPacketLength({ target: from, payload }));
      encodeTrojanUdpPacket({ target: from, payload }, frame, 0);
      down += payload.length;
      if (lease.down(payload.length) > 0) return; // over the speed cap: dropped, as UDP may be
      conn.write(frame);
    });
    const onData = (chunk: Buffer): void => {
      touch();
      q.push(chunk);
      for (;;) {
        let p;
        try {
          p = takeTrojanUdpPacket(q);
        } catch (err) {
          debug('bad UDP frame %s', err instanceof CodecError ? err.code : 'ERR_TROJAN');
          conn.destroy();
          return;
        }
        if (p === null) {
          if (q.length > 0xffff + 300) conn.destroy();
          return;
        }
        up += p.payload.length;
        if (lease.up(p.payload.length) > 0) continue;
        session.send(p.payload, p.target);
      }
    };
    conn.on('data', onData);
    conn.on('end', () => conn.end());
    conn.on('close', () => {
      clearTimeout(idle);
      session.close();
      lease.close();
      this.#o.events?.closed?.(user.id, up, down);
    });
    if (rest.length > 0) onData(rest);
    conn.resume();
  }
}
