/**
 * Mux.Cool sessions sharing a few connections, as v2ray-core's client shares them
 * (common/mux/client.go: `IncrementalWorkerPicker`, `ClientWorker.IsFull`, `monitor`): a new
 * session goes on the first open connection that has room, at most `concurrency` sessions at once
 * on each and 128 in a connection's life; when none has room a new connection is opened. A
 * connection with no session is closed after 16 s. So most new sessions skip the TCP and TLS (and
 * WebSocket upgrade) round trips and the handshake's CPU.
 *
 * With `connections` above 1 (not v2ray's way), concurrent sessions are spread: a new session goes
 * on the open connection with the fewest sessions. The pool opens all of them together, ahead: when
 * a session finds no connection at all (a cold start, where a page's burst of requests comes one
 * round trip later, after its document), it goes on the first and the others open beside it; and
 * when every open connection is busy and there are fewer than `connections` (one failed or was
 * spent), one more is opened for the sessions after it. No session waits for a handshake while a
 * connection is open. On a lossy path a loss then stalls only the sessions of one connection
 * instead of all (docs/benchmarks.md, "Path benchmark").
 *
 * A session counts as load only until its application is done with it (its End has left):
 * Mux.Cool has no half-close, so it carries nothing more, though it stays open for the peer's End,
 * a round trip. Counted until then, sessions one after another (a request per connection, as curl
 * makes them, or a page's document right after the last request) would look concurrent on a long
 * path: they would open connections ahead and go on them, cold, instead of on the warm one.
 *
 * What a connection is depends on the transport: a WebSocket that carries Mux.Cool directly
 * (v2ray-plugin), or a TLS connection (or WebSocket) whose Trojan request names v1.mux.cool
 * (v2ray's trojan outbound with `mux` enabled). The pool only needs a function that opens one.
 *
 * A connection that dies takes its sessions with it (each is destroyed with ERR_MUX_COOL) and
 * leaves the pool at once, so the next session opens a fresh one; a connection that cannot be
 * opened rejects the session that asked for it, with the connecting error (a SOCKS front end turns
 * it into the proper reply).
 * @module
 */
import type { Duplex } from 'node:stream';
import { debuglog } from 'node:util';
import { MUX_NETWORK, type MuxNetwork } from '../codec/mux-cool.js';
import { MuxCool, type MuxSession } from '../stream/mux-cool.js';
import { DialError } from '../errors.js';
import type { Target } from './types.js';

const debug = debuglog('ladder:mux');

/** v2ray-core 4.34 app/proxyman/outbound/handler.go: `MaxConnection: 128` sessions in a connection's life. */
export const MUX_SESSIONS_PER_CONNECTION = 128;
/** v2ray-core's client closes a connection without sessions at its next 16 s tick (16 to 32 s). */
export const MUX_IDLE_MS = 16_000;
/** Connections concurrent sessions are spread over unless `connections` says otherwise (v2ray's one). */
export const MUX_CONNECTIONS = 1;
/**
 * Connections a Trojan key's Mux.Cool sessions are spread over by default (trojan-dialer.ts): a
 * page's requests then share three connections' loss recovery instead of one's, well under the
 * six connections to one server that connection-count policing tolerates (docs/benchmarks.md,
 * "Path benchmark").
 */
export const TROJAN_MUX_CONNECTIONS = 3;

export interface MuxPoolOptions {
  /** Opens one connection for Mux.Cool frames (resolves once frames may be written, or rejects in bounded time). */
  connect(): Promise<Duplex>;
  /** Sessions at once on one connection (v2ray's `concurrency`; v2ray-plugin's `mux`). */
  concurrency: number;
  /** Sessions in one connection's life (default 128, as v2ray). */
  sessionsPerConnection?: number;
  /**
   * Connections to spread concurrent sessions over (default {@link MUX_CONNECTIONS}): a session
   * that finds every open connection busy opens one more ahead, up to this many. More are opened
   * only when these have no room (`concurrency`).
   */
  connections?: number;
  /** Close a connection that has had no session for this long (default 16 s). */
  idleMs?: number;
  /**
   * A session whose application has written nothing for this long sends its New frame alone, so
   * that a server-speaks-first protocol gets its connection (default: never; the New leaves with
   * the first data).
   */
  announceAfterMs?: number;
  /** The connections are TCP or TLS sockets: frame buffers can be reused (MuxCoolOptions.reuseFrames). */
  reuseFrames?: boolean;
  /** Pad each session's first frames (MuxCoolOptions.padding; default true). */
  padding?: boolean;
}

interface Entry {
  /** Set once the connection is open. */
  conn: Duplex | null;
  mux: MuxCool | null;
  /** Resolves when the connection is open; rejects with the connecting error. */
  ready: Promise<void>;
  /** Sessions opened or promised to callers waiting for the connection. */
  opened: number;
  /** Sessions live or promised (what `concurrency` caps). */
  active: number;
  /** Of those, the ones whose application side is still open: the load that spreading weighs. */
  busy: number;
}

export class MuxPool {
  readonly #o: MuxPoolOptions;
  readonly #entries = new Set<Entry>();
  readonly #concurrency: number;
  readonly #perConnection: number;
  readonly #spread: number;

  constructor(options: MuxPoolOptions) {
    this.#o = options;
    this.#concurrency = Math.max(1, Math.floor(options.concurrency));
    this.#perConnection = options.sessionsPerConnection ?? MUX_SESSIONS_PER_CONNECTION;
    this.#spread = Math.max(1, Math.floor(options.connections ?? MUX_CONNECTIONS));
  }

