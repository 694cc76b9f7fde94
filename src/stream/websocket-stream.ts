/**
 * A byte stream carried in WebSocket binary messages (RFC 6455 §5), over a socket whose opening
 * handshake is done: what is written goes out as binary frames; the payload of every data frame that
 * arrives can be read, in order, whatever the message boundaries (v2ray's WebSocket transport and
 * v2ray-plugin use messages the same way, as pieces of one stream).
 *
 * - Payload is handed on as views of what the socket delivered, unmasked in place: no copies and no
 *   per-message buffering, whatever the frame size. Only frame headers (≤ 14 bytes) and control
 *   payloads (≤ 125) are gathered across reads.
 * - Rules (RFC 6455 §5.1-§5.5): client frames must be masked and server frames must not; a
 *   continuation needs a message in progress; control frames are whole and ≤ 125 bytes; text
 *   messages are refused (the transports carry binary only); frames over `maxFramePayload` are
 *   refused. A violation sends Close (1002, 1003 or 1009), ends the socket and destroys the stream
 *   with ERR_WEBSOCKET.
 * - Ping gets Pong; Pong is ignored.
 * - Close is the stream's FIN: a Close received ends the readable side, and ending the writable side
 *   sends Close. Each direction closes on its own, so a request whose writer ends first still gets its
 *   whole answer (as TCP half-close); the socket ends once Close went both ways.
 * - Backpressure as in CodecDuplex: a full reader pauses the socket; a write waits for 'drain' only
 *   when the socket's buffer is full. `writableLength` includes the socket's backlog, so layers
 *   above know when memory they handed down is still referenced.
 * @module
 */
import { Duplex } from 'node:stream';
import { randomFillSync } from 'node:crypto';
import { debuglog } from 'node:util';
import {
  WS_MAX_FRAME_PAYLOAD,
  WS_OPCODE,
  applyWsMask,
  decodeWsHeader,
  encodeWsHeader,
  wsHeaderLength,
} from '../codec/websocket.js';
import { LadderError } from '../errors.js';
import { KEEPS, keepsWrites } from '../core/lent-read.js';

const debug = debuglog('ladder:ws');

/** RFC 6455 §7.4.1 close codes used here. */
export const WS_CLOSE = {
  NORMAL: 1000,
  PROTOCOL_ERROR: 1002,
  UNSUPPORTED_DATA: 1003,
  TOO_BIG: 1009,
} as const;

/** Longest frame header: 2 + 8 (length) + 4 (mask). */
const MAX_HEADER = 14;
/** Payload bytes per frame we send; a larger write becomes several frames. */
const MAX_SEND_FRAME = 256 * 1024;
/** Writes up to this size are copied next to their header and leave as one buffer. */
const COPY_BELOW = 2048;

const STATE_HEADER = 0;
const STATE_PAYLOAD = 1;
const STATE_DONE = 2;

export interface WebSocketStreamOptions {
  /** 'server' expects masked frames and sends unmasked ones; 'client' the reverse. */
  role: 'server' | 'client';
  /** Bytes that arrived after the opening handshake, already read from the socket. */
  head?: Buffer;
  /** Largest frame payload accepted (default WS_MAX_FRAME_PAYLOAD). */
  maxFramePayload?: number;
  highWaterMark?: number;
  /**
   * When the writable side ends before the peer's, hold the Close back until the peer has been
   * quiet this long (or closes itself). v2ray's clients drop whatever they still buffer when a
   * Close arrives, and v2ray's own servers linger so (policy `uplinkOnly`, 1 s) before closing.
   */
  closeLingerMs?: number;
}

type SocketLike = Duplex & {
  setNoDelay?(noDelay?: boolean): unknown;
  setKeepAlive?(enable?: boolean, delay?: number): unknown;
  setTimeout?(ms: number): unknown;
  timeout?: number;
  ref?(): unknown;
  unref?(): unknown;
  remoteAddress?: string;
};

