/**
 * Mux.Cool sessions over one connection (src/codec/mux-cool.ts has the frame format): the server
 * side, as v2ray-core's `ServerWorker` behaves, and the client side for one or more sessions.
 *
 * Each session is a Duplex. Its data is handed on as views of what the connection delivered (only
 * headers are gathered across reads); what a session writes leaves as Keep frames (New for a
 * client's first). Mux.Cool has no half-close: End closes a session both ways, as in v2ray, where
 * the side that receives End drops the session (and answers End). So an End received ends the
 * session's readable side and destroys the session once that end has been read, which answers End;
 * ending a session's writable side sends End. So an application that half-closes loses what is
 * still to come, as with v2ray-plugin and ss-local (which closes both ways on the first end). A
 * session destroyed with an error sends End with the error option.
 *
 * Backpressure: a session whose reader is full pauses the whole connection (the sessions share it,
 * as v2ray's pipes do); a write waits for the connection's 'drain' when its buffer is full.
 * Hostile input (a malformed frame, a second New for a live session) destroys the connection and
 * every session on it with ERR_MUX_COOL. A connection with no session for `idleTimeoutMs` is closed.
 *
 * Padding (on unless `padding: false`): each session's first {@link MUX_PADDED_FRAMES} frames leave
 * with a KeepAlive frame of random data in the same write, which the peer discards (v2ray does; so
 * do we, whatever session the KeepAlive names): the sizes of an inner TLS handshake's records do
 * not show through the outer ones (docs/websocket.md "Mux.Cool padding").
 * @module
 */
import { randomFillSync, randomInt } from 'node:crypto';
import { Duplex } from 'node:stream';
import { debuglog } from 'node:util';
import {
  MUX_MAX_DATA,
  MUX_MAX_METADATA,
  MUX_NETWORK,
  MUX_OPTION,
  MUX_STATUS,
  decodeMuxHeader,
  encodeMuxHeader,
  muxHeaderLength,
  muxPaddingHeader,
  muxPaddingLength,
  type MuxFrameHeader,
  type MuxNetwork,
} from '../codec/mux-cool.js';
import { ByteQueue } from '../codec/ss-stream.js';
import { KEEPS, keepsWrites } from './recycled-reads.js';
import { LadderError } from '../errors.js';
import type { Target } from '../core/target.js';

const debug = debuglog('ladder:mux');

/**
 * Data bytes per frame we send: as many as a frame holds. (v2ray itself sends 8 KiB; its reader
 * takes any u16 length.) Fewer, larger frames mean fewer WebSocket frames and TLS writes.
 */
const SEND_DATA_MAX = MUX_MAX_DATA;

export interface MuxCoolOptions {
  /** 'server' takes New frames from the peer; 'client' opens sessions with {@link MuxCool.open}. */
  role: 'server' | 'client';
  /** Server: a new session and where the client asked it to go. */
  onSession?(session: MuxSession, target: Target, network: MuxNetwork): void;
  /** Bytes already read from the connection. */
  head?: Buffer;
  /** Sessions at once; a New beyond this is refused with End (default 256). */
  maxSessions?: number;
  /** Close the connection when it has had no session for this long (default 60 s). */
  idleTimeoutMs?: number;
  /**
   * Reuse frame buffers once the connection's write callback says it is done with them. Only for a
   * connection whose write callback means that (a TCP or TLS socket), not a WebSocketStream, which
   * may call back while its socket still holds the bytes. Without it, frame buffers are still
   * reused on a connection that tells whether it references a write (core/lent-read.ts KEEPS: a
   * WebSocketStream does), whenever it says it does not.
   */
  reuseFrames?: boolean;
  /**
   * Follow each session's first {@link MUX_PADDED_FRAMES} frames with a KeepAlive frame of random
   * padding in the same write (codec/mux-cool.ts `muxPaddingLength`), so that the first records of
   * a session (an inner TLS handshake) do not show their sizes. Default true; v2ray's client and
   * server discard KeepAlive data.
   */
  padding?: boolean;
}

