/**
 * A cap on the connections a dialer holds open at once: the answer to connection-count policing
 * (Russia's home ISPs since 2025-11 cut a client that holds more than about 6 TLS connections to
 * one server, n4p#546; Xray advises at most 6, XTLS/Xray-core#5332). With a per-server dialer
 * wrapped in it, the client never opens more than `max` connections to that server: a dial beyond
 * the cap waits, in order, until a stream it handed out closes.
 *
 * Waiting costs a local application time, never a failure: a browser's seventh parallel request
 * starts when one of the first six ends. The wait is bounded by the caller's AbortSignal (the front
 * end's connect deadline), and the queue by `maxWaiting`: beyond it a dial fails at once.
 * @module
 */
import type { Duplex } from 'node:stream';
import { DialError } from '../errors.js';
import type { LendingStream, StreamDialer, Target } from './types.js';

export interface CappedDialerOptions {
  /** Streams open at once (1 or more). */
  readonly max: number;
  /** Dials waiting for a slot before more fail at once (default 1024). */
  readonly maxWaiting?: number;
  /**
   * What holds a slot: each stream until it closes (default), or each dial until it is done, so
   * that only that many handshakes run at once ({@link handshakeCapped}).
   */
  readonly holds?: 'stream' | 'dial';
  /** The cap as an error names it (default: the per-server connection cap's flag). */
  readonly what?: string;
}

interface Waiter {
  readonly grant: () => void;
}

export class CappedDialer implements StreamDialer {
  readonly #inner: StreamDialer;
  readonly #max: number;
  readonly #maxWaiting: number;
  readonly #holds: 'stream' | 'dial';
  readonly #what: string;
  #open = 0;
  readonly #queue = new Set<Waiter>();

  constructor(inner: StreamDialer, o: CappedDialerOptions) {
    if (!Number.isInteger(o.max) || o.max < 1)
      throw new RangeError(`connection cap ${o.max}: must be a whole number, 1 or more`);
    this.#inner = inner;
    this.#max = o.max;
    this.#maxWaiting = o.maxWaiting ?? 1024;
    this.#holds = o.holds ?? 'stream';
    this.#what = o.what ?? 'connections this server is capped at (--max-connections-per-server)';
  }

  /** Streams open now (each holds a slot until it closes). */
  get open(): number {
    return this.#open;
  }

  /** Dials waiting for a slot now. */
  get waiting(): number {
    return this.#queue.size;
  }

  async dial(target: Target, signal?: AbortSignal): Promise<Duplex | LendingStream> {
    await this.#slot(signal);
    return this.#dialHolding(this.#inner.dial(target, signal));
  }

  /**
   * A dial only if a slot is free now and nobody waits for one (here and in any cap inside):
   * null otherwise, and nothing is opened. For connections opened ahead (preconnect.ts), which
   * must never hold back a dial someone waits for.
   */
  dialIfRoom(target: Target, signal?: AbortSignal): Promise<Duplex | LendingStream> | null {
    if (signal?.aborted || this.#open >= this.#max || this.#queue.size > 0) return null;
    this.#open++;
    const inner = dialIfRoom(this.#inner, target, signal);
    if (inner === null) {
      this.#release();
      return null;
    }
    return this.#dialHolding(inner);
  }

  /** The dial under way with a slot held: the slot goes with the stream, or back on a failure. */
  async #dialHolding(dialing: Promise<Duplex | LendingStream>): Promise<Duplex | LendingStream> {
    let stream: Duplex | LendingStream;
    try {
      stream = await dialing;
    } catch (err) {
      this.#release();
      throw err;
    }
    if (this.#holds === 'dial') {
      this.#release();
      return stream;
    }
    let held = true;
    const release = (): void => {
      if (!held) return;
      held = false;
      this.#release();
    };
    stream.once('close', release);
    if (stream.destroyed) release();
    return stream;
  }

  /** Resolves once this dial holds a slot. */
  #slot(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(aborted(signal));
    if (this.#open < this.#max && this.#queue.size === 0) {
      this.#open++;
      return Promise.resolve();
    }
    if (this.#queue.size >= this.#maxWaiting)
      return Promise.reject(
        new DialError(
          'ERR_DIAL',
          `${this.#queue.size} connections already wait for one of the ${this.#max} ${this.#what}`,
        ),
      );
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.#queue.delete(w);
        reject(aborted(signal!));
      };
      const w: Waiter = {
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      this.#queue.add(w);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** A slot came free: the first waiter takes it, or it is given back. */
  #release(): void {
    const next = this.#queue.values().next();
    if (next.done) {
      this.#open--;
      return;
    }
    this.#queue.delete(next.value);
    next.value.grant();
  }
}

/**
 * `d.dial(...)`, or, when `d` is a CappedDialer, a dial only if every cap has room at once (null
 * when one has none: see {@link CappedDialer.dialIfRoom}).
 */
export function dialIfRoom(
  d: StreamDialer,
  target: Target,
  signal?: AbortSignal,
): Promise<Duplex | LendingStream> | null {
  return d instanceof CappedDialer ? d.dialIfRoom(target, signal) : d.dial(target, signal);
}

function aborted(signal: AbortSignal): DialError {
  return new DialError(
    'ERR_ABORTED',
    'the dial was cancelled while it waited for a connection slot',
    {
      cause: signal.reason,
    },
  );
}

/**
 * TLS handshakes to one server at once, from one client. Hundreds of dials started together (a
 * browser's burst, a download manager) otherwise run their handshakes side by side on one busy
 * CPU and finish together, late, so that all of them can meet the dial deadline at once; in
 * turns, the first finish early and later ones wait their turn within the same deadline.
 */
export const CLIENT_HANDSHAKES_AT_ONCE = 16;

/** `d` with at most {@link CLIENT_HANDSHAKES_AT_ONCE} of its dials under way at once. */
export function handshakeCapped(d: StreamDialer): CappedDialer {
  return new CappedDialer(d, {
    max: CLIENT_HANDSHAKES_AT_ONCE,
    holds: 'dial',
    what: 'TLS handshakes this client runs at once',
  });
}
