/**
 * Bidirectional relay between two streams, on the hot path of every proxied connection.
 *
 * - Backpressure both ways: `write()` returning false pauses the source; 'drain' resumes it. No
 *   copies, no per-chunk allocation, no per-chunk timers (batching below takes one setImmediate per
 *   turn that has data).
 * - Half-close on purpose: when one side ends, the other side's writable is ended and the opposite
 *   direction keeps flowing until it ends too (TCP half-close, e.g. `curl` after its request).
 * - An error or abort on either side destroys both. An idle timeout (no byte either way for
 *   `idleTimeoutMs`) destroys both with ERR_IDLE_TIMEOUT; it is one coarse timer that checks an
 *   activity counter, not a timer reset per chunk.
 * - Pacing (speed caps): `paceAToB`/`paceBToA` see each chunk's size and return a number of
 *   milliseconds; when positive, the relay stops reading that source for that long. Backpressure and pacing each hold the source paused on their
 *   own, so a 'drain' never cuts a pause short.
 * - Batched writes: a TLS socket (and whatever reads from one: a Mux.Cool session, a WebSocket)
 *   emits every 16 KiB record of a socket read as its own chunk, all in one turn of the event loop.
 *   From the second chunk of a turn on, the destination is corked until that turn's I/O is done
 *   (setImmediate), so those chunks leave in one writev rather than a write each; backpressure is
 *   judged when the batch is uncorked. The first chunk of a turn is written at once, so a lone
 *   reply waits for nothing. Sources that lend their chunks (stream/recycled-reads.ts) read 64 KiB
 *   at a time and are not batched: a corked write would keep the lent memory.
 * - Resolves exactly once, never rejects, and removes every listener it added.
 * @module
 */
import type { Duplex } from 'node:stream';
import { LadderError } from '../errors.js';
import { holdChunks, keepsWrites, lendsChunks, type LentChunk } from '../core/lent-read.js';

export interface RelayOptions {
  idleTimeoutMs?: number;
  onAToB?: (n: number) => void;
  onBToA?: (n: number) => void;
  /** Bytes read from `a`; a positive return pauses reading `a` for that many ms (a speed cap). */
  paceAToB?: (n: number) => number;
  /** Bytes read from `b`; a positive return pauses reading `b` for that many ms. */
  paceBToA?: (n: number) => number;
  signal?: AbortSignal;
}

export interface RelayResult {
  aToB: number;
  bToA: number;
  error?: LadderError;
}

interface DirectionHooks {
  /** Bytes read from the source, as they are read. */
  readonly count: ((n: number) => void) | undefined;
  /** A positive return pauses the source for that many ms (a speed cap). */
  readonly pace: ((n: number) => number) | undefined;
  /** Called on every chunk: the relay's idle timer counts them. */
  readonly active: () => void;
  /** True once the relay is over: nothing resumes then. */
  readonly settled: () => boolean;
  /** The source ended (its end has been passed on to the destination). */
  readonly ended: () => void;
  /** The source side errored. */
  readonly failed: (err: Error) => void;
  /** The source side closed. */
  readonly closed: () => void;
  /** The source side's writable finished. */
  readonly finished: () => void;
}

/**
 * One direction of a relay: `src`'s chunks written to `dest`, with backpressure, pacing and write
 * batching (see the module comment). It also watches its source side's life ('error', 'close',
 * 'finish' of its writable) and reports it through the hooks. The relay runs two, one each way,
 * and owns what they share: the idle timer, the decision to close and the result.
 */
class Direction {
  bytes = 0;
  ended = false;
  /** The source side emitted 'close'. */
  closed = false;
  readonly #src: Duplex;
  readonly #dest: Duplex;
  readonly #hooks: DirectionHooks;
  /** Why the source is paused: waiting for the destination to drain, or for the pace timer. */
  #drain = false;
  #pace: NodeJS.Timeout | undefined;
  // A batch that leaves the destination over its high-water mark holds the source until 'drain'.
  readonly #batch: (() => boolean) | null;

