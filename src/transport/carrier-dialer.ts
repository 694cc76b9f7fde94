/**
 * The client side of carrier sessions (codec/trojan-carrier.ts): each dial opens a session, and the
 * stream it returns is carried by one short connection after another through `inner` (a Trojan
 * dialer, which opens a carrier with a Trojan request for the reserved carrier name). The server
 * ends each carrier after `carrierBytes` (NEXT); the client then opens the next, naming the
 * server→client bytes it holds and where its unacknowledged client→server bytes start, so nothing
 * is lost or repeated. A carrier that closes without NEXT, FIN or RESET (killed, reset by a
 * censor) is replaced the same way; carriers that fail `maxFailures` times in a row without
 * delivering a byte end the stream with ERR_CARRIER.
 *
 * Client→server bytes are kept until the server acknowledges them, at most `maxUnackedBytes`
 * (writes wait beyond that). A carrier that delivered bytes and then none for `stallMs` before its
 * NEXT (frozen by a censor's byte budget below the carrier's cap, which a client cannot tell from a
 * server with nothing to say) is given up and the next opened the same way, rather than waiting for
 * the idle timeout. Resuming loses nothing either way, so a quiet session only costs one carrier:
 * a carrier is watched only once it has delivered a byte, so an idle session is not churned, and
 * the next carrier is the only one in flight (the stalled one is destroyed first).
 *
 * The carriers' chunks are queued as views until whole frames arrive, so `inner` must give streams
 * whose chunks are the reader's own, not lent reads (transport/types.ts): key-dialers.ts never
 * turns recycled reads on under carriers.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { Duplex } from 'node:stream';
import { debuglog } from 'node:util';
import { LadderError } from '../errors.js';
import {
  CARRIER_FRAME,
  CARRIER_FRAME_HEADER_LENGTH,
  CARRIER_MAX_PAYLOAD,
  CARRIER_SESSION_ID_LENGTH,
  CARRIER_TARGET,
  carrierAckOffset,
  carrierFrame,
  carrierOpenLength,
  decodeCarrierFrame,
  encodeCarrierOpen,
  type CarrierOpen,
} from '../codec/trojan-carrier.js';
import { ByteQueue } from '../codec/ss-stream.js';
import type { StreamDialer, Target } from './types.js';

const debug = debuglog('ladder:carrier');

export interface CarrierDialerOptions {
  /** What the server may write on one carrier, frames included (CARRIER_MIN_BYTES..MAX). */
  carrierBytes: number;
  /** Carriers in a row that may fail without delivering a byte (default 3). */
  maxFailures?: number;
  /** Client→server bytes held for the server's acknowledgement before writes wait (default 256 KiB). */
  maxUnackedBytes?: number;
  /**
   * Dial the next carrier once the current one is half spent, so its handshake overlaps the
   * transfer (default true). A session then holds two connections for a moment.
   */
  prefetch?: boolean;
  /**
   * A carrier that delivered a byte and then nothing for this long, before its NEXT, is replaced
   * (default {@link CARRIER_STALL_MS}; 0: never). Time spent paused by the reader does not count.
   */
  stallMs?: number;
}

/** Silence after which a carrier that was delivering counts as stalled. */
export const CARRIER_STALL_MS = 5000;

export class CarrierDialer implements StreamDialer {
  readonly #inner: StreamDialer;
  readonly #o: CarrierDialerOptions;

  constructor(inner: StreamDialer, options: CarrierDialerOptions) {
    this.#inner = inner;
    this.#o = options;
  }

  async dial(target: Target, signal?: AbortSignal): Promise<Duplex> {
    const s = new CarrierStream(this.#inner, target, this.#o);
    await s.start(signal);
    return s;
  }
}

/** One session's stream; its carriers come and go underneath. */
export class CarrierStream extends Duplex {
  readonly #inner: StreamDialer;
  readonly #target: Target;
  readonly #o: Required<CarrierDialerOptions>;
  readonly #sid = randomBytes(CARRIER_SESSION_ID_LENGTH);
  #carrier: Duplex | null = null;
  #started = false;
  #downReceived = 0;
  #upAcked = 0;
  /** Client→server bytes from #upAcked on, sent or not. */
  readonly #unacked: Buffer[] = [];
  #unackedBytes = 0;
  #upEnded = false;
  #downEnded = false;
  #failures = 0;
  #waitingWrite: (() => void) | null = null;
  /** The next carrier, dialled while the current one is half spent (null: none yet). */
  #spare: Promise<Duplex | null> | null = null;
  /** When the reader last asked for more (a carrier paused for it is not stalled). */
  #readAt = 0;
  /** Carriers opened in the session's life. */
  carriers = 0;

