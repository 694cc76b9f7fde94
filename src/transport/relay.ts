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

export function relay(a: Duplex, b: Duplex, options: RelayOptions = {}): Promise<RelayResult> {
  return new Promise((resolve) => {
    let aToB = 0;
    let bToA = 0;
    let activity = 0;
    let lastSeenActivity = -1;
    let aEnded = false;
    let bEnded = false;
    let settled = false;
    let closedA = false;
    let closedB = false;
    let error: LadderError | undefined;
    const { onAToB, onBToA, paceAToB, paceBToA } = options;
    // Why each source is paused: waiting for the other side to drain, or for its pace timer.
    let drainA = false;
    let drainB = false;
    let paceA: NodeJS.Timeout | undefined;
    let paceB: NodeJS.Timeout | undefined;
    const resumeA = (): void => {
      paceA = undefined;
      if (!drainA && !settled) a.resume();
    };
    const resumeB = (): void => {
      paceB = undefined;
      if (!drainB && !settled) b.resume();
    };

    // Write batching (see the module comment), for sources that do not lend their chunks. A batch
    // that leaves the destination over its high-water mark holds the source until 'drain'.
    const batchToB = lendsChunks(a)
      ? null
      : turnBatcher(b, () => {
          if (settled || drainA) return;
          drainA = true;
          a.pause();
        });
    const batchToA = lendsChunks(b)
      ? null
      : turnBatcher(a, () => {
          if (settled || drainB) return;
          drainB = true;
          b.pause();
        });

    // Chunks may be borrowed (stream/recycled-reads.ts): when the destination keeps one queued,
    // the source is told to leave that memory alone.
    // A lent chunk (core/lent-read.ts) is valid in this handler only: held below if b keeps it.
    const onDataA = (chunk: Buffer | LentChunk): void => {
      aToB += chunk.length;
      activity++;
      onAToB?.(chunk.length);
      const wait = paceAToB?.(chunk.length);
      const corked = batchToB !== null && batchToB();
      const ok = b.write(chunk) || corked;
      if (keepsWrites(b)) holdChunks(a);
      if (!ok) {
        drainA = true;
        a.pause();
      }
      if (wait && wait > 0 && !paceA) {
        a.pause();
        paceA = setTimeout(resumeA, wait);
      }
    };
    const onDataB = (chunk: Buffer | LentChunk): void => {
      bToA += chunk.length;
      activity++;
      onBToA?.(chunk.length);
      const wait = paceBToA?.(chunk.length);
      const corked = batchToA !== null && batchToA();
      const ok = a.write(chunk) || corked;
      if (keepsWrites(a)) holdChunks(b);
      if (!ok) {
        drainB = true;
        b.pause();
      }
      if (wait && wait > 0 && !paceB) {
        b.pause();
        paceB = setTimeout(resumeB, wait);
      }
    };
    const onDrainB = (): void => {
      drainA = false;
      if (!paceA) a.resume();
    };
    const onDrainA = (): void => {
      drainB = false;
      if (!paceB) b.resume();
    };
    const onEndA = (): void => {
      aEnded = true;
      b.end();
      maybeDone();
    };
    const onEndB = (): void => {
      bEnded = true;
      a.end();
      maybeDone();
    };
    const onErrorA = (err: Error): void => fail(err);
    const onErrorB = (err: Error): void => fail(err);
    const onCloseA = (): void => {
      closedA = true;
      // A side that closed without ending cleanly takes the other with it.
      if (!aEnded) fail(null);
      else maybeDone();
    };
    const onCloseB = (): void => {
      closedB = true;
      if (!bEnded) fail(null);
      else maybeDone();
    };
    const onAbort = (): void => fail(new LadderError('ERR_ABORTED', 'relay aborted'));

    function maybeDone(): void {
      // Done when both directions have ended and both sides have closed (or been destroyed).
      if (aEnded && bEnded) {
        if (
          (closedA || a.destroyed || a.writableFinished) &&
          (closedB || b.destroyed || b.writableFinished)
        )
          finish();
      }
    }
    const onFinish = (): void => maybeDone();

    function fail(err: Error | null): void {
      if (settled) return;
      if (err && !error) {
        error =
          err instanceof LadderError
            ? err
            : new LadderError('ERR_DIAL', err.message, { cause: err });
      }
      a.destroy();
      b.destroy();
      finish();
    }

    let timer: NodeJS.Timeout | undefined;
    if (options.idleTimeoutMs && options.idleTimeoutMs > 0) {
      const period = Math.max(100, Math.floor(options.idleTimeoutMs / 4));
      let idleSince = Date.now();
      timer = setInterval(() => {
        if (activity !== lastSeenActivity) {
          lastSeenActivity = activity;
          idleSince = Date.now();
          return;
        }
        if (Date.now() - idleSince >= options.idleTimeoutMs!) {
          fail(new LadderError('ERR_IDLE_TIMEOUT', `no data for ${options.idleTimeoutMs} ms`));
        }
      }, period);
      timer.unref();
    }

    function finish(): void {
      if (settled) return;
      settled = true;
      if (timer) clearInterval(timer);
      if (paceA) clearTimeout(paceA);
      if (paceB) clearTimeout(paceB);
      a.off('data', onDataA);
      b.off('data', onDataB);
      a.off('drain', onDrainA);
      b.off('drain', onDrainB);
      a.off('end', onEndA);
      b.off('end', onEndB);
      a.off('error', onErrorA);
      b.off('error', onErrorB);
      a.off('close', onCloseA);
      b.off('close', onCloseB);
      a.off('finish', onFinish);
      b.off('finish', onFinish);
      options.signal?.removeEventListener('abort', onAbort);
      // Errors that arrive after the relay is over are expected (late resets) and not ours to report.
      a.on('error', noop);
      b.on('error', noop);
      if (!a.destroyed && aEnded && bEnded) a.destroy();
      if (!b.destroyed && aEnded && bEnded) b.destroy();
      resolve(error ? { aToB, bToA, error } : { aToB, bToA });
    }

    if (options.signal?.aborted) {
      fail(new LadderError('ERR_ABORTED', 'relay aborted'));
      return;
    }
    options.signal?.addEventListener('abort', onAbort, { once: true });
    a.on('data', onDataA);
    b.on('data', onDataB);
    a.on('drain', onDrainA);
    b.on('drain', onDrainB);
    a.on('end', onEndA);
    b.on('end', onEndB);
    a.on('error', onErrorA);
    b.on('error', onErrorB);
    a.on('close', onCloseA);
    b.on('close', onCloseB);
    a.on('finish', onFinish);
    b.on('finish', onFinish);
    // A side destroyed before we were called will never emit 'close' again: finish now.
    if (a.destroyed || b.destroyed) return fail(null);
    if (a.readableEnded) onEndA();
    if (b.readableEnded) onEndB();
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
