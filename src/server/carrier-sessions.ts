/**
 * The server side of carrier sessions (codec/trojan-carrier.ts): a table of sessions, each holding
 * its target connection, the server→client bytes not yet acknowledged, and at most one attached
 * carrier connection. A carrier writes at most its CARRIER BYTES (frames included), then NEXT, and
 * ends; the client opens the next one, naming the offsets it holds, and the session goes on.
 *
 * Sessions exist only after Trojan authentication (the handler passes authenticated connections
 * only), are keyed by user and session id (one user cannot name another's session), and are capped
 * per user and in all. A session without a carrier is closed after `detachedTimeoutMs`; one with no
 * bytes either way after `idleTimeoutMs`. The target is paused while the unsent bytes are over a
 * bound, so memory per session stays under CARRIER BYTES plus that bound plus one read.
 * When the target's side ends the server sends FIN and closes the target: it does not keep a
 * half-closed session for the client's upload after that. The session itself stays, finished, until
 * the client acknowledges the whole stream (an ACK after FIN) or for `detachedTimeoutMs`: the
 * carrier with the stream's tail may be frozen on the way (a byte budget), and the client then
 * resumes from what it holds. A finished session gives way when a new one would pass a cap.
 * @module
 */
import type { Duplex } from 'node:stream';
import { debuglog } from 'node:util';
import { LadderError } from '../errors.js';
import {
  CARRIER_FRAME,
  CARRIER_FRAME_HEADER_LENGTH,
  CARRIER_MAX_PAYLOAD,
  carrierAckOffset,
  carrierFrame,
  decodeCarrierFrame,
  decodeCarrierOpen,
  type CarrierOpen,
} from '../codec/trojan-carrier.js';
import { ByteQueue } from '../codec/ss-stream.js';
import type { StreamDialer, Target } from '../transport/types.js';
import type { Lease } from './access/gate.js';

const debug = debuglog('ladder:carrier');

/** An ACK frame: header + u48. */
const ACK_FRAME_LENGTH = CARRIER_FRAME_HEADER_LENGTH + 6;
/** Room kept on every carrier for the frame that ends it (NEXT, FIN or RESET, all empty). */
const END_FRAME_LENGTH = CARRIER_FRAME_HEADER_LENGTH;
/** Received client→server bytes after which the server acknowledges them. */
const ACK_EVERY_BYTES = 16 * 1024;
/** Target bytes read but not yet sent on a carrier, above which the target is paused. */
const MAX_UNSENT_BYTES = 64 * 1024;
/** DATA frames are cut at this size so that a carrier's end lands near its cap. */
const DATA_CHUNK_BYTES = 16 * 1024;
/** Client→server bytes held while the target is being dialled. */
const MAX_EARLY_UP_BYTES = 256 * 1024;

export const CARRIER_DEFAULTS = {
  /** Sessions per user at once. */
  maxSessionsPerUser: 64,
  /** Sessions at once on the server. */
  maxSessions: 4096,
  /** A session with no carrier attached for this long is closed. */
  detachedTimeoutMs: 30_000,
  /** A carrier that has not sent its whole open header within this long is closed. */
  openTimeoutMs: 30_000,
} as const;

export interface CarrierSessionsOptions {
  dialer: StreamDialer;
  /** No bytes either way for this long closes the session (the relay's idle timeout). */
  idleTimeoutMs: number;
  maxSessionsPerUser?: number;
  maxSessions?: number;
  detachedTimeoutMs?: number;
  openTimeoutMs?: number;
}

/** Bytes from `base` on, as a list of chunks; read at any offset, dropped from the front. */
class OffsetBuffer {
  base = 0;
  length = 0;
  readonly #chunks: Buffer[] = [];

  get end(): number {
    return this.base + this.length;
  }

  push(b: Buffer): void {
    this.#chunks.push(b);
    this.length += b.length;
  }

  /** Forgets every byte before `offset` (base ≤ offset ≤ end). */
  dropTo(offset: number): void {
    let n = offset - this.base;
    while (n > 0) {
      const c = this.#chunks[0]!;
      if (c.length <= n) {
        this.#chunks.shift();
        n -= c.length;
        this.length -= c.length;
        this.base += c.length;
      } else {
        this.#chunks[0] = c.subarray(n);
        this.length -= n;
        this.base += n;
        n = 0;
      }
    }
  }

  /** Up to `max` bytes from `offset` (base ≤ offset < end), a view inside one chunk. */
  read(offset: number, max: number): Buffer {
    let at = offset - this.base;
    for (const c of this.#chunks) {
      if (at < c.length) return c.subarray(at, Math.min(c.length, at + max));
      at -= c.length;
    }
    return Buffer.alloc(0);
  }
}