/** Random bytes for client masks, drawn from a refilled pool rather than one call per frame. */
class MaskPool {
  #pool = Buffer.allocUnsafe(4096);
  #at = 4096;
  next(out: Uint8Array, offset: number): Uint8Array {
    if (this.#at + 4 > this.#pool.length) {
      randomFillSync(this.#pool);
      this.#at = 0;
    }
    const m = this.#pool.subarray(this.#at, this.#at + 4);
    this.#at += 4;
    out.set(m, offset);
    return m;
  }
}
const masks = new MaskPool();

export class WebSocketStream extends Duplex {
  readonly socket: SocketLike;
  readonly #server: boolean;
  readonly #maxPayload: number;
  #state = STATE_HEADER;
  /** Header bytes gathered across reads. */
  readonly #hdr = Buffer.allocUnsafe(MAX_HEADER);
  #hdrLen = 0;
  #opcode = 0;
  #mask: Uint8Array | undefined;
  #maskPos = 0;
  #remaining = 0;
  #inMessage = false;
  /** Control payload being gathered (≤ 125 bytes). */
  #ctrl: Buffer | null = null;
  #ctrlLen = 0;
  #closeSent = false;
  #closeReceived = false;
  #readPaused = false;
  #pendingWriteCb: ((err?: Error | null) => void) | null = null;
  readonly #lingerMs: number;
  #linger: NodeJS.Timeout | null = null;
  #lastRead = 0;
  /** The close code the peer sent, if any. */
  peerCloseCode: number | undefined;

