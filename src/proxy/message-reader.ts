/**
 * Reads HTTP/1.1 messages off one stream for the HTTP proxy: heads through a pure decoder
 * (codec/http-proxy.ts), bodies forwarded to another stream as they arrive, byte for byte, with
 * backpressure, ending exactly where the framing says (so the next message on a keep-alive
 * connection starts at the right byte).
 *
 * The stream is paused whenever nobody is consuming; bytes past the current message wait in
 * `#pending` for the next one. Heads are small and bounded (MAX_HEAD_BYTES), so they are gathered
 * with a copy; body chunks are written on without one (a view only where a body ends inside a
 * chunk). Chunks may be borrowed (stream/recycled-reads.ts): whatever is kept past a 'data' handler
 * is announced with holdChunks.
 * @module
 */
import type { Duplex, Writable } from 'node:stream';
import { LadderError } from '../errors.js';
import { ChunkedBodyScanner, type BodyFraming } from '../codec/http1.js';
import type { Decoded } from '../codec/socks-addr.js';
import { holdChunks, keepsWrites } from '../stream/recycled-reads.js';

/** The stream ended or failed in the middle of a message, or before one it was waiting for. */
export class StreamGone extends Error {
  /** True when not one byte of the awaited message had arrived. */
  readonly clean: boolean;
  constructor(message: string, clean: boolean, cause?: unknown) {
    super(message, { cause });
    this.clean = clean;
  }
}

export class HeadTimeout extends Error {
  /** True when some bytes of the head had arrived. */
  readonly partial: boolean;
  constructor(partial: boolean) {
    super('no complete head in time');
    this.partial = partial;
  }
}

export class MessageReader {
  readonly stream: Duplex;
  #pending: Buffer | null = null;
  #consumer: ((chunk: Buffer) => void) | null = null;
  #onState: (() => void) | null = null;
  #ended = false;
  #failure: Error | null = null;
  #idleUse = false;
  readonly #listeners: [string, (arg: never) => void][];

  constructor(stream: Duplex) {
    this.stream = stream;
    const onData = (chunk: Buffer): void => {
      if (this.#consumer) return this.#consumer(chunk);
      // Nobody is reading: keep it for the next message and stop the flow.
      this.#stash(chunk);
      stream.pause();
    };
    const onEnd = (): void => {
      this.#ended = true;
      this.#onState?.();
    };
    const onError = (err: Error): void => {
      this.#failure ??= err;
      this.#onState?.();
    };
    const onClose = (): void => {
      if (!this.#ended) this.#failure ??= new Error('the stream closed');
      this.#onState?.();
    };
    this.#listeners = [
      ['data', onData],
      ['end', onEnd],
      ['error', onError],
      ['close', onClose],
    ];
    for (const [e, f] of this.#listeners) stream.on(e, f as (arg: unknown) => void);
    stream.pause();
  }

  /** True when the stream may carry another message: open, quiet, nothing unexpected received. */
  get reusable(): boolean {
    return (
      !this.#ended &&
      this.#failure === null &&
      !this.#idleUse &&
      this.#pending === null &&
      !this.stream.destroyed
    );
  }

  #stash(chunk: Buffer): void {
    holdChunks(this.stream);
    // Only heads and stray bytes land here, both bounded: a copy is fine.
    this.#pending = this.#pending === null ? chunk : Buffer.concat([this.#pending, chunk]);
  }

  /**
   * Between messages on a kept-alive upstream: let the stream flow so that a close by the other
   * side is noticed at once, and treat any byte as a reason not to reuse it.
   */
  watchIdle(): void {
    this.#consumer = (chunk) => {
      this.#idleUse = true;
      this.#stash(chunk);
      this.stream.pause();
    };
    // the other side closed a connection nobody is using: let it go now, not at the next request
    this.#onState = () => this.stream.destroy();
    this.stream.resume();
  }