/**
 * Frames of each session, each direction, that carry padding: an inner TLS 1.3 handshake and the
 * first request take up to three client writes (ClientHello; Finished; request) and the server's
 * flight, tickets and first data as many; one more for slack.
 */
export const MUX_PADDED_FRAMES = 4;

/** Data bytes of one write of a session: the frames of up to this many go out in one buffer. */
const WRITE_DATA_MAX = 2 * SEND_DATA_MAX;
/** The largest header: u16 L, 512 bytes of metadata, u16 X. */
const HEADER_MAX = 2 + MUX_MAX_METADATA + 2;
/**
 * Reused frame buffers: one frame of data and two headers, which holds the frames of one socket
 * read (recycled-reads.ts READ_SIZE). A larger write gets a buffer of its own.
 */
const FRAME_BUFFER_SIZE = 2 * HEADER_MAX + SEND_DATA_MAX;
/**
 * Frame buffers kept for reuse, by all connections together. The pool holds what is in flight at
 * once (one buffer per session with a write under way), so that bulk transfers reuse their buffers
 * rather than leave one to the garbage collector per write: V8 frees external memory late, and the
 * dead buffers of 200 busy sessions reached tens of MiB. Buffers the pool did not need for
 * {@link FRAME_POOL_TRIM_MS} are let go, down to {@link FRAME_POOL_KEEP}: a pool per connection
 * kept them until the connection closed, megabytes on idle mux connections.
 */
export const FRAME_POOL_MAX = 256;
/** Buffers kept however long the pool has been idle. */
export const FRAME_POOL_KEEP = 16;
/** How often buffers the pool did not need are let go. */
export const FRAME_POOL_TRIM_MS = 10_000;
const framePool: Buffer[] = [];
/** The fewest buffers the pool held since the last trim: as many were not needed. */
let framePoolLow = 0;
let framePoolTrim: NodeJS.Timeout | null = null;

function takeFrameBuffer(): Buffer {
  const b = framePool.pop() ?? Buffer.allocUnsafeSlow(FRAME_BUFFER_SIZE);
  if (framePool.length < framePoolLow) framePoolLow = framePool.length;
  return b;
}

function returnFrameBuffer(b: Buffer): void {
  if (framePool.length >= FRAME_POOL_MAX) return;
  framePool.push(b);
  if (framePool.length > FRAME_POOL_KEEP && framePoolTrim === null) {
    framePoolLow = framePool.length;
    framePoolTrim = setInterval(trimFramePool, FRAME_POOL_TRIM_MS);
    framePoolTrim.unref();
  }
}

function trimFramePool(): void {
  const drop = Math.min(framePoolLow, framePool.length - FRAME_POOL_KEEP);
  if (drop > 0) framePool.length -= drop;
  framePoolLow = framePool.length;
  if (framePool.length <= FRAME_POOL_KEEP && framePoolTrim !== null) {
    clearInterval(framePoolTrim);
    framePoolTrim = null;
  }
}

/** Buffers kept for reuse now; for tests. */
export function pooledFrameBuffers(): number {
  return framePool.length;
}

type Conn = Duplex & { writableLength: number };

/** Whether `conn` tells exactly whether it still references a write (core/lent-read.ts KEEPS). */
function answersKeeps(conn: Conn): boolean {
  return typeof (conn as { [KEEPS]?: unknown })[KEEPS] === 'function';
}

/** One Mux.Cool connection and its sessions. */
export class MuxCool {
  readonly conn: Conn;
  readonly #o: MuxCoolOptions;
  readonly #sessions = new Map<number, MuxSession>();
  readonly #q = new ByteQueue();
  /** The frame whose data is arriving: its session (null: discard) and bytes left. */
  #dataLeft = 0;
  #dataTo: MuxSession | null = null;
  readonly #fullReaders = new Set<MuxSession>();
  readonly #waitingWriters = new Set<() => void>();
  #nextId = 1;
  #idle: NodeJS.Timeout | null = null;
  #dead = false;