  constructor(src: Duplex, dest: Duplex, hooks: DirectionHooks) {
    this.#src = src;
    this.#dest = dest;
    this.#hooks = hooks;
    this.#batch = lendsChunks(src)
      ? null
      : turnBatcher(dest, () => {
          if (hooks.settled() || this.#drain) return;
          this.#drain = true;
          src.pause();
        });
  }
  // Chunks may be borrowed (stream/recycled-reads.ts): when the destination keeps one queued,
  // the source is told to leave that memory alone.
  // A lent chunk (core/lent-read.ts) is valid in this handler only: held below if dest keeps it.
  readonly onData = (chunk: Buffer | LentChunk): void => {
    const src = this.#src;
    const dest = this.#dest;
    this.bytes += chunk.length;
    this.#hooks.active();
    this.#hooks.count?.(chunk.length);
    const wait = this.#hooks.pace?.(chunk.length);
    const corked = this.#batch !== null && this.#batch();
    const ok = dest.write(chunk) || corked;
    if (keepsWrites(dest)) holdChunks(src);
    if (!ok) {
      this.#drain = true;
      src.pause();
    }
    if (wait && wait > 0 && !this.#pace) {
      src.pause();
      this.#pace = setTimeout(this.#resume, wait);
    }
  };

  /** The destination drained. */
  readonly onDrain = (): void => {
    this.#drain = false;
    if (!this.#pace) this.#src.resume();
  };

  /** The source ended: end the destination's writable (half-close). */
  readonly onEnd = (): void => {
    this.ended = true;
    this.#dest.end();
    this.#hooks.ended();
  };

  readonly #resume = (): void => {
    this.#pace = undefined;
    if (!this.#drain && !this.#hooks.settled()) this.#src.resume();
  };

  readonly #onError = (err: Error): void => this.#hooks.failed(err);

  readonly #onClose = (): void => {
    this.closed = true;
    this.#hooks.closed();
  };

  readonly #onFinish = (): void => this.#hooks.finished();

  /** The source side is over: closed, destroyed, or its writable finished. */
  get sideDone(): boolean {
    return this.closed || this.#src.destroyed || this.#src.writableFinished;
  }

  attach(): void {
    this.#src.on('data', this.onData);
    this.#dest.on('drain', this.onDrain);
    this.#src.on('end', this.onEnd);
    this.#src.on('error', this.#onError);
    this.#src.on('close', this.#onClose);
    this.#src.on('finish', this.#onFinish);
  }

  /** Removes every listener; errors that arrive later (late resets) are not the relay's. */
  detach(): void {
    if (this.#pace) clearTimeout(this.#pace);
    this.#src.off('data', this.onData);
    this.#dest.off('drain', this.onDrain);
    this.#src.off('end', this.onEnd);
    this.#src.off('error', this.#onError);
    this.#src.off('close', this.#onClose);
    this.#src.off('finish', this.#onFinish);
    this.#src.on('error', noop);
  }
}

/**
 * Calls `onIdle` when `activity()` has not changed for `idleMs`; one coarse interval that checks
 * a counter, not a timer reset per chunk.
 */
function idleWatch(idleMs: number, activity: () => number, onIdle: () => void): NodeJS.Timeout {
  const period = Math.max(100, Math.floor(idleMs / 4));
  let lastSeen = -1;
  let idleSince = Date.now();
  const timer = setInterval(() => {
    const now = activity();
    if (now !== lastSeen) {
      lastSeen = now;
      idleSince = Date.now();
      return;
    }
    if (Date.now() - idleSince >= idleMs) onIdle();
  }, period);
  timer.unref();
  return timer;
}

function relayError(err: Error): LadderError {
  return err instanceof LadderError
    ? err
    : new LadderError('ERR_DIAL', err.message, { cause: err });
}

export function relay(a: Duplex, b: Duplex, options: RelayOptions = {}): Promise<RelayResult> {
  return new Promise((resolve) => {
    let activity = 0;
    let settled = false;
    let error: LadderError | undefined;
    let timer: NodeJS.Timeout | undefined;
    const shared = {
      active: () => void activity++,
      settled: () => settled,
      ended: () => maybeDone(),
      finished: () => maybeDone(),
      failed: (err: Error) => fail(err),
      // A side that closed takes the other with it unless both directions had ended: it closed
      // without ending cleanly, or what the other side still sends towards it has nowhere to go
      // (a Mux.Cool session ended by the peer's End is destroyed while the origin may still send).
      closed: () => (bothEnded() ? maybeDone() : fail(null)),
    };
    const aToB = new Direction(a, b, { ...shared, count: options.onAToB, pace: options.paceAToB });
    const bToA = new Direction(b, a, { ...shared, count: options.onBToA, pace: options.paceBToA });
    const onAbort = (): void => fail(new LadderError('ERR_ABORTED', 'relay aborted'));

    function bothEnded(): boolean {
      return aToB.ended && bToA.ended;
    }

    function maybeDone(): void {
      // Done when both directions have ended and both sides have closed (or been destroyed).
      if (bothEnded() && aToB.sideDone && bToA.sideDone) finish();
    }

    function fail(err: Error | null): void {
      if (settled) return;
      if (err && !error) error = relayError(err);
      a.destroy();
      b.destroy();
      finish();
    }

    function finish(): void {
      if (settled) return;
      settled = true;
      if (timer) clearInterval(timer);
      aToB.detach();
      bToA.detach();
      options.signal?.removeEventListener('abort', onAbort);
      if (!a.destroyed && bothEnded()) a.destroy();
      if (!b.destroyed && bothEnded()) b.destroy();
      const counts = { aToB: aToB.bytes, bToA: bToA.bytes };
      resolve(error ? { ...counts, error } : counts);
    }

    if (options.idleTimeoutMs && options.idleTimeoutMs > 0) {
      const ms = options.idleTimeoutMs;
      timer = idleWatch(
        ms,
        () => activity,
        () => fail(new LadderError('ERR_IDLE_TIMEOUT', `no data for ${ms} ms`)),
      );
    }
    if (options.signal?.aborted) return onAbort();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    aToB.attach();
    bToA.attach();
    // A side destroyed before we were called will never emit 'close' again: finish now.
    if (a.destroyed || b.destroyed) return fail(null);
    if (a.readableEnded) aToB.onEnd();
    if (b.readableEnded) bToA.onEnd();
  });
}

/**
 * Write batching for one direction: call the returned function before each write to `dest`. The
 * first chunk of a turn goes at once; from the second on, `dest` is corked until the turn's I/O is
 * done (setImmediate), and the function returns true while it is (the write's `false` is judged
 * then instead: `onFull` when `dest` is over its high-water mark once uncorked).
 */
function turnBatcher(dest: Duplex, onFull: () => void): () => boolean {
  let chunks = 0;
  let corked = false;
  const endTurn = (): void => {
    chunks = 0;
    if (!corked) return;
    corked = false;
    dest.uncork();
    if (dest.writableNeedDrain) onFull();
  };
  return () => {
    if (chunks++ === 0) setImmediate(endTurn);
    else if (!corked) {
      corked = true;
      dest.cork();
    }
    return corked;
  };
}

function noop(): void {}