  /** Connections open or opening now (for tests and reports). */
  get connections(): number {
    return this.#entries.size;
  }

  /**
   * Opens a session to `target` on the connection with room that has the fewest sessions (an open
   * one before one still opening), opening one if none has room. Callers that arrive while a
   * connection is being opened wait for it (up to `concurrency` of them), so a burst opens as few
   * connections as a steady stream would. When the chosen connection is busy and the pool has
   * fewer than `connections`, one more is opened for later sessions.
   */
  async open(
    target: Target,
    signal?: AbortSignal,
    network: MuxNetwork = MUX_NETWORK.TCP,
  ): Promise<MuxSession> {
    let e: Entry | undefined;
    for (const x of this.#entries) if (this.#hasRoom(x) && (!e || fewer(x, e))) e = x;
    if (e && e.busy > 0 && this.#entries.size < this.#spread) this.#connect();
    if (!e) {
      // A cold start: the others open beside this one, for the burst that tends to follow.
      const cold = this.#entries.size === 0;
      e = this.#connect();
      while (cold && this.#entries.size < this.#spread) this.#connect();
    }
    e.opened++;
    e.active++;
    e.busy++;
    // Spent: no new sessions; it closes when its last one ends and it has been idle.
    if (e.opened >= this.#perConnection) this.#entries.delete(e);
    try {
      await untilReady(e.ready, signal);
      if (!this.#usable(e)) throw new DialError('ERR_MUX_COOL', 'the Mux.Cool connection closed');
    } catch (err) {
      e.active--;
      e.busy--;
      throw err;
    }
    return this.#session(e, target, network);
  }

  /**
   * Opens a connection for whoever needs one now and later: no caller's signal stops it (the
   * connect function has its own time limit); each waiter stops waiting on its own signal.
   */
  #connect(): Entry {
    const e: Entry = {
      conn: null,
      mux: null,
      ready: Promise.resolve(),
      opened: 0,
      active: 0,
      busy: 0,
    };
    e.ready = this.#o.connect().then(
      (conn) => {
        e.conn = conn;
        e.mux = new MuxCool(conn, {
          role: 'client',
          idleTimeoutMs: this.#o.idleMs ?? MUX_IDLE_MS,
          reuseFrames: this.#o.reuseFrames ?? false,
          padding: this.#o.padding ?? true,
        });
        debug('new Mux.Cool connection (%d open)', this.#entries.size);
        const drop = (): void => void this.#entries.delete(e);
        conn.on('error', () => conn.destroy());
        conn.once('close', drop);
        conn.once('end', drop);
        conn.once('finish', drop);
        if (!this.#usable(e)) drop();
        // Opened ahead, no session yet: it does not keep the process alive.
        if (e.active === 0) ref(conn, false);
      },
      (err: unknown) => {
        this.#entries.delete(e);
        throw err;
      },
    );
    // Waiters see the error through their own await; this one only keeps it from being unhandled.
    e.ready.catch(() => {});
    this.#entries.add(e);
    return e;
  }

  #usable(e: Entry): boolean {
    const c = e.conn;
    return c !== null && !c.destroyed && !c.readableEnded && c.writable;
  }

  #hasRoom(e: Entry): boolean {
    return (
      e.active < this.#concurrency &&
      e.opened < this.#perConnection &&
      (e.conn === null || this.#usable(e))
    );
  }

  #session(e: Entry, target: Target, network: MuxNetwork): MuxSession {
    const conn = e.conn!;
    const mux = e.mux!;
    let s: MuxSession;
    try {
      s = mux.open(target, network);
    } catch (err) {
      e.active--;
      e.busy--;
      throw err;
    }
    // A connection kept for later sessions does not keep the process alive (a client can exit).
    ref(conn, true);
    let done = false;
    const idle = (): void => {
      if (done) return;
      done = true;
      e.busy--;
    };
    s.once('finish', idle);
    s.once('close', () => {
      idle();
      e.active--;
      if (mux.sessions === 0) ref(conn, false);
    });
    const wait = this.#o.announceAfterMs;
    if (wait !== undefined) {
      const t = setTimeout(() => s.announce(), wait);
      t.unref();
      s.once('close', () => clearTimeout(t));
    }
    return s;
  }
}

/**
 * Whether `a` is the better home for a new session: open before opening, then fewer busy sessions
 * (on a tie the one found first, the older: its congestion window has grown).
 */
function fewer(a: Entry, b: Entry): boolean {
  const aOpen = a.conn !== null;
  const bOpen = b.conn !== null;
  if (aOpen !== bOpen) return aOpen;
  return a.busy < b.busy;
}

/** `ready`, or ERR_ABORTED as soon as `signal` aborts. */
function untilReady(ready: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return ready;
  const abortError = (): DialError => new DialError('ERR_ABORTED', 'aborted');
  if (signal.aborted) return Promise.reject(abortError());
  return new Promise((resolve, reject) => {
    const fail = (): void => reject(abortError());
    signal.addEventListener('abort', fail, { once: true });
    ready.then(
      () => {
        signal.removeEventListener('abort', fail);
        resolve();
      },
      (err: unknown) => {
        signal.removeEventListener('abort', fail);
        reject(err as Error);
      },
    );
  });
}

/** ref()/unref() where the connection has them (a socket, a TLS socket, a WebSocket stream). */
function ref(conn: Duplex, on: boolean): void {
  const c = conn as Partial<{ ref(): void; unref(): void }>;
  if (on) c.ref?.();
  else c.unref?.();
}