  constructor(inner: StreamDialer, target: Target, o: CarrierDialerOptions) {
    super();
    this.#inner = inner;
    this.#target = target;
    this.#o = {
      maxFailures: 3,
      maxUnackedBytes: 256 * 1024,
      prefetch: true,
      stallMs: CARRIER_STALL_MS,
      ...o,
    };
  }

  /** Opens the first carrier (the session); rejects if it cannot be dialled. */
  async start(signal?: AbortSignal): Promise<void> {
    await this.#openCarrier(signal);
  }

  async #openCarrier(signal?: AbortSignal): Promise<void> {
    const spare = this.#spare;
    this.#spare = null;
    const early = spare ? await spare : null;
    const conn = early && !early.destroyed ? early : await this.#inner.dial(CARRIER_TARGET, signal);
    if (this.destroyed) {
      conn.destroy();
      return;
    }
    this.carriers++;
    const open: CarrierOpen = {
      sessionId: this.#sid,
      carrierBytes: this.#o.carrierBytes,
      downOffset: this.#downReceived,
      upOffset: this.#upAcked,
      ...(this.#started ? {} : { target: this.#target }),
    };
    this.#started = true;
    const head = Buffer.allocUnsafe(carrierOpenLength(open));
    encodeCarrierOpen(open, head, 0);
    conn.write(head);
    for (const b of this.#unacked) this.#sendData(conn, b);
    if (this.#upEnded) conn.write(carrierFrame(CARRIER_FRAME.FIN));
    this.#carrier = conn;
    this.#listen(conn);
  }

  #sendData(conn: Duplex, b: Buffer): void {
    for (let at = 0; at < b.length; at += CARRIER_MAX_PAYLOAD)
      conn.write(carrierFrame(CARRIER_FRAME.DATA, b.subarray(at, at + CARRIER_MAX_PAYLOAD)));
  }

  #listen(conn: Duplex): void {
    const q = new ByteQueue();
    let over = false; // NEXT, FIN or RESET seen
    let progress = false;
    let received = 0;
    const { stallMs } = this.#o;
    const now = Date.now;
    /** When the carrier last delivered a byte, or the reader last let it deliver. */
    let lastAt = 0;
    let watch: ReturnType<typeof setTimeout> | undefined;
    const arm = (ms: number): void => {
      watch = setTimeout(checkStall, ms);
      watch.unref();
    };
    const checkStall = (): void => {
      watch = undefined;
      if (over || this.destroyed || this.#carrier !== conn) return;
      // paused for the reader's backpressure: that silence is ours, not the path's
      if (conn.isPaused()) lastAt = now();
      const quiet = now() - Math.max(lastAt, this.#readAt);
      if (quiet < stallMs) {
        arm(stallMs - quiet);
        return;
      }
      over = true;
      debug(
        'carrier silent for %d ms after %d bytes, before its NEXT; opening the next',
        quiet,
        received,
      );
      conn.destroy();
      this.#next(conn);
    };
    conn.on('data', (chunk: Buffer) => {
      if (over) return;
      if (stallMs > 0) {
        lastAt = now();
        if (watch === undefined) arm(stallMs);
      }
      q.push(chunk);
      while (q.length > 0) {
        let f;
        try {
          f = decodeCarrierFrame(
            q.peek(Math.min(q.length, CARRIER_FRAME_HEADER_LENGTH + CARRIER_MAX_PAYLOAD)),
            0,
          );
        } catch (err) {
          this.destroy(err as Error);
          return;
        }
        if (f === null) return;
        const { type, payload } = f.value;
        if (type === CARRIER_FRAME.DATA) {
          progress = true;
          this.#failures = 0;
          this.#downReceived += payload.length;
          received += payload.length;
          if (this.#o.prefetch && received >= this.#o.carrierBytes / 2) this.#prefetch();
          if (!this.push(Buffer.from(payload))) conn.pause();
        } else if (type === CARRIER_FRAME.ACK) {
          if (!this.#acked(carrierAckOffset(f.value))) return;
        } else {
          over = true;
          q.take(f.bytesRead);
          if (type === CARRIER_FRAME.RESET) {
            this.destroy(new LadderError('ERR_CARRIER', 'the server reset the carrier session'));
          } else if (type === CARRIER_FRAME.FIN) {
            this.#downEnded = true;
            this.#dropSpare();
            this.push(null);
            // the whole stream arrived: the server may forget the session (codec/trojan-carrier.ts);
            // resumed so that it reads the server's end and closes, even if paused for backpressure
            conn.end(carrierFrame(CARRIER_FRAME.ACK, null, this.#downReceived));
            conn.resume();
          } else {
            debug('carrier spent after %d bytes in all', this.#downReceived);
            conn.end();
            conn.resume();
            this.#next(conn);
          }
          return;
        }
        q.take(f.bytesRead);
      }
    });
    conn.on('error', () => conn.destroy());
    conn.once('close', () => {
      clearTimeout(watch);
      if (over || this.destroyed) return;
      if (!progress && ++this.#failures > this.#o.maxFailures) {
        this.destroy(new LadderError('ERR_CARRIER', `${this.#failures} carriers failed in a row`));
        return;
      }
      debug('carrier lost at down offset %d; resuming', this.#downReceived);
      this.#next(conn);
    });
  }

  /**
   * Dials the next carrier ahead of time, so that its handshake overlaps this carrier's transfer.
   * It waits, authenticated, for its open header (the server closes it after its open deadline).
   */
  #prefetch(): void {
    if (this.#spare || this.#downEnded || this.destroyed) return;
    const spare = this.#inner.dial(CARRIER_TARGET).then(
      (c) => {
        c.on('error', () => c.destroy());
        if (this.destroyed || this.#downEnded) c.destroy();
        return c;
      },
      () => null,
    );
    this.#spare = spare;
  }

  #dropSpare(): void {
    void this.#spare?.then((c) => c?.destroy());
    this.#spare = null;
  }

  /** Replaces `old` with a new carrier. */
  #next(old: Duplex): void {
    if (this.#carrier !== old) return;
    this.#carrier = null;
    this.#reopen();
  }

  #reopen(): void {
    this.#openCarrier().catch((err: unknown) => {
      if (this.destroyed) return;
      if (++this.#failures > this.#o.maxFailures) {
        this.destroy(
          new LadderError('ERR_CARRIER', 'carriers kept failing to connect', { cause: err }),
        );
        return;
      }
      this.#reopen();
    });
  }

  /** Forgets client→server bytes up to `offset`; false (stream destroyed) if it is impossible. */
  #acked(offset: number): boolean {
    if (offset < this.#upAcked || offset > this.#upAcked + this.#unackedBytes) {
      this.destroy(new LadderError('ERR_CARRIER', 'an ACK outside the bytes sent'));
      return false;
    }
    let n = offset - this.#upAcked;
    this.#upAcked = offset;
    this.#unackedBytes -= n;
    while (n > 0) {
      const b = this.#unacked[0]!;
      if (b.length <= n) {
        this.#unacked.shift();
        n -= b.length;
      } else {
        this.#unacked[0] = b.subarray(n);
        n = 0;
      }
    }
    if (this.#waitingWrite && this.#unackedBytes < this.#o.maxUnackedBytes) {
      const cb = this.#waitingWrite;
      this.#waitingWrite = null;
      cb();
    }
    return true;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.#downEnded) {
      cb(); // the session is over; what the target would not take is dropped, as after its close
      return;
    }
    this.#unacked.push(chunk);
    this.#unackedBytes += chunk.length;
    if (this.#carrier) this.#sendData(this.#carrier, chunk);
    if (this.#unackedBytes < this.#o.maxUnackedBytes) cb();
    else this.#waitingWrite = () => cb();
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.#upEnded = true;
    if (this.#carrier && !this.#downEnded) this.#carrier.write(carrierFrame(CARRIER_FRAME.FIN));
    cb();
  }

  override _read(): void {
    this.#readAt = Date.now();
    this.#carrier?.resume();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.#dropSpare();
    this.#carrier?.destroy();
    this.#carrier = null;
    cb(err);
  }
}
