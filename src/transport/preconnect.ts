/**
 * Connections opened ahead, as a browser preconnects: for a dialer whose every stream is a fresh
 * TLS (or WebSocket) connection, the next request's TCP and TLS handshakes run while the current
 * request is under way, so that the next dial finds a connection ready and its request leaves at
 * once (one round trip to the first byte instead of three on a long path).
 *
 * The rules, each for a reason:
 * - **Only after use.** A connection is opened ahead only once a dial's connection has brought the
 *   server's answer, never on a timer: an idle client opens nothing, so a censor sees no stream of
 *   empty TLS connections from it, and a transport whose dials fail or whose server never answers
 *   (blocked) opens nothing ahead. Waiting for the answer also keeps the next handshake's CPU off
 *   the request's own path, on the client and on the server.
 * - **Few, and short-lived.** At most `max` per server (default 1), each closed (not replaced)
 *   `idleMs` after it started opening if no dial took it. The bound is measured from the start of
 *   the open, so that the request reaches the server within that time of the server's accept.
 * - **Within every cap.** The connection is opened through the same caps as a dial
 *   (capped-dialer.ts), but only if each has room at once: it holds a per-server slot while it
 *   exists and a handshake slot while it handshakes, and never makes a dial wait. A dial takes a
 *   ready connection, or the one being opened, before it asks the caps for a slot.
 * - **Never a dead one.** One that ends, closes or fails while it waits is dropped; a dial that
 *   took one being opened falls back to a fresh connection if that open fails.
 * - **Nothing left behind.** `close()` closes every one and opens none after; one waiting does not
 *   keep the process alive.
 * @module
 */
import type { Duplex } from 'node:stream';
import { debuglog } from 'node:util';
import { systemTimers, type Timers } from '../core/clock.js';

const debug = debuglog('ladder:preconnect');

/**
 * How long a connection opened ahead may wait for a dial, from the start of its open. Below
 * every server's wait for the first request after accept: v2ray's and Xray's default handshake
 * policy is 4 s (their Trojan and VLESS inbounds close a connection without a request by then);
 * Ladder's Trojan server waits 30 s, nginx 60 s for a WebSocket upgrade's head, trojan-gfw has no
 * such limit. 3 s leaves the request a second of path delay within Xray's 4 s.
 */
export const PRECONNECT_IDLE_MS = 3_000;

/** Connections opened ahead per server at once. */
export const PRECONNECT_MAX = 1;

/** Opens one connection to the server (through the dialer's caps). */
export type Opener = (signal?: AbortSignal) => Promise<Duplex>;

export interface PreconnectOptions {
  /**
   * Opens a connection only if every cap has room now (capped-dialer.ts `dialIfRoom`); null
   * opens nothing.
   */
  openIfRoom(signal: AbortSignal): Promise<Duplex> | null;
  /** See {@link PRECONNECT_IDLE_MS}. */
  idleMs?: number;
  /** See {@link PRECONNECT_MAX}. */
  max?: number;
  timers?: Timers;
}

/** One connection opened ahead: being opened (`conn` null) or ready. */
interface Ahead {
  conn: Duplex | null;
  /** A dial took it (while it was being opened, or ready). */
  claimed: boolean;
  /** The connection once open, or null if its open failed or it was dropped meanwhile. */
  readonly ready: Promise<Duplex | null>;
  timer: unknown;
  /** Its own listeners, removed when a dial takes it. */
  unwatch: () => void;
}

/** Dials that neither take nor leave a connection opened ahead (failover's measurements). */
const coldSignals = new WeakSet<AbortSignal>();

/**
 * Dials under `signal` take no connection opened ahead and open none: a dial that only measures a
 * transport (failover.ts) uses its own fresh connection and then closes it unused.
 */
export function openNothingAhead(signal: AbortSignal): void {
  coldSignals.add(signal);
}

/** The connections a dial took from a {@link Preconnect} (its time to connect was not its own). */
const takenAhead = new WeakSet<Duplex>();

/** Whether `conn` (or the socket a stream wraps) was opened ahead of the dial that returned it. */
export function wasOpenedAhead(conn: Duplex): boolean {
  const inner = (conn as { socket?: unknown }).socket;
  return takenAhead.has(conn) || (inner instanceof Object && takenAhead.has(inner as Duplex));
}

export class Preconnect {
  readonly #open: Opener;
  readonly #openIfRoom: (signal: AbortSignal) => Promise<Duplex> | null;
  readonly #idleMs: number;
  readonly #max: number;
  readonly #timers: Timers;
  readonly #ahead = new Set<Ahead>();
  readonly #stop = new AbortController();

  /** `open` opens a connection for a dial, waiting for the caps as a dial does. */
  constructor(open: Opener, o: PreconnectOptions) {
    this.#open = open;
    this.#openIfRoom = o.openIfRoom;
    this.#idleMs = o.idleMs ?? PRECONNECT_IDLE_MS;
    this.#max = o.max ?? PRECONNECT_MAX;
    this.#timers = o.timers ?? systemTimers;
  }

  /** Connections opened ahead now, ready or being opened. */
  get ahead(): number {
    return this.#ahead.size;
  }

