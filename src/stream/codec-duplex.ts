/**
 * A Duplex that runs an encrypting codec over a socket: what is written to it is encoded and written
 * to the socket; what the socket receives is decoded and can be read from it.
 *
 * Backpressure both ways: a write callback waits for the socket's 'drain' only when the socket's
 * buffer is full, so many writes stay in flight; `push()` returning false pauses the socket and
 * `_read()` resumes it. Several queued writes are encoded and leave in one corked batch (`_writev`).
 * Half-close: ending the Duplex ends the socket's write side; the socket's end ends the readable.
 * A decode error (bad tag, bad length) destroys both with that error.
 * @module
 */
import { Duplex } from 'node:stream';
import { Socket } from 'node:net';
import { HOLD, KEEPS, holdChunks, keepsWrites } from './recycled-reads.js';

/**
 * What a CodecDuplex runs over: a socket, or any Duplex (a WebSocket stream, a Mux.Cool session)
 * that may offer some of a socket's methods.
 */
export type SocketLike = Duplex &
  Partial<Pick<Socket, 'setKeepAlive' | 'setNoDelay' | 'setTimeout' | 'ref' | 'unref'>> & {
    readonly timeout?: number | undefined;
  };

/** The codec a {@link CodecDuplex} runs. */
export interface StreamCodec {
  /** Encodes payload for the wire (non-empty input). */
  encode(payload: Buffer): Buffer;
  /**
   * Decodes bytes from the wire into zero or more payloads; throws on invalid input. `borrowed`:
   * `chunk`'s memory is reused after the call (a recycled read): the codec must keep none of it (it
   * copies what it keeps), though the payloads it returns may be views of it.
   */
  decode(chunk: Buffer, borrowed: boolean): Buffer[];
  /** Optional: the last encoded bytes are no longer referenced, so their memory may be reused. */
  release?(): void;
}

export class CodecDuplex extends Duplex {
  readonly socket: SocketLike;
  readonly #codec: StreamCodec;
  #pendingWriteCb: ((err?: Error | null) => void) | null = null;
  /**
   * Bytes of the chunks whose callback waits only for the socket's 'drain' and which the codec
   * copied while encoding them: written, but no longer referenced ({@link KEEPS}).
   */
  #copiedInFlight = 0;
  /** The last chunk went to the socket as it was (the codec did not copy it). */
  #passedThrough = false;
  #readPaused = false;
  /**
   * Whether an empty write queue after a write means nothing references the encoded bytes any more,
   * so the codec may reuse their memory (the encode scratch is shared by the whole process). True
   * for a net.Socket: TCP wrote them to the kernel, TLS encrypted them (OpenSSL copies what it
   * cannot send yet). Not for other duplexes: a WebSocket stream hands large payloads on to its own
   * socket by reference, where they may still be queued.
   */
  readonly #releasable: boolean;
  /**
   * Whether the socket lends its read buffers (stream/recycled-reads.ts). Payloads decoded from a
   * read may then be views of borrowed memory: when they stay buffered in this readable, or a
   * consumer keeps them (it calls holdChunks on this Duplex), the socket is told to hold that read.
   */
  readonly #borrowing: boolean;

