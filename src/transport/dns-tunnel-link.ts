/**
 * The DNS tunnel's reliable byte stream (codec/dns-tunnel.ts carries its packets): each side keeps
 * what it sent until the peer's cumulative ACK covers it, sends from where it left off, and goes
 * back to the first unacknowledged byte when no ACK has advanced for `rtoMs` (go-back-N: a lost
 * query or answer is only a gap, filled again). Sooner than that, a receiver that holds data past
 * a gap says so (the GAP flag); two such packets without the ACK moving make the sender resend the
 * one segment at the gap (a fast retransmit, once per ACK value). Packets are idempotent by offset, so a resolver
 * that sends a query twice, or answers out of order, does no harm; segments that arrive early wait
 * (bounded) until the gap before them fills. FIN takes one offset, as in TCP, so that its ACK says
 * the peer has it.
 *
 * {@link TunnelLink} is the state alone (time is an argument); {@link TunnelStream} is the Duplex
 * over it that the rest of Ladder reads and writes. The client and the server drive them
 * (dns-tunnel-client.ts, dns-tunnel-server.ts): the client decides when a query leaves, the server
 * answers the queries it is given.
 * @module
 */
import { Duplex } from 'node:stream';
import { TUNNEL_FLAG, type TunnelPacket } from '../codec/dns-tunnel.js';
import { systemTimers, type Timers } from '../core/clock.js';

const U32 = 2 ** 32;

/** The timer seam (core/clock.ts). */
export type TunnelTimers = Timers;
export const systemTunnelTimers: TunnelTimers = systemTimers;

/** `v32` (an offset modulo 2^32 from the wire) as the full offset nearest to `ref`. */
export function unwrapOffset(v32: number, ref: number): number {
  let d = (v32 - (ref % U32) + U32) % U32;
  if (d >= U32 / 2) d -= U32;
  return ref + d;
}

export interface TunnelLinkOptions {
  /** Go back to the first unacknowledged byte after this long without an ACK advancing. */
  rtoMs: number;
  /** Out-of-order bytes held while a gap before them fills (beyond: dropped, sent again later). */
  reorderBytes: number;
  /** Out-of-order segments held (so that many tiny ones cannot cost a map entry per byte). */
  reorderSegments: number;
}

/**
 * About a window of queries is in flight (16 by default), so about 16 answers (~15 KB) or 16
 * queries (~2 KB) can arrive past a gap: 32 KiB of reordering is room to spare, and bounds what an
 * unauthenticated sender can make a server session hold.
 */
export const DEFAULT_LINK_OPTIONS: TunnelLinkOptions = {
  rtoMs: 1000,
  reorderBytes: 32 * 1024,
  reorderSegments: 64,
};

/** What one received packet did. */
export interface LinkReceipt {
  /** In-order bytes to deliver, in order. */
  readonly data: Buffer[];
  /** The peer's FIN was reached now (every byte before it delivered). */
  readonly ended: boolean;
  /** The peer's ACK advanced. */
  readonly acked: boolean;
}

export class TunnelLink {
  readonly session: number;
  readonly #o: TunnelLinkOptions;
  // Sending: bytes from #acked on are kept; #sendNext is the next offset to send.
  readonly #chunks: Buffer[] = [];
  #buffered = 0;
  #acked = 0;
  #sendNext = 0;
  #finQueued = false;
  #finSent = false;
  #finAcked = false;
  /** A FIN has left at least once (the end offset is final). */
  #finEverSent = false;
  /** The highest offset ever sent. */
  #sentMax = 0;
  /** When the oldest unacknowledged send started waiting (or the ACK last advanced). */
  #rtoStart = 0;
  // Receiving.
  #recvNext = 0;
  #peerFinAt = -1;
  #peerEnded = false;
  readonly #early = new Map<number, Buffer>();
  #earlyBytes = 0;
  /** Packets flagged GAP since the ACK last moved. */
  #gaps = 0;
  /** A fast retransmit from the first unacknowledged byte is due (-1: none). */
  #resendAt = -1;
  /** This ACK value has had its fast retransmit. */
  #fastDoneAt = -1;
  /** The ACK last sent; more to acknowledge when it is behind. */
  #ackSent = 0;

  constructor(session: number, options: TunnelLinkOptions = DEFAULT_LINK_OPTIONS) {
    this.session = session >>> 0;
    this.#o = options;
  }

  /** Bytes written and not yet acknowledged. */
  get buffered(): number {
    return this.#buffered;
  }

  /** The peer's stream has ended (its FIN reached). */
  get peerEnded(): boolean {
    return this.#peerEnded;
  }

  /** Our FIN is acknowledged: the peer has every byte. */
  get finAcked(): boolean {
    return this.#finAcked;
  }