  constructor(conn: Duplex, options: MuxCoolOptions) {
    this.conn = conn as Conn;
    this.#o = options;
    conn.on('data', this.#onData);
    conn.on('end', this.#onEnd);
    conn.on('drain', this.#onDrain);
    conn.on('error', this.#onError);
    conn.on('close', this.#onClose);
    this.#armIdle();
    if (options.head && options.head.length > 0) this.#onData(options.head);
  }

  get sessions(): number {
    return this.#sessions.size;
  }

  get role(): 'server' | 'client' {
    return this.#o.role;
  }

  /** Whether sessions pad their first frames (MuxCoolOptions.padding). */
  get padding(): boolean {
    return this.#o.padding !== false;
  }

  /** Client: opens a session to `target` (the New frame leaves with its first data). */
  open(target: Target, network: MuxNetwork = MUX_NETWORK.TCP): MuxSession {
    if (this.#dead) throw new LadderError('ERR_MUX_COOL', 'Mux.Cool connection closed');
    let id = this.#nextId;
    while (this.#sessions.has(id) || id === 0) id = (id + 1) & 0xffff;
    this.#nextId = (id + 1) & 0xffff;
    const s = new MuxSession(this, id, { target, network });
    this.#add(s);
    return s;
  }

  #add(s: MuxSession): void {
    this.#sessions.set(s.id, s);
    if (this.#idle) clearTimeout(this.#idle);
    this.#idle = null;
  }

  /** @internal A session is gone. */
  remove(s: MuxSession): void {
    if (this.#sessions.get(s.id) === s) this.#sessions.delete(s.id);
    this.#fullReaders.delete(s);
    if (this.#fullReaders.size === 0 && this.conn.isPaused()) this.conn.resume();
    if (this.#sessions.size === 0) {
      if (this.conn.readableEnded) this.conn.end();
      else this.#armIdle();
    }
  }

  #armIdle(): void {
    if (this.#idle || this.#dead) return;
    this.#idle = setTimeout(() => {
      this.#idle = null;
      if (this.#sessions.size > 0) return;
      // Ended politely (a WebSocket sends Close); gone for good if the peer does not answer.
      this.conn.end();
      setTimeout(() => this.conn.destroy(), 5_000).unref();
    }, this.#o.idleTimeoutMs ?? 60_000);
    this.#idle.unref();
  }

  // ------------------------------------------------------------------------------ reading

  #onData = (chunk: Buffer): void => {
    this.#q.push(chunk);
    try {
      this.#drain();
    } catch (err) {
      this.#fail(err instanceof LadderError ? err : new LadderError('ERR_MUX_COOL', String(err)));
    }
  };

  /**
   * Data for one session that arrives in one read across a frame boundary (the tail of one frame,
   * a header, the head of the next) is handed on as one piece: one write of the receiver instead
   * of two. Pieces are collected until another session's frame or a frame that changes the
   * session's state comes, or the read is used up.
   */
  #pending: MuxSession | null = null;
  #pieces: Buffer[] = [];
  #pieceBytes = 0;

  #flush(): void {
    const to = this.#pending;
    const pieces = this.#pieces;
    const out =
      to === null
        ? null
        : pieces.length === 1
          ? pieces[0]!
          : Buffer.concat(pieces, this.#pieceBytes);
    this.#pending = null;
    pieces.length = 0;
    this.#pieceBytes = 0;
    if (to && out && !to.destroyed && !to.readableEnded) to.deliver(out);
  }

  #drain(): void {
    const q = this.#q;
    try {
      while (q.length > 0 && !this.#dead) {
        if (this.#dataLeft > 0) {
          const piece = q.takeFront(this.#dataLeft);
          this.#dataLeft -= piece.length;
          const to = this.#dataTo;
          if (to !== this.#pending) this.#flush();
          if (to) {
            this.#pending = to;
            this.#pieces.push(piece);
            this.#pieceBytes += piece.length;
          }
          continue;
        }
        if (q.length < 2) return;
        const lenBytes = q.peek(2);
        const metaLen = (lenBytes[0]! << 8) | lenBytes[1]!;
        if (metaLen > MUX_MAX_METADATA)
          throw new LadderError('ERR_MUX_COOL', `metadata of ${metaLen} bytes (at most 512)`);
        const need = Math.min(q.length, 2 + metaLen + 2);
        const d = decodeMuxHeader(q.peek(need), 0);
        if (d === null) return;
        q.take(d.bytesRead);
        const h = d.value;
        if (!(h.status === MUX_STATUS.KEEP && this.#pending?.id === h.sessionId)) this.#flush();
        this.#frame(h);
      }
    } finally {
      this.#flush(); // a dead connection's sessions are destroyed: nothing is delivered to them
    }
  }

  #frame(h: MuxFrameHeader): void {
    let s = this.#sessions.get(h.sessionId) ?? null;
    switch (h.status) {
      case MUX_STATUS.NEW:
        if (this.#o.role !== 'server')
          throw new LadderError('ERR_MUX_COOL', 'a server may not open sessions (New)');
        if (s) throw new LadderError('ERR_MUX_COOL', `a second New for session ${h.sessionId}`);
        if (
          h.network !== MUX_NETWORK.TCP ||
          this.#sessions.size >= (this.#o.maxSessions ?? 256) ||
          !this.#o.onSession
        ) {
          // UDP sessions are not served here (v2ray-plugin carries TCP only): refused with End.
          this.#sendEnd(h.sessionId, true);
          s = null;
        } else {
          s = new MuxSession(this, h.sessionId, null);
          this.#add(s);
          this.#o.onSession(s, h.target!, h.network);
        }
        break;
      case MUX_STATUS.KEEP:
        if (!s && h.dataLength !== undefined) this.#sendEnd(h.sessionId, false); // as v2ray: tell the peer
        break;
      case MUX_STATUS.END:
        if (s) {
          if (h.option & MUX_OPTION.ERROR)
            s.destroy(new LadderError('ERR_MUX_COOL', 'the peer ended the session in error'));
          else s.peerEnded();
        }
        s = null;
        break;
      case MUX_STATUS.KEEP_ALIVE:
        s = null;
        break;
    }
    this.#dataLeft = h.dataLength ?? 0;
    this.#dataTo = s;
  }

  /** @internal A session's reader is full / has room again. */
  readerFull(s: MuxSession, full: boolean): void {
    if (full) {
      this.#fullReaders.add(s);
      if (!this.conn.isPaused()) this.conn.pause();
    } else {
      this.#fullReaders.delete(s);
      if (this.#fullReaders.size === 0 && this.conn.isPaused()) this.conn.resume();
    }
  }

  #onEnd = (): void => {
    for (const s of [...this.#sessions.values()]) s.peerEnded();
    if (this.#sessions.size === 0) this.conn.end();
  };

  #onDrain = (): void => {
    const waiting = [...this.#waitingWriters];
    this.#waitingWriters.clear();
    for (const w of waiting) w();
  };

  #onError = (err: Error): void => {
    debug('connection error %s', err.message);
    this.#teardown(err);
  };

  #onClose = (): void => {
    this.#teardown(null);
  };

  #fail(err: LadderError): void {
    debug('protocol error: %s', err.message);
    this.#teardown(err);
    this.conn.destroy();
  }

  #teardown(err: Error | null): void {
    if (this.#dead) return;
    this.#dead = true;
    if (this.#idle) clearTimeout(this.#idle);
    for (const s of [...this.#sessions.values()])
      s.destroy(err ?? new LadderError('ERR_MUX_COOL', 'the Mux.Cool connection closed'));
    this.#sessions.clear();
    this.#onDrain();
  }

  // ------------------------------------------------------------------------------ writing

  /** @internal Sends a frame; `done` runs when the connection can take more. */
  send(h: MuxFrameHeader, data: Buffer | null, done: () => void): void {
    this.sendFrames([h], data, 0, done);
  }

  /**
   * @internal Sends frames in one write: `headers[i]` is followed by the next `dataLength` bytes
   * of `data` from `at` on; with `pad` (and padding on), a KeepAlive frame of random padding follows
   * them (codec/mux-cool.ts `muxPaddingLength`). One buffer per write, so that a WebSocket below
   * sends it as one message and a TLS socket one write (a 64 KiB read is two frames; a write per
   * frame doubles the sender's syscalls and the receiver's pieces). The copy also means the
   * caller's memory is free again as soon as this returns. Bulk data would otherwise land in a fresh
   * buffer per frame, which V8 frees late: pages to fault in and garbage to collect
   * (docs/benchmarks.md, "Design measurements").
   */
  sendFrames(
    headers: readonly MuxFrameHeader[],
    data: Buffer | null,
    at: number,
    done: () => void,
    pad = false,
  ): void {
    if (this.#dead || this.conn.destroyed || !this.conn.writable) {
      done();
      return;
    }
    let n = 0;
    for (const h of headers) n += muxHeaderLength(h) + (h.dataLength ?? 0);
    const flight = n;
    const padding =
      pad && this.#o.padding !== false
        ? muxPaddingHeader(headers[0]!.sessionId, muxPaddingLength(flight, randomInt))
        : null;
    if (padding) n += muxHeaderLength(padding) + padding.dataLength!;
    const exact = this.#o.reuseFrames === true;
    const pooled = (exact || answersKeeps(this.conn)) && n > 1024 && n <= FRAME_BUFFER_SIZE;
    const buf = pooled ? takeFrameBuffer() : null;
    const out = buf ? buf.subarray(0, n) : Buffer.allocUnsafe(n);
    let p = 0;
    for (const h of headers) {
      p += encodeMuxHeader(h, out, p);
      const len = h.dataLength ?? 0;
      if (len > 0) {
        data!.copy(out, p, at, at + len);
        at += len;
        p += len;
      }
    }
    if (padding) {
      p += encodeMuxHeader(padding, out, p);
      randomFillSync(out, p, n - p);
      debug('padded a frame of %d bytes to %d', flight, n);
    }
    // A frame buffer goes back to the pool when its write's callback comes, if that callback means
    // the connection is done with it (reuseFrames) or the connection then says it keeps no write;
    // one it may still reference is left to the garbage collector.
    const ok = buf
      ? this.conn.write(out, () => {
          if (exact || !keepsWrites(this.conn)) returnFrameBuffer(buf);
        })
      : this.conn.write(out);
    if (ok) done();
    else this.#waitingWriters.add(done);
  }

  #sendEnd(id: number, error: boolean): void {
    this.send(
      { sessionId: id, status: MUX_STATUS.END, option: error ? MUX_OPTION.ERROR : 0 },
      null,
      noop,
    );
  }
}

/** One Mux.Cool session: a Duplex over its frames. */
export class MuxSession extends Duplex {
  readonly id: number;
  readonly #mux: MuxCool;
  /** Client: the New frame not sent yet. */
  #opening: { target: Target; network: MuxNetwork } | null;
  #endSent = false;
  #peerGone = false;
  /** Frames sent; the first MUX_PADDED_FRAMES are padded. */
  #framesSent = 0;
  /** Bytes of the chunk being written once all of it is copied into frames ({@link KEEPS}). */
  #copiedInFlight = 0;
  #readFull = false;
  /** Session data received and sent (a failover dialer tells a silent close by them). */
  bytesRead = 0;
  bytesWritten = 0;

  constructor(mux: MuxCool, id: number, opening: { target: Target; network: MuxNetwork } | null) {
    super({ allowHalfOpen: true, highWaterMark: 16 * 1024 });
    this.id = id;
    this.#mux = mux;
    this.#opening = opening;
  }

  get remoteAddress(): string | undefined {
    return (this.#mux.conn as { remoteAddress?: string }).remoteAddress;
  }
  setNoDelay(): this {
    return this;
  }

  /** @internal Data of a frame for this session. */
  deliver(piece: Buffer): void {
    this.bytesRead += piece.length;
    if (!this.push(piece) && !this.#readFull) {
      this.#readFull = true;
      this.#mux.readerFull(this, true);
    }
  }

  /**
   * @internal End from the peer (or the connection ended): no more data either way. The session
   * is destroyed once its reader has seen the end, which answers with End as v2ray's server does.
   */
  peerEnded(): void {
    this.#peerGone = true;
    if (this.readableEnded) {
      this.destroy();
      return;
    }
    this.once('end', () => this.destroy());
    this.push(null);
  }

  override _read(): void {
    if (this.#readFull) {
      this.#readFull = false;
      this.#mux.readerFull(this, false);
    }
  }

  #header(dataLength: number | null): MuxFrameHeader {
    const data = dataLength === null ? { option: 0 } : { option: MUX_OPTION.DATA, dataLength };
    const o = this.#opening;
    if (o) {
      this.#opening = null;
      return {
        sessionId: this.id,
        status: MUX_STATUS.NEW,
        network: o.network,
        target: o.target,
        ...data,
      };
    }
    return { sessionId: this.id, status: MUX_STATUS.KEEP, ...data };
  }

  /**
   * Client: sends the New frame now, without data, if it has not left yet. For protocols where the
   * server speaks first: v2ray's client does this when no data came within 100 ms
   * (common/mux/client.go `writeFirstPayload`).
   */
  announce(): void {
    if (!this.#opening || this.#endSent || this.#peerGone || this.destroyed) return;
    this.#send(this.#header(null), null, noop);
  }

  /** A New or Keep frame of this session, padded while it is among the first few. */
  #send(h: MuxFrameHeader, data: Buffer | null, done: () => void): void {
    this.#mux.sendFrames([h], data, 0, done, this.#framesSent++ < MUX_PADDED_FRAMES);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.#endSent || this.#peerGone) {
      cb(new LadderError('ERR_MUX_COOL', 'the session has ended'));
      return;
    }
    let at = 0;
    // Frames of equal size: a 64 KiB read is two frames of 32 KiB, not one of 65,535 bytes and one
    // of a single byte, which would double the peer's writes.
    const size = Math.ceil(chunk.length / Math.ceil(chunk.length / SEND_DATA_MAX));
    // Every frame is a copy: once the last one is made, only the connection's drain is awaited.
    const next = (): void => {
      if (at >= chunk.length) {
        this.#copiedInFlight = 0;
        cb();
        return;
      }
      if (this.#framesSent < MUX_PADDED_FRAMES && this.#mux.padding) {
        // a session's first frames: one at a time, each with its padding
        const piece = chunk.subarray(at, at + size);
        at += piece.length;
        this.bytesWritten += piece.length;
        if (at >= chunk.length) this.#copiedInFlight = chunk.length;
        this.#send(this.#header(piece.length), piece, next);
        return;
      }
      const end = Math.min(chunk.length, at + Math.floor(WRITE_DATA_MAX / size) * size);
      const headers: MuxFrameHeader[] = [];
      for (let p = at; p < end; p += size) headers.push(this.#header(Math.min(size, end - p)));
      const from = at;
      this.bytesWritten += end - at;
      at = end;
      if (at >= chunk.length) this.#copiedInFlight = chunk.length;
      this.#mux.sendFrames(headers, chunk, from, next);
    };
    next();
  }

  /** Whether a chunk written to this session is still referenced (recycled-reads.ts keepsWrites). */
  [KEEPS](): boolean {
    return this.writableLength > this.#copiedInFlight;
  }

  override _final(cb: (err?: Error | null) => void): void {
    // Our side is done: End, as v2ray sends it (its client when the application's side ends, its
    // server when the target's does). The peer drops the session and answers End.
    this.#sendEnd(false);
    cb();
  }

  #sendEnd(error: boolean): void {
    if (this.#endSent) return;
    this.#endSent = true;
    if (this.#opening) return; // never opened on the wire: nothing to end
    this.#mux.send(
      { sessionId: this.id, status: MUX_STATUS.END, option: error ? MUX_OPTION.ERROR : 0 },
      null,
      noop,
    );
  }

  override _destroy(err: Error | null, cb: (err: Error | null) => void): void {
    this.#sendEnd(err !== null);
    this.#mux.remove(this);
    cb(err);
  }
}

function noop(): void {}