  /**
   * A connection for a dial: one opened ahead if one is ready or being opened (the oldest), else
   * a fresh one; then, once the server has answered on it, one more is opened ahead.
   */
  async open(signal?: AbortSignal): Promise<Duplex> {
    if (signal && coldSignals.has(signal)) return this.#open(signal);
    const conn = (await this.#take(signal)) ?? (await this.#open(signal));
    afterFirstAnswer(conn, () => this.#openAhead());
    return conn;
  }

  /**
   * Closes every connection opened ahead; none is opened after. Dials still work (each opens
   * its own connection).
   */
  close(): void {
    this.#stop.abort();
    this.drop();
  }

  /** Closes the connections opened ahead now (a transport found blocked); later dials may open more. */
  drop(): void {
    for (const a of [...this.#ahead]) this.#discard(a, 'dropped');
  }

  /** The oldest connection opened ahead that is alive, or null; waits for one being opened. */
  async #take(signal?: AbortSignal): Promise<Duplex | null> {
    for (;;) {
      const next = this.#ahead.values().next();
      if (next.done) return null;
      const a = next.value;
      this.#ahead.delete(a);
      this.#timers.clearTimeout(a.timer);
      a.unwatch();
      a.claimed = true;
      const ready = a.conn !== null;
      const conn = a.conn ?? (await claimed(a.ready, signal));
      if (conn && alive(conn)) {
        ref(conn, true);
        takenAhead.add(conn);
        debug('a dial took a connection opened ahead (%s)', ready ? 'ready' : 'being opened');
        return conn;
      }
      conn?.destroy();
      if (signal?.aborted) return null;
    }
  }

  /** Opens one connection ahead if there is room for one under `max` and the caps. */
  #openAhead(): void {
    if (this.#stop.signal.aborted || this.#ahead.size >= this.#max) return;
    const opening = this.#openIfRoom(this.#stop.signal);
    if (opening === null) return;
    const a: Ahead = {
      conn: null,
      claimed: false,
      ready: opening.then(
        (conn) => {
          if (a.claimed) return conn; // a dial waits for this one
          if (!this.#ahead.has(a)) {
            // dropped, closed or past its time while it opened
            conn.destroy();
            return null;
          }
          if (!alive(conn)) {
            this.#discard(a, 'closed while opening');
            conn.destroy();
            return null;
          }
          a.conn = conn;
          a.unwatch = watch(conn, () => this.#discard(a, 'closed by the server'));
          // Waiting for a dial does not keep the process alive.
          ref(conn, false);
          return conn;
        },
        (err: unknown) => {
          debug('opening ahead failed: %s', (err as Error).message);
          this.#discard(a, 'failed');
          return null;
        },
      ),
      timer: null,
      unwatch: () => {},
    };
    a.timer = this.#timers.setTimeout(() => this.#discard(a, 'unused'), this.#idleMs);
    this.#ahead.add(a);
  }

  /** Forgets `a` and closes its connection, if it has one yet (one still opening closes when open). */
  #discard(a: Ahead, why: string): void {
    if (!this.#ahead.delete(a)) return;
    this.#timers.clearTimeout(a.timer);
    a.unwatch();
    debug('connection opened ahead closed: %s', why);
    a.conn?.destroy();
  }
}

/**
 * The connection being opened that a dial claimed, or null as soon as the dial's `signal` aborts;
 * one that opens after that is closed.
 */
function claimed(ready: Promise<Duplex | null>, signal?: AbortSignal): Promise<Duplex | null> {
  return new Promise((resolve) => {
    let done = false;
    const onAbort = (): void => {
      done = true;
      resolve(null);
    };
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    void ready.then((conn) => {
      signal?.removeEventListener('abort', onAbort);
      if (done) conn?.destroy();
      else resolve(conn);
    });
  });
}

/**
 * Calls `then` on the turn after the first bytes from the server arrive on `conn` (its readable
 * side's first push; a 'data' listener would start the stream flowing before its reader is
 * there). The request went out and was answered before the next connection's handshake takes the
 * CPU and the server's attention, and a transport whose server never answers (blocked: a flow
 * dropped after its first packet) opens nothing ahead.
 */
function afterFirstAnswer(conn: Duplex, then: () => void): void {
  const push = conn.push;
  conn.push = function (this: Duplex, ...args: Parameters<Duplex['push']>): boolean {
    conn.push = push;
    if (args[0] !== null) setImmediate(then);
    return push.apply(this, args);
  } as Duplex['push'];
}

/**
 * Whether a connection can still carry a request. A server's end that arrived while nobody read
 * emits no 'end' (a paused stream emits it only once read), so the readable state's own flag is
 * read too.
 */
function alive(conn: Duplex): boolean {
  const ended = (conn as { _readableState?: { ended?: boolean } })._readableState?.ended === true;
  return !conn.destroyed && !conn.readableEnded && !ended && conn.writable;
}

/**
 * Calls `dead` when `conn` ends, closes or fails while it waits: the server may close an idle
 * connection at any time. No 'data' listener: that would start the stream flowing with nobody to
 * read it.
 */
function watch(conn: Duplex, dead: () => void): () => void {
  const onError = (): void => dead();
  conn.on('error', onError);
  conn.once('end', dead);
  conn.once('close', dead);
  return () => {
    conn.off('error', onError);
    conn.off('end', dead);
    conn.off('close', dead);
  };
}

/** ref()/unref() where the connection has them (a socket, a TLS socket, a WebSocket stream). */
function ref(conn: Duplex, on: boolean): void {
  const c = conn as Partial<{ ref(): void; unref(): void }>;
  if (on) c.ref?.();
  else c.unref?.();
}