interface Carrier {
  readonly conn: Duplex;
  readonly cap: number;
  readonly lease: Lease;
  written: number;
  /** Next server→client offset to send on this carrier. */
  sendAt: number;
  /** Client→server bytes of this carrier's DATA the session already has. */
  skipUp: number;
  blocked: boolean;
  ended: boolean;
}

interface Session {
  readonly key: string;
  readonly user: string;
  target: Duplex | null;
  readonly down: OffsetBuffer;
  downEnded: boolean;
  upReceived: number;
  upAcked: number;
  upEnded: boolean;
  early: Buffer[];
  earlyBytes: number;
  carrier: Carrier | null;
  readonly detached: NodeJS.Timeout;
  readonly idle: NodeJS.Timeout;
  /** FIN sent: the target is gone, the tail kept for a resume until the client's ACK. */
  finished: boolean;
  closed: boolean;
}

export class CarrierSessions {
  readonly #o: CarrierSessionsOptions;
  readonly #sessions = new Map<string, Session>();
  readonly #perUser = new Map<string, number>();

  constructor(options: CarrierSessionsOptions) {
    this.#o = options;
  }

  /** Sessions open now. */
  get size(): number {
    return this.#sessions.size;
  }

  /**
   * Serves one authenticated carrier connection of `user`; `head` is what followed the Trojan
   * request. The lease counts this carrier's bytes and is closed with it.
   */
  attach(conn: Duplex, user: string, head: Buffer, lease: Lease): void {
    const q = new ByteQueue();
    if (head.length > 0) q.push(head);
    const timer = setTimeout(
      () => conn.destroy(),
      this.#o.openTimeoutMs ?? CARRIER_DEFAULTS.openTimeoutMs,
    );
    timer.unref();
    let done = false;
    const finish = (): void => {
      clearTimeout(timer);
      conn.removeListener('data', onData);
    };
    const tryOpen = (): void => {
      let open;
      try {
        open = q.length > 0 ? decodeCarrierOpen(q.peek(Math.min(q.length, 300)), 0) : null;
      } catch (err) {
        debug('bad open header %s', err instanceof LadderError ? err.message : '');
        done = true;
        finish();
        conn.destroy();
        return;
      }
      if (open === null) {
        if (q.length > 300) {
          done = true;
          finish();
          conn.destroy();
        }
        return;
      }
      done = true;
      finish();
      q.take(open.bytesRead);
      this.#open(conn, user, open.value, q, lease);
    };
    const onData = (chunk: Buffer): void => {
      q.push(chunk);
      if (!done) tryOpen();
    };
    conn.on('data', onData);
    conn.once('end', () => {
      if (!done) conn.destroy();
    });
    conn.once('close', () => {
      clearTimeout(timer);
      lease.close();
    });
    tryOpen();
    conn.resume();
  }