  /** Both directions are finished and our last ACK has left. */
  get done(): boolean {
    return this.#finAcked && this.#peerEnded && this.#ackSent === this.#ackValue();
  }

  /** Whether a packet now would carry something: new data, a FIN, an ACK owed, or a resend due. */
  wantsToSend(now: number): boolean {
    return (
      this.#sendNext < this.#acked + this.#buffered ||
      (this.#finQueued && !this.#finSent && !this.#finAcked) ||
      this.#ackSent !== this.#ackValue() ||
      this.#resendAt >= 0 ||
      this.#resendDue(now)
    );
  }

  /** Appends bytes to send. */
  write(chunk: Buffer): void {
    if (this.#finQueued) throw new Error('DNS tunnel: write after end');
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
  }

  /** No more bytes: a FIN follows the last one. */
  end(): void {
    this.#finQueued = true;
  }

  #ackValue(): number {
    return this.#recvNext + (this.#peerEnded ? 1 : 0);
  }

  #outstanding(): boolean {
    return this.#sendNext > this.#acked || (this.#finSent && !this.#finAcked);
  }

  #resendDue(now: number): boolean {
    return this.#outstanding() && now - this.#rtoStart >= this.#o.rtoMs;
  }

  /** The next packet to send, with at most `maxData` bytes (it may carry only an ACK). */
  next(maxData: number, now: number): TunnelPacket {
    if (this.#resendDue(now)) {
      this.#sendNext = this.#acked;
      this.#finSent = false;
      this.#rtoStart = now;
    }
    if (!this.#outstanding()) this.#rtoStart = now;
    const gap = this.#early.size > 0 ? TUNNEL_FLAG.GAP : 0;
    if (this.#resendAt >= 0) {
      // A fast retransmit: the segment at the gap alone; sending goes on where it was after.
      const from = this.#resendAt;
      this.#resendAt = -1;
      if (from === this.#acked && this.#sendNext > from) {
        const n = Math.min(maxData, this.#sendNext - from);
        const ack = this.#ackValue();
        this.#ackSent = ack;
        const data = this.#slice(0, n);
        return { session: this.session, flags: gap, seq: from % U32, ack: ack % U32, data };
      }
    }
    const seq = this.#sendNext;
    const end = this.#acked + this.#buffered;
    const n = Math.max(0, Math.min(maxData, end - seq));
    const data = this.#slice(seq - this.#acked, n);
    this.#sendNext += n;
    if (this.#sendNext > this.#sentMax) this.#sentMax = this.#sendNext;
    let flags = gap;
    if (this.#finQueued && !this.#finAcked && this.#sendNext === end) {
      flags |= TUNNEL_FLAG.FIN;
      this.#finSent = true;
      this.#finEverSent = true;
    }
    const ack = this.#ackValue();
    this.#ackSent = ack;
    return { session: this.session, flags, seq: seq % U32, ack: ack % U32, data };
  }

  /** A copy of `n` kept bytes from `from` (relative to the first kept byte). */
  #slice(from: number, n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const parts: Buffer[] = [];
    let skip = from;
    let need = n;
    for (const c of this.#chunks) {
      if (skip >= c.length) {
        skip -= c.length;
        continue;
      }
      const part = c.subarray(skip, skip + need);
      parts.push(part);
      need -= part.length;
      skip = 0;
      if (need === 0) break;
    }
    return Buffer.concat(parts, n);
  }

  /** Drops the bytes the peer acknowledged. */
  #release(upTo: number): void {
    let drop = upTo - this.#acked;
    this.#acked = upTo;
    this.#buffered -= drop;
    while (drop > 0) {
      const c = this.#chunks[0]!;
      if (c.length <= drop) {
        this.#chunks.shift();
        drop -= c.length;
      } else {
        this.#chunks[0] = c.subarray(drop);
        drop = 0;
      }
    }
  }

  /**
   * Takes a packet from the peer. `accept` false: the reader is full, so data is dropped (the
   * peer sends it again) while the ACK in the packet still counts.
   */
  receive(p: TunnelPacket, now: number, accept = true): LinkReceipt {
    const acked = this.#takeAck(p.ack, now);
    if (acked) this.#gaps = 0;
    else if ((p.flags & TUNNEL_FLAG.GAP) !== 0 && this.#sendNext > this.#acked) {
      // Two reports of a gap at the same ACK: resend the segment there, once for this ACK.
      if (++this.#gaps >= 2 && this.#fastDoneAt !== this.#acked) {
        this.#fastDoneAt = this.#acked;
        this.#resendAt = this.#acked;
      }
    }
    const out: Buffer[] = [];
    if (this.#peerEnded || !accept) return { data: out, ended: false, acked };
    const seq = unwrapOffset(p.seq, this.#recvNext);
    const fin = (p.flags & TUNNEL_FLAG.FIN) !== 0;
    if (fin && this.#peerFinAt < 0) this.#peerFinAt = seq + p.data.length;
    const limit = this.#peerFinAt >= 0 ? this.#peerFinAt : Infinity;
    let data = Buffer.from(p.data.buffer, p.data.byteOffset, p.data.length);
    let at = seq;
    // Bytes past the FIN the peer announced cannot be right: drop them.
    if (at + data.length > limit) data = data.subarray(0, Math.max(0, limit - at));
    if (at < this.#recvNext) {
      data = data.subarray(Math.min(data.length, this.#recvNext - at));
      at = this.#recvNext;
    }
    if (data.length > 0) {
      if (at === this.#recvNext) {
        // A copy: the packet's memory is the caller's.
        out.push(Buffer.from(data));
        this.#recvNext += data.length;
        this.#drainEarly(out);
      } else this.#keepEarly(at, data);
    }
    let ended = false;
    if (this.#peerFinAt >= 0 && this.#recvNext === this.#peerFinAt) {
      this.#peerEnded = true;
      ended = true;
      this.#early.clear();
      this.#earlyBytes = 0;
    }
    return { data: out, ended, acked };
  }

  #takeAck(ack32: number, now: number): boolean {
    if (this.#finAcked) return false;
    const ack = unwrapOffset(ack32, this.#acked);
    const end = this.#acked + this.#buffered;
    // An ACK beyond what was ever sent (FIN included) is not from this session's peer.
    const max = this.#finEverSent ? end + 1 : this.#sentMax;
    if (ack <= this.#acked || ack > max) return false;
    this.#release(Math.min(ack, end));
    if (ack === end + 1) this.#finAcked = true;
    if (this.#sendNext < this.#acked) this.#sendNext = this.#acked;
    this.#rtoStart = now;
    return true;
  }

  #keepEarly(at: number, data: Buffer): void {
    if (this.#early.has(at)) return;
    if (at - this.#recvNext + data.length > this.#o.reorderBytes) return;
    if (this.#early.size >= this.#o.reorderSegments) return;
    if (this.#earlyBytes + data.length > this.#o.reorderBytes) return;
    this.#early.set(at, Buffer.from(data));
    this.#earlyBytes += data.length;
  }

  #drainEarly(out: Buffer[]): void {
    for (let progress = true; progress && this.#early.size > 0;) {
      progress = false;
      for (const [at, data] of this.#early) {
        if (at > this.#recvNext) continue;
        this.#early.delete(at);
        this.#earlyBytes -= data.length;
        const rest = data.subarray(Math.min(data.length, this.#recvNext - at));
        if (rest.length > 0) {
          out.push(rest);
          this.#recvNext += rest.length;
        }
        progress = true;
      }
    }
  }
}

/** What a {@link TunnelStream} tells the side that drives it. */
export interface TunnelDriver {
  /** The link may have something to send (new data, a FIN, room to read again). */
  kick(): void;
  /** The stream is destroyed: stop, release everything. */
  destroyed(err: Error | null): void;
}

/**
 * The Duplex over a {@link TunnelLink}: writes wait while `maxBuffered` bytes are unacknowledged;
 * reads stop taking data (the peer resends it) while the reader is full.
 */
export class TunnelStream extends Duplex {
  readonly link: TunnelLink;
  readonly #maxBuffered: number;
  #driver: TunnelDriver | null = null;
  #pendingWrite: (() => void) | null = null;
  #readerFull = false;

  constructor(link: TunnelLink, maxBuffered: number) {
    super({ allowHalfOpen: true, highWaterMark: 16 * 1024 });
    this.link = link;
    this.#maxBuffered = maxBuffered;
  }

  attach(driver: TunnelDriver): void {
    this.#driver = driver;
  }

  /** Whether the reader takes data now. */
  get accepting(): boolean {
    return !this.#readerFull && !this.destroyed;
  }

  /** Hands over what a received packet delivered, and lets a waiting write go on once acked. */
  deliver(r: LinkReceipt): void {
    for (const d of r.data) if (!this.push(d)) this.#readerFull = true;
    if (r.ended) this.push(null);
    if (r.acked) this.#maybeReleaseWrite();
  }

  #maybeReleaseWrite(): void {
    if (this.#pendingWrite && this.link.buffered < this.#maxBuffered) {
      const cb = this.#pendingWrite;
      this.#pendingWrite = null;
      cb();
    }
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.link.write(chunk);
    this.#driver?.kick();
    if (this.link.buffered < this.#maxBuffered) cb();
    else this.#pendingWrite = () => cb();
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.link.end();
    this.#driver?.kick();
    cb();
  }

  override _read(): void {
    if (!this.#readerFull) return;
    this.#readerFull = false;
    this.#driver?.kick();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.#pendingWrite = null;
    this.#driver?.destroyed(err);
    cb(err);
  }
}