  /**
   * Reads one head with `decode`. Resolves null when the stream ends cleanly before any byte of it;
   * rejects with the decoder's CodecError, a {@link StreamGone}, or a {@link HeadTimeout}.
   */
  readHead<T>(
    decode: (buf: Uint8Array, offset: number) => Decoded<T> | null,
    timeoutMs: number,
  ): Promise<Decoded<T> | null> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined = undefined; // set once the first attempt needs more
      const finish = (): void => {
        this.#consumer = null;
        this.#onState = null;
        if (timer) clearTimeout(timer);
        this.stream.pause();
      };
      const attempt = (): boolean => {
        if (this.#pending !== null) {
          let r: Decoded<T> | null;
          try {
            r = decode(this.#pending, 0);
          } catch (err) {
            finish();
            reject(err);
            return true;
          }
          if (r !== null) {
            const rest = this.#pending.subarray(r.bytesRead);
            this.#pending = rest.length > 0 ? rest : null;
            finish();
            resolve(r);
            return true;
          }
        }
        if (this.#failure !== null || this.#ended) {
          const clean = this.#pending === null;
          finish();
          if (this.#failure === null && clean) resolve(null);
          else
            reject(
              new StreamGone(
                clean ? 'the stream closed' : 'the stream ended inside a head',
                clean,
                this.#failure,
              ),
            );
          return true;
        }
        return false;
      };
      this.#idleUse = false;
      if (attempt()) return;
      timer = setTimeout(() => {
        const partial = this.#pending !== null;
        finish();
        reject(new HeadTimeout(partial));
      }, timeoutMs);
      this.#consumer = (chunk) => {
        this.#stash(chunk);
        attempt();
      };
      this.#onState = () => void attempt();
      this.stream.resume();
    });
  }

  /**
   * Writes one body, framed by `framing`, to `dst`, honouring its backpressure. Resolves when the
   * last byte of the body has been handed to `dst`; rejects with a CodecError (bad chunked framing),
   * or a StreamGone when either stream fails or this one ends too early.
   */
  pumpBody(framing: BodyFraming, dst: Writable): Promise<void> {
    if (framing.kind === 'none') return Promise.resolve();
    return new Promise((resolve, reject) => {
      const src = this.stream;
      let left = framing.kind === 'length' ? framing.length : 0;
      const scanner = framing.kind === 'chunked' ? new ChunkedBodyScanner() : null;
      let settled = false;
      let started = false;
      const complete = (): boolean =>
        framing.kind === 'length' ? left === 0 : scanner !== null && scanner.done;
      const finish = (err: Error | null): void => {
        if (settled) return;
        settled = true;
        this.#consumer = null;
        this.#onState = null;
        dst.off('drain', onDrain);
        dst.off('close', onDstClose);
        dst.off('error', onDstError);
        src.pause();
        if (err) reject(err);
        else resolve();
      };
      const feed = (chunk: Buffer): void => {
        let n: number;
        try {
          if (framing.kind === 'length') {
            n = Math.min(left, chunk.length);
            left -= n;
          } else if (scanner !== null) n = scanner.scan(chunk, 0);
          else n = chunk.length;
        } catch (err) {
          return finish(err as Error);
        }
        started = true;
        if (n > 0) {
          const ok = dst.write(n === chunk.length ? chunk : chunk.subarray(0, n));
          if (keepsWrites(dst)) holdChunks(src);
          if (!ok) src.pause();
        }
        if (n < chunk.length) {
          // The next message begins inside this chunk.
          this.#stash(chunk.subarray(n));
          src.pause();
        }
        if (complete()) finish(null);
      };
      const onState = (): void => {
        if (this.#failure !== null)
          finish(new StreamGone('the stream failed inside a body', !started, this.#failure));
        else if (this.#ended) {
          if (framing.kind === 'close') finish(null);
          else finish(new StreamGone('the stream ended inside a body', !started));
        }
      };
      const onDrain = (): void => {
        if (!settled) src.resume();
      };
      const onDstClose = (): void => finish(new StreamGone('the receiving side closed', false));
      const onDstError = (err: Error): void =>
        finish(new StreamGone('the receiving side failed', false, err));

      dst.on('drain', onDrain);
      dst.on('close', onDstClose);
      dst.on('error', onDstError);
      if (this.#pending !== null) {
        const p = this.#pending;
        this.#pending = null;
        feed(p);
        if (settled) return;
      }
      this.#consumer = feed;
      this.#onState = onState;
      onState();
      if (!settled && !dst.writableNeedDrain) src.resume();
    });
  }

  /**
   * Stops reading messages and hands the stream over (to relay() after CONNECT): removes this
   * reader's listeners and returns the bytes it had read past the last message, if any.
   */
  release(): Buffer | null {
    for (const [e, f] of this.#listeners) this.stream.off(e, f as (arg: unknown) => void);
    this.#consumer = null;
    this.#onState = null;
    const p = this.#pending;
    this.#pending = null;
    return p;
  }

  /** The error that ended the stream, as a LadderError when it was one. */
  get failure(): LadderError | Error | null {
    return this.#failure;
  }
}