  constructor(socket: Duplex, options: WebSocketStreamOptions) {
    super({ allowHalfOpen: true, highWaterMark: options.highWaterMark ?? 16 * 1024 });
    this.socket = socket as SocketLike;
    this.#server = options.role === 'server';
    this.#maxPayload = options.maxFramePayload ?? WS_MAX_FRAME_PAYLOAD;
    this.#lingerMs = options.closeLingerMs ?? 0;
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('drain', this.#onDrain);
    socket.on('error', this.#onError);
    socket.on('close', this.#onClose);
    if (options.head && options.head.length > 0) this.#onData(options.head);
    if (socket.readableEnded) queueMicrotask(this.#onEnd);
  }

  // net.Socket-like methods, forwarded, so that the layers above can treat this as a socket.
  setNoDelay(noDelay?: boolean): this {
    this.socket.setNoDelay?.(noDelay);
    return this;
  }
  setKeepAlive(enable?: boolean, delayMs?: number): this {
    this.socket.setKeepAlive?.(enable, delayMs);
    return this;
  }
  setTimeout(ms: number, cb?: () => void): this {
    this.socket.setTimeout?.(ms);
    if (cb) this.socket.once('timeout', cb);
    return this;
  }
  get timeout(): number | undefined {
    return this.socket.timeout;
  }
  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }
  ref(): this {
    this.socket.ref?.();
    return this;
  }
  unref(): this {
    this.socket.unref?.();
    return this;
  }

  // ------------------------------------------------------------------------------ reading

  #onData = (chunk: Buffer): void => {
    if (this.#linger) this.#lastRead = Date.now();
    let off = 0;
    const n = chunk.length;
    while (off < n) {
      if (this.#state === STATE_PAYLOAD) {
        const take = Math.min(this.#remaining, n - off);
        const piece = chunk.subarray(off, off + take);
        off += take;
        this.#remaining -= take;
        if (this.#mask) {
          applyWsMask(piece, this.#mask, this.#maskPos);
          this.#maskPos += take;
        }
        if (this.#ctrl) {
          piece.copy(this.#ctrl, this.#ctrlLen);
          this.#ctrlLen += take;
        } else if (take > 0 && !this.push(piece) && !this.#readPaused) {
          this.#readPaused = true;
          this.socket.pause();
        }
        if (this.#remaining === 0) this.#frameDone();
        continue;
      }
      if (this.#state === STATE_DONE) return; // after Close, or after an error: bytes are ignored
      // STATE_HEADER: decode from the chunk directly when no partial header is pending.
      // A header split across reads is gathered in #hdr (at most 14 bytes are ever copied).
      const pending = this.#hdrLen;
      let buf = chunk;
      let base = off;
      if (pending > 0) {
        const copy = Math.min(MAX_HEADER - pending, n - off);
        chunk.copy(this.#hdr, pending, off, off + copy);
        buf = this.#hdr.subarray(0, pending + copy);
        base = 0;
      }
      let d;
      try {
        d = decodeWsHeader(buf, base);
      } catch (err) {
        const tooBig = /over the limit|too large/.test((err as Error).message);
        this.#fail(tooBig ? WS_CLOSE.TOO_BIG : WS_CLOSE.PROTOCOL_ERROR, (err as Error).message);
        return;
      }
      if (d === null) {
        // Too few bytes for a header (at most 13): keep them for the next read.
        if (pending === 0) chunk.copy(this.#hdr, 0, off, n);
        this.#hdrLen = pending === 0 ? n - off : buf.length;
        return;
      }
      off += d.bytesRead - pending;
      this.#hdrLen = 0;
      if (!this.#frameStart(d.value)) return;
    }
  };

  /** Checks a frame header against the rules; false when the stream failed. */
  #frameStart(h: {
    fin: boolean;
    opcode: number;
    mask?: Uint8Array;
    payloadLength: number;
  }): boolean {
    // RFC 6455 §5.1: a server MUST close on an unmasked frame; a client on a masked one.
    if (this.#server !== (h.mask !== undefined)) {
      this.#fail(
        WS_CLOSE.PROTOCOL_ERROR,
        this.#server ? 'a client frame without a mask' : 'a masked server frame',
      );
      return false;
    }
    if (h.payloadLength > this.#maxPayload) {
      this.#fail(WS_CLOSE.TOO_BIG, `a frame of ${h.payloadLength} bytes is over the limit`);
      return false;
    }
    const op = h.opcode;
    if (op === WS_OPCODE.TEXT) {
      this.#fail(WS_CLOSE.UNSUPPORTED_DATA, 'a text message (this transport carries binary)');
      return false;
    }
    if (op === WS_OPCODE.BINARY) {
      // §5.4: a new message may not start inside a fragmented one.
      if (this.#inMessage) {
        this.#fail(WS_CLOSE.PROTOCOL_ERROR, 'a new message inside a fragmented one');
        return false;
      }
      this.#inMessage = !h.fin;
    } else if (op === WS_OPCODE.CONTINUATION) {
      if (!this.#inMessage) {
        this.#fail(WS_CLOSE.PROTOCOL_ERROR, 'a continuation frame with no message to continue');
        return false;
      }
      this.#inMessage = !h.fin;
    }
    this.#opcode = op;
    this.#mask = h.mask;
    this.#maskPos = 0;
    this.#remaining = h.payloadLength;
    if (op >= 0x8) {
      this.#ctrl = Buffer.allocUnsafe(h.payloadLength);
      this.#ctrlLen = 0;
    }
    this.#state = STATE_PAYLOAD;
    if (h.payloadLength === 0) this.#frameDone();
    return true;
  }

  #frameDone(): void {
    this.#state = STATE_HEADER;
    const ctrl = this.#ctrl;
    if (!ctrl) return;
    this.#ctrl = null;
    switch (this.#opcode) {
      case WS_OPCODE.PING:
        if (!this.#closeSent) this.#sendControl(WS_OPCODE.PONG, ctrl);
        break;
      case WS_OPCODE.PONG:
        break;
      case WS_OPCODE.CLOSE:
        this.#onCloseFrame(ctrl);
        break;
    }
  }

  #onCloseFrame(payload: Buffer): void {
    // §5.5.1: an optional 2-byte code, then an optional reason; one byte alone is malformed.
    if (payload.length === 1) {
      this.#fail(WS_CLOSE.PROTOCOL_ERROR, 'a Close frame with a 1-byte body');
      return;
    }
    if (payload.length >= 2) this.peerCloseCode = payload.readUInt16BE(0);
    this.#closeReceived = true;
    this.#state = STATE_DONE;
    this.push(null);
    if (this.#linger) this.#sendClose();
    if (this.#closeSent) this.socket.end();
  }

  #onEnd = (): void => {
    // The socket ended without a Close frame: taken as the end of the stream, as TCP's FIN.
    if (this.#state !== STATE_DONE) this.#state = STATE_DONE;
    this.#closeReceived = true;
    this.push(null);
    if (this.#linger) this.#sendClose();
    if (this.#closeSent || this.writableFinished) this.socket.end();
  };

  #onDrain = (): void => {
    const cb = this.#pendingWriteCb;
    this.#pendingWriteCb = null;
    cb?.();
  };

  #onError = (err: Error): void => {
    this.destroy(err);
  };

  #onClose = (): void => {
    if (!this.destroyed) {
      this.push(null);
      this.destroy();
    }
  };

  /** A protocol violation: Close with `code`, end the socket, destroy this stream with ERR_WEBSOCKET. */
  #fail(code: number, why: string): void {
    debug('protocol error %d: %s', code, why);
    this.#state = STATE_DONE;
    if (!this.#closeSent) this.#sendControl(WS_OPCODE.CLOSE, closePayload(code));
    this.#closeSent = true;
    this.socket.end();
    this.destroy(new LadderError('ERR_WEBSOCKET', `WebSocket: ${why}`));
  }

  override _read(): void {
    if (this.#readPaused) {
      this.#readPaused = false;
      this.socket.resume();
    }
  }

  // ------------------------------------------------------------------------------ writing

  #sendControl(opcode: number, payload: Buffer): void {
    const masked = !this.#server;
    const out = Buffer.allocUnsafe(wsHeaderLength(payload.length, masked) + payload.length);
    const p = this.#writeHeader(opcode, payload.length, out);
    payload.copy(out, p);
    if (masked) applyWsMask(out.subarray(p), out.subarray(p - 4, p));
    if (!this.socket.destroyed && this.socket.writable) this.socket.write(out);
  }

  /** Writes a frame header into `out` at 0, with a fresh mask for a client; returns its length. */
  #writeHeader(opcode: number, length: number, out: Buffer): number {
    if (this.#server) return encodeWsHeader({ fin: true, opcode, payloadLength: length }, out, 0);
    const n = encodeWsHeader({ fin: true, opcode, payloadLength: length }, out, 0);
    out[1]! |= 0x80; // the MASK bit; the key follows the length
    masks.next(out, n);
    return n + 4;
  }

  /** Sends `data` as binary frames; returns socket.write's verdict for the last one. */
  #sendData(data: Buffer): boolean {
    let ok = true;
    for (let at = 0; at < data.length;) {
      const piece = data.subarray(at, at + MAX_SEND_FRAME);
      at += piece.length;
      const hl = wsHeaderLength(piece.length, !this.#server);
      if (!this.#server) {
        // A client masks: a copy is unavoidable (the caller's buffer is not ours to change).
        const out = Buffer.allocUnsafe(hl + piece.length);
        const p = this.#writeHeader(WS_OPCODE.BINARY, piece.length, out);
        piece.copy(out, p);
        applyWsMask(out.subarray(p), out.subarray(p - 4, p));
        ok = this.socket.write(out);
      } else if (piece.length < COPY_BELOW) {
        const out = Buffer.allocUnsafe(hl + piece.length);
        piece.copy(out, this.#writeHeader(WS_OPCODE.BINARY, piece.length, out));
        ok = this.socket.write(out);
      } else {
        const header = Buffer.allocUnsafe(hl);
        this.#writeHeader(WS_OPCODE.BINARY, piece.length, header);
        this.socket.write(header);
        ok = this.socket.write(piece);
      }
    }
    return ok;
  }

  /**
   * Whether a chunk written to this stream is still referenced (recycled-reads.ts keepsWrites):
   * one queued behind a write in flight is; the one _write took went to the socket below, as
   * frames that copy it or as itself, so the socket's answer stands for it.
   */
  [KEEPS](): boolean {
    const queued = (this as unknown as { readonly writableBuffer: readonly unknown[] })
      .writableBuffer;
    return queued.length > 0 || keepsWrites(this.socket);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.#closeSent) {
      cb(new LadderError('ERR_WEBSOCKET', 'WebSocket: write after Close'));
      return;
    }
    if (chunk.length === 0) {
      cb();
      return;
    }
    this.socket.cork();
    const ok = this.#sendData(chunk);
    this.socket.uncork();
    if (ok) cb();
    else this.#pendingWriteCb = cb;
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    if (this.#closeSent) {
      cb(new LadderError('ERR_WEBSOCKET', 'WebSocket: write after Close'));
      return;
    }
    let ok = true;
    this.socket.cork();
    for (const { chunk } of chunks) if (chunk.length > 0) ok = this.#sendData(chunk);
    this.socket.uncork();
    if (ok) cb();
    else this.#pendingWriteCb = cb;
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.#lingerMs > 0 && !this.#closeReceived && !this.#closeSent) {
      this.#lastRead = Date.now();
      this.#linger = setInterval(() => {
        if (Date.now() - this.#lastRead >= this.#lingerMs) this.#sendClose();
      }, this.#lingerMs / 2);
      this.#linger.unref();
    } else this.#sendClose();
    cb();
  }

  #sendClose(): void {
    if (this.#linger) clearInterval(this.#linger);
    this.#linger = null;
    if (!this.#closeSent) {
      this.#closeSent = true;
      this.#sendControl(WS_OPCODE.CLOSE, closePayload(WS_CLOSE.NORMAL));
    }
    // Close went both ways (or the peer is gone): the TCP (or TLS) connection ends too.
    if (this.#closeReceived) this.socket.end();
  }

  override _destroy(err: Error | null, cb: (err: Error | null) => void): void {
    if (this.#linger) clearInterval(this.#linger);
    this.socket.off('data', this.#onData);
    this.socket.off('end', this.#onEnd);
    this.socket.off('drain', this.#onDrain);
    this.socket.off('error', this.#onError);
    this.socket.off('close', this.#onClose);
    this.socket.on('error', () => {}); // late errors after teardown are expected
    if (err instanceof LadderError && err.code === 'ERR_WEBSOCKET') {
      // Let the Close frame leave; the socket goes at once if the peer does not read it.
      const t = setTimeout(() => this.socket.destroy(), 2000);
      t.unref();
      this.socket.once('close', () => clearTimeout(t));
    } else this.socket.destroy();
    const pending = this.#pendingWriteCb;
    this.#pendingWriteCb = null;
    pending?.(err ?? new Error('stream destroyed'));
    cb(err);
  }
}

// Layers above decide whether memory they handed down may be reused by asking writableLength
// (CodecDuplex's release, the relay's holdChunks): bytes queued in the socket count too.
const ownWritableLength = Object.getOwnPropertyDescriptor(Duplex.prototype, 'writableLength')!
  .get as (this: Duplex) => number;
Object.defineProperty(WebSocketStream.prototype, 'writableLength', {
  configurable: true,
  get(this: WebSocketStream) {
    const own = ownWritableLength.call(this);
    return own + (this.socket.writableLength ?? 0);
  },
});

function closePayload(code: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b.writeUInt16BE(code, 0);
  return b;
}