  constructor(socket: SocketLike, codec: StreamCodec, options?: { highWaterMark?: number }) {
    super({ allowHalfOpen: true, highWaterMark: options?.highWaterMark ?? 16 * 1024 });
    this.socket = socket;
    this.#codec = codec;
    this.#releasable = socket instanceof Socket;
    this.#borrowing = typeof (socket as { [HOLD]?: unknown })[HOLD] === 'function';
    // A consumer's hold reaches the socket whose read the payload came from.
    if (this.#borrowing)
      (this as unknown as { [HOLD]: () => void })[HOLD] = () => holdChunks(socket);
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('drain', this.#onDrain);
    socket.on('error', this.#onError);
    socket.on('close', this.#onClose);
    socket.on('timeout', this.#onTimeout);
    // The socket may have ended before we took it over (its FIN arrived while a handshake was being
    // finished elsewhere); 'end' will not fire again, so end our readable ourselves.
    if (socket.readableEnded) queueMicrotask(this.#onEnd);
  }

  // net.Socket-like methods, forwarded, so that node:http's Agent can pool tunnelled connections.
  setKeepAlive(enable?: boolean, delayMs?: number): this {
    this.socket.setKeepAlive?.(enable, delayMs);
    return this;
  }
  setNoDelay(noDelay?: boolean): this {
    this.socket.setNoDelay?.(noDelay);
    return this;
  }
  setTimeout(ms: number, cb?: () => void): this {
    this.socket.setTimeout?.(ms);
    if (cb) this.once('timeout', cb);
    return this;
  }
  get timeout(): number | undefined {
    return this.socket.timeout;
  }
  ref(): this {
    this.socket.ref?.();
    return this;
  }
  unref(): this {
    this.socket.unref?.();
    return this;
  }

  #onData = (chunk: Buffer): void => {
    let pieces: Buffer[];
    try {
      pieces = this.#codec.decode(chunk, this.#borrowing);
    } catch (err) {
      this.destroy(err as Error);
      return;
    }
    for (const p of pieces) {
      if (!this.push(p) && !this.#readPaused) {
        this.#readPaused = true;
        this.socket.pause();
      }
    }
    // Payloads left in our buffer (nobody was reading, or not all of it) outlive this read.
    if (this.#borrowing && pieces.length > 0 && this.readableLength > 0) holdChunks(this.socket);
  };

  #onTimeout = (): void => {
    this.emit('timeout');
  };

  #onEnd = (): void => {
    this.push(null);
  };

  #onDrain = (): void => {
    const cb = this.#pendingWriteCb;
    this.#pendingWriteCb = null;
    this.#copiedInFlight = 0;
    cb?.();
  };

  /** Whether a chunk written to this Duplex is still referenced (recycled-reads.ts keepsWrites). */
  [KEEPS](): boolean {
    return (
      this.writableLength > this.#copiedInFlight ||
      (this.#passedThrough && keepsWrites(this.socket))
    );
  }

  #onError = (err: Error): void => {
    this.destroy(err);
  };

  #onClose = (): void => {
    if (!this.destroyed) {
      // The socket went away without an error: end what can still end, then tear down.
      this.push(null);
      this.destroy();
    }
  };

  override _read(): void {
    if (this.#readPaused) {
      this.#readPaused = false;
      this.socket.resume();
    }
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    let wire: Buffer;
    try {
      wire = this.#codec.encode(chunk);
    } catch (err) {
      cb(err as Error);
      return;
    }
    this.#passedThrough = wire.buffer === chunk.buffer;
    const ok = this.socket.write(wire);
    // Taken whole by the kernel (or by OpenSSL): nothing references `wire` any more.
    if (this.#releasable && this.socket.writableLength === 0) this.#codec.release?.();
    if (ok) cb();
    else {
      // A codec that encoded into memory of its own no longer needs `chunk`.
      this.#copiedInFlight = wire.buffer === chunk.buffer ? 0 : chunk.length;
      this.#pendingWriteCb = cb;
    }
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    let ok = true;
    let copied = 0;
    this.#passedThrough = false;
    this.socket.cork();
    try {
      // Corked: every write stays referenced until uncork, so no release here (fresh memory each).
      for (const { chunk } of chunks) {
        const wire = this.#codec.encode(chunk);
        if (wire.buffer !== chunk.buffer) copied += chunk.length;
        else this.#passedThrough = true;
        ok = this.socket.write(wire);
      }
    } catch (err) {
      this.socket.uncork();
      cb(err as Error);
      return;
    }
    this.socket.uncork();
    if (this.#releasable && this.socket.writableLength === 0) this.#codec.release?.();
    if (ok) cb();
    else {
      this.#copiedInFlight = copied;
      this.#pendingWriteCb = cb;
    }
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.socket.end(cb);
  }

  override _destroy(err: Error | null, cb: (err: Error | null) => void): void {
    this.socket.off('data', this.#onData);
    this.socket.off('end', this.#onEnd);
    this.socket.off('drain', this.#onDrain);
    this.socket.off('error', this.#onError);
    this.socket.off('close', this.#onClose);
    this.socket.off('timeout', this.#onTimeout);
    this.socket.on('error', () => {}); // late errors after teardown are expected
    this.socket.destroy();
    const pending = this.#pendingWriteCb;
    this.#pendingWriteCb = null;
    pending?.(err ?? new Error('stream destroyed'));
    cb(err);
  }
}