  #open(conn: Duplex, user: string, open: CarrierOpen, q: ByteQueue, lease: Lease): void {
    const key = `${user}\0${Buffer.from(open.sessionId).toString('hex')}`;
    let s = this.#sessions.get(key);
    const reset = (): void => {
      conn.end(carrierFrame(CARRIER_FRAME.RESET));
    };
    if (open.target) {
      if (s) {
        debug('new session with an id in use');
        reset();
        return;
      }
      if (!this.#roomFor(user)) {
        debug('session refused: cap');
        reset();
        return;
      }
      s = this.#create(key, user, open.target);
    } else if (!s) {
      debug('resume of an unknown session');
      reset();
      return;
    }
    const session = s;
    if (open.downOffset < session.down.base || open.downOffset > session.down.end) {
      debug('down offset outside the buffer');
      reset();
      this.#close(session);
      return;
    }
    if (open.upOffset > session.upReceived) {
      debug('up offset beyond what was received');
      reset();
      this.#close(session);
      return;
    }
    if (session.carrier) this.#detach(session, true);
    session.down.dropTo(open.downOffset);
    const c: Carrier = {
      conn,
      cap: open.carrierBytes,
      lease,
      written: 0,
      sendAt: open.downOffset,
      skipUp: session.upReceived - open.upOffset,
      blocked: false,
      ended: false,
    };
    session.carrier = c;
    session.detached.refresh();
    session.idle.refresh();
    this.#ack(session, c);
    conn.on('drain', () => {
      c.blocked = false;
      this.#pump(session);
    });
    conn.on('data', (chunk: Buffer) => {
      q.push(chunk);
      this.#readFrames(session, c, q);
      if (session.finished && session.carrier === null) this.#readAfterFin(session, q);
    });
    // The client never half-closes a carrier (its end of stream is a FIN frame): an end is the
    // carrier going away, and the connection may be half-open (allowHalfOpen) until we close it.
    conn.once('end', () => {
      if (session.carrier === c) this.#detach(session, true);
      else conn.destroy();
    });
    conn.once('close', () => {
      if (session.carrier === c) this.#detach(session, false);
    });
    this.#readFrames(session, c, q);
    this.#pump(session);
  }

  /**
   * Whether a new session of `user` fits under the caps, after closing the oldest finished session
   * (of that user, or any for the server's cap) where one is in the way.
   */
  #roomFor(user: string): boolean {
    const perUser = this.#o.maxSessionsPerUser ?? CARRIER_DEFAULTS.maxSessionsPerUser;
    const all = this.#o.maxSessions ?? CARRIER_DEFAULTS.maxSessions;
    if ((this.#perUser.get(user) ?? 0) >= perUser) {
      const old = [...this.#sessions.values()].find((x) => x.finished && x.user === user);
      if (!old) return false;
      this.#close(old);
    }
    if (this.#sessions.size >= all) {
      const old = [...this.#sessions.values()].find((x) => x.finished);
      if (!old) return false;
      this.#close(old);
    }
    return true;
  }

  /** After FIN: the client's ACK of the whole stream ends the session; anything else is ignored. */
  #readAfterFin(s: Session, q: ByteQueue): void {
    while (q.length > 0 && !s.closed) {
      let f;
      try {
        f = decodeCarrierFrame(
          q.peek(Math.min(q.length, CARRIER_FRAME_HEADER_LENGTH + CARRIER_MAX_PAYLOAD)),
          0,
        );
      } catch {
        return;
      }
      if (f === null) return;
      q.take(f.bytesRead);
      if (f.value.type === CARRIER_FRAME.ACK && carrierAckOffset(f.value) === s.down.end)
        this.#close(s);
    }
  }

  #create(key: string, user: string, target: Target): Session {
    const s: Session = {
      key,
      user,
      target: null,
      down: new OffsetBuffer(),
      downEnded: false,
      upReceived: 0,
      upAcked: 0,
      upEnded: false,
      early: [],
      earlyBytes: 0,
      carrier: null,
      detached: setTimeout(() => {
        if (!s.carrier) {
          debug('session expired without a carrier');
          this.#close(s);
        }
      }, this.#o.detachedTimeoutMs ?? CARRIER_DEFAULTS.detachedTimeoutMs),
      idle: setTimeout(() => {
        debug('session idle');
        this.#fail(s);
      }, this.#o.idleTimeoutMs),
      finished: false,
      closed: false,
    };
    s.detached.unref();
    s.idle.unref();
    this.#sessions.set(key, s);
    this.#perUser.set(user, (this.#perUser.get(user) ?? 0) + 1);
    void this.#dial(s, target);
    return s;
  }

  async #dial(s: Session, target: Target): Promise<void> {
    let t: Duplex;
    try {
      t = await this.#o.dialer.dial(target);
    } catch (err) {
      debug('dial failed %s', err instanceof LadderError ? err.code : 'ERR_DIAL');
      this.#fail(s);
      return;
    }
    if (s.closed) {
      t.destroy();
      return;
    }
    s.target = t;
    for (const b of s.early) t.write(b);
    s.early = [];
    s.earlyBytes = 0;
    s.carrier?.conn.resume();
    if (s.upEnded) t.end();
    t.on('data', (chunk: Buffer) => {
      s.idle.refresh();
      s.down.push(Buffer.from(chunk));
      this.#pump(s);
    });
    t.on('end', () => {
      s.downEnded = true;
      this.#pump(s);
    });
    t.on('error', () => t.destroy());
    t.on('close', () => {
      if (!s.downEnded) this.#fail(s);
    });
    t.on('drain', () => s.carrier?.conn.resume());
  }

  #readFrames(s: Session, c: Carrier, q: ByteQueue): void {
    while (q.length > 0 && s.carrier === c) {
      let f;
      try {
        f = decodeCarrierFrame(
          q.peek(Math.min(q.length, CARRIER_FRAME_HEADER_LENGTH + CARRIER_MAX_PAYLOAD)),
          0,
        );
      } catch (err) {
        debug('bad frame %s', err instanceof LadderError ? err.message : '');
        this.#fail(s);
        return;
      }
      if (f === null) return;
      const { type, payload } = f.value;
      if (type === CARRIER_FRAME.DATA) {
        let data = payload;
        if (c.skipUp > 0) {
          const skip = Math.min(c.skipUp, data.length);
          c.skipUp -= skip;
          data = data.subarray(skip);
        }
        if (data.length > 0 && !s.upEnded) {
          s.idle.refresh();
          s.upReceived += data.length;
          c.lease.up(data.length);
          const copy = Buffer.from(data);
          if (s.target) {
            if (!s.target.write(copy)) c.conn.pause();
          } else {
            s.early.push(copy);
            s.earlyBytes += copy.length;
            if (s.earlyBytes > MAX_EARLY_UP_BYTES) c.conn.pause();
          }
        }
        q.take(f.bytesRead);
        if (s.upReceived - s.upAcked >= ACK_EVERY_BYTES) this.#ack(s, c);
      } else if (type === CARRIER_FRAME.FIN) {
        q.take(f.bytesRead);
        if (c.skipUp === 0 && !s.upEnded) {
          s.upEnded = true;
          s.target?.end();
        }
      } else {
        debug('frame type %d from a client', type);
        this.#fail(s);
        return;
      }
    }
  }

  /**
   * Sends an ACK if it fits with the closing frame still to come; if not, ends the carrier (NEXT):
   * the next one opens with an ACK. Without that, a client waiting for an ACK (its unacknowledged
   * bytes at their cap) and a server with nothing to send would wait for each other.
   */
  #ack(s: Session, c: Carrier): void {
    if (c.ended) return;
    if (c.written + ACK_FRAME_LENGTH + END_FRAME_LENGTH > c.cap) {
      this.#endCarrier(s, c, CARRIER_FRAME.NEXT);
      return;
    }
    c.conn.write(carrierFrame(CARRIER_FRAME.ACK, null, s.upReceived));
    c.written += ACK_FRAME_LENGTH;
    s.upAcked = s.upReceived;
  }

  #pump(s: Session): void {
    const c = s.carrier;
    if (c && !c.ended) {
      while (!c.blocked) {
        const avail = s.down.end - c.sendAt;
        if (avail > 0) {
          const room = c.cap - c.written - END_FRAME_LENGTH - CARRIER_FRAME_HEADER_LENGTH;
          if (room <= 0) {
            this.#endCarrier(s, c, CARRIER_FRAME.NEXT);
            break;
          }
          const data = s.down.read(c.sendAt, Math.min(avail, room, DATA_CHUNK_BYTES));
          const frame = carrierFrame(CARRIER_FRAME.DATA, data);
          c.sendAt += data.length;
          c.written += frame.length;
          c.lease.down(data.length);
          if (!c.conn.write(frame)) c.blocked = true;
          continue;
        }
        if (s.downEnded) {
          this.#endCarrier(s, c, CARRIER_FRAME.FIN);
          this.#finish(s);
        }
        break;
      }
    }
    // Flow control: what is read from the target and not yet on a carrier stays bounded.
    const unsent = s.down.end - (s.carrier && !s.carrier.ended ? s.carrier.sendAt : s.down.base);
    if (unsent >= MAX_UNSENT_BYTES || s.down.length >= MAX_UNSENT_BYTES + (c?.cap ?? 0))
      s.target?.pause();
    else if (!s.downEnded) s.target?.resume();
  }

  #endCarrier(s: Session, c: Carrier, type: CarrierFrameType): void {
    c.ended = true;
    c.conn.end(carrierFrame(type));
    if (s.carrier === c) {
      s.carrier = null;
      s.detached.refresh();
    }
  }

  /** Leaves the session without a carrier; `drop` destroys the old connection (a newer one took over). */
  #detach(s: Session, drop: boolean): void {
    const c = s.carrier;
    s.carrier = null;
    s.detached.refresh();
    if (drop && c) c.conn.destroy();
    s.target?.pause();
  }

  /** FIN sent: the target and the upload are over; the tail stays for a resume (module doc). */
  #finish(s: Session): void {
    if (s.finished) return;
    s.finished = true;
    s.upEnded = true;
    clearTimeout(s.idle);
    s.target?.destroy();
    s.target = null;
  }

  /** The session failed: RESET on its carrier, target destroyed. */
  #fail(s: Session): void {
    const c = s.carrier;
    if (c && !c.ended) {
      c.ended = true;
      c.conn.end(carrierFrame(CARRIER_FRAME.RESET));
    }
    this.#close(s);
  }

  #close(s: Session): void {
    if (s.closed) return;
    s.closed = true;
    clearTimeout(s.detached);
    clearTimeout(s.idle);
    s.carrier = null;
    s.target?.destroy();
    this.#sessions.delete(s.key);
    const n = (this.#perUser.get(s.user) ?? 1) - 1;
    if (n > 0) this.#perUser.set(s.user, n);
    else this.#perUser.delete(s.user);
  }

  /** Closes every session (server shutdown). */
  closeAll(): void {
    for (const s of [...this.#sessions.values()]) this.#fail(s);
  }
}

type CarrierFrameType = (typeof CARRIER_FRAME)[keyof typeof CARRIER_FRAME];
