/**
 * Failover across the transports of a `ladder://` key (or across servers): the client dials
 * with the transport that worked last and moves down the list when one fails, as a user would by
 * hand, but at once.
 *
 * A transport is marked down for `cooldownMs` when:
 * - its dial fails (the server is unreachable, the TLS handshake was reset, ...); the same request is
 *   then tried on the next transport, so the user sees no failure while one transport still works;
 * - it goes silent: a connection that sent bytes and was closed without receiving any. The fully
 *   encrypted traffic detector (FET) drops a flow silently after its first data packet, and a Shadowsocks
 *   server answers a refused key the same way. One such close can also be an ordinary target that
 *   sent nothing, so it takes `silentLimit` of them in a row, counted on the wire.
 *
 * Nothing is retried in a loop: each request tries each transport at most once.
 *
 * Speed: with several servers (a fleet's `ladder://` key), the client should use the fastest that
 * works. Every dial's connect time (until the transport hands back a stream: TCP connect, plus the
 * TLS handshake for TLS transports) is kept as a moving average per transport. Transports not yet
 * measured, or measured longer ago than `remeasureMs`, are measured alongside a real dial: the same
 * target is dialled through them too and the stream closed unused. New connections then use the
 * fastest transport that is not cooling down, switching only when another is clearly faster
 * (`switchRatio`), so two close servers do not flap.
 *
 * Rotation (`rotateAfterBytes`): against a censor that bans a server address once it has carried a
 * volume of traffic (Turkmenistan, net4people/bbs#523), new connections move to the key's next
 * transport (key order, skipping those cooling down) once the current one has carried this many
 * bytes on the wire, both ways, since it became current. With transports on different addresses,
 * each address carries about this much per turn; connections already open stay where they are, so
 * the figure must leave room below the ban for the largest transfer one connection makes. Rotation
 * decides the order then: the speed measurements no longer move new connections.
 * @module
 */
import { DEFAULT_CONNECT_TIMEOUT_MS } from '../core/defaults.js';
import type { Duplex } from 'node:stream';
import { debuglog } from 'node:util';
import { AuthError, CodecError, DialError, LadderError } from '../errors.js';
import type { PacketDialer, PacketSession, StreamDialer, Target } from './types.js';
import { signalWithin } from './deadline.js';
import { openNothingAhead, wasOpenedAhead } from './preconnect.js';

const debug = debuglog('ladder:failover');

export interface FailoverEntry {
  /** What the user is told, e.g. "trojan over TLS to 198.18.0.1:443". */
  readonly name: string;
  readonly stream: StreamDialer;
  readonly packet?: PacketDialer;
  /** What its dialers opened ahead (preconnect.ts): closed when the transport is marked down. */
  readonly ahead?: { drop(): void };
}

export interface FailoverOptions {
  /** How long a failed transport is passed over (default 60 s). */
  cooldownMs?: number;
  /** Silent closes in a row that count as a failure (default 2). */
  silentLimit?: number;
  now?: () => number;
  /** Measure each transport again after this long (default 10 min); 0 turns measuring off. */
  remeasureMs?: number;
  /** Switch to a faster transport when its connect time is below this share of the current one's (default 0.7). */
  switchRatio?: number;
  /** Move new connections to the next transport after the current one carried this many bytes. */
  rotateAfterBytes?: number;
  /** Told when the transport in use changes. */
  onSwitch?: (to: string, why: string) => void;
}

interface State {
  readonly e: FailoverEntry;
  downUntil: number;
  silent: number;
  /** Moving average of the connect time (ms), or null before the first success. */
  connectMs: number | null;
  measuredAt: number;
  failures: number;
  /** Bytes on the wire of this transport's closed connections. */
  carried: number;
  /** Its connections still open (their bytes are read when needed). */
  readonly open: Set<Duplex>;
  /** `#volume()` when it last became current: rotation counts from there. */
  volumeAtUse: number;
}

/** What the client knows of one transport (`ladder client` logs it; tests read it). */
export interface TransportStats {
  readonly name: string;
  readonly connectMs: number | null;
  readonly failures: number;
  readonly down: boolean;
}

/** Weight of the newest sample in the connect-time average. */
const EWMA_NEW = 0.3;

/** Bytes on the wire of a dialled stream: ours (CodecDuplex keeps its socket) or a socket's own. */
function wireCounts(s: Duplex): { read: number; written: number } | null {
  const sock = (s as { socket?: { bytesRead?: number; bytesWritten?: number } }).socket ?? s;
  const r = (sock as { bytesRead?: number }).bytesRead;
  const w = (sock as { bytesWritten?: number }).bytesWritten;
  return typeof r === 'number' && typeof w === 'number' ? { read: r, written: w } : null;
}

export class FailoverDialer implements StreamDialer, PacketDialer {
  readonly #states: State[];
  readonly #o: Required<Omit<FailoverOptions, 'onSwitch' | 'rotateAfterBytes'>> &
    Pick<FailoverOptions, 'onSwitch' | 'rotateAfterBytes'>;
  #current = 0;

  constructor(entries: readonly FailoverEntry[], options: FailoverOptions = {}) {
    if (entries.length === 0)
      throw new LadderError('ERR_CONFIG', 'failover needs at least one transport');
    this.#states = entries.map((e) => ({
      e,
      downUntil: 0,
      silent: 0,
      connectMs: null,
      measuredAt: 0,
      failures: 0,
      carried: 0,
      open: new Set(),
      volumeAtUse: 0,
    }));
    const rotate = options.rotateAfterBytes;
    if (rotate !== undefined && !(Number.isSafeInteger(rotate) && rotate > 0))
      throw new LadderError('ERR_CONFIG', `rotateAfterBytes ${rotate} must be a positive integer`);
    this.#o = {
      cooldownMs: options.cooldownMs ?? 60_000,
      silentLimit: options.silentLimit ?? 2,
      now: options.now ?? Date.now,
      remeasureMs: options.remeasureMs ?? 600_000,
      switchRatio: options.switchRatio ?? 0.7,
      onSwitch: options.onSwitch,
      rotateAfterBytes: rotate,
    };
  }

  /** The transport new connections use first. */
  get current(): string {
    return this.#states[this.#current]!.e.name;
  }

  /**
   * The preferred transport first, then the others fastest first (unmeasured ones after, in key
   * order from the preferred one); those cooling down go last. With rotation on, key order from
   * the preferred one: rotation moves along the key, whatever the connect times.
   */
  #order(): number[] {
    const now = this.#o.now();
    const n = this.#states.length;
    const idx = this.#states.map((_, i) => (i + this.#current) % n);
    const speed = (i: number): number =>
      i === this.#current ? -1 : (this.#states[i]!.connectMs ?? Number.POSITIVE_INFINITY);
    const up = idx.filter((i) => this.#states[i]!.downUntil <= now);
    if (this.#o.rotateAfterBytes === undefined) up.sort((a, b) => speed(a) - speed(b) || 0);
    return [...up, ...idx.filter((i) => this.#states[i]!.downUntil > now)];
  }

  /** Each transport's connect time and failures, in key order. */
  stats(): TransportStats[] {
    const now = this.#o.now();
    return this.#states.map((s) => ({
      name: s.e.name,
      connectMs: s.connectMs,
      failures: s.failures,
      down: s.downUntil > now,
    }));
  }

  #record(i: number, ms: number): void {
    const s = this.#states[i]!;
    s.connectMs = s.connectMs === null ? ms : s.connectMs * (1 - EWMA_NEW) + ms * EWMA_NEW;
    s.measuredAt = this.#o.now();
  }

  /** Bytes a transport's connections carried on the wire, closed and open, both ways. */
  #volume(s: State): number {
    let v = s.carried;
    for (const c of s.open) {
      const w = wireCounts(c);
      if (w) v += w.read + w.written;
    }
    return v;
  }

  /** With rotation on: the next transport in key order that is up, once the current one carried its share. */
  #rotate(): void {
    const limit = this.#o.rotateAfterBytes;
    if (limit === undefined || this.#states.length < 2) return;
    const cur = this.#states[this.#current]!;
    const carried = this.#volume(cur) - cur.volumeAtUse;
    if (carried < limit) return;
    const now = this.#o.now();
    const n = this.#states.length;
    for (let k = 1; k < n; k++) {
      const i = (this.#current + k) % n;
      if (this.#states[i]!.downUntil > now) continue;
      this.#use(i, `rotation: ${carried} bytes carried by the last`);
      return;
    }
  }

  /** Moves to the fastest transport that is up, if it is clearly faster than the current one. */
  #preferFastest(): void {
    if (this.#o.rotateAfterBytes !== undefined) return; // rotation decides the order
    const now = this.#o.now();
    const cur = this.#states[this.#current]!;
    let best = -1;
    for (let i = 0; i < this.#states.length; i++) {
      const s = this.#states[i]!;
      if (s.downUntil > now || s.connectMs === null) continue;
      if (best < 0 || s.connectMs < this.#states[best]!.connectMs!) best = i;
    }
    if (best < 0 || best === this.#current) return;
    const b = this.#states[best]!.connectMs!;
    if (cur.downUntil > now || cur.connectMs === null || b < cur.connectMs * this.#o.switchRatio)
      this.#use(
        best,
        `faster: connects in ${Math.round(b)} ms${cur.connectMs === null ? '' : ` (was ${Math.round(cur.connectMs)} ms)`}`,
      );
  }

  /** Dials `target` through every other transport due a measurement, timing each, closing each unused. */
  #measureOthers(target: Target, except: number): void {
    if (this.#o.remeasureMs <= 0) return;
    const now = this.#o.now();
    const due = this.#states
      .map((s, i) => ({ s, i }))
      .filter(
        ({ s, i }) =>
          i !== except &&
          s.downUntil <= now &&
          (s.connectMs === null || now - s.measuredAt >= this.#o.remeasureMs),
      );
    if (due.length === 0) return;
    const step = signalWithin(DEFAULT_CONNECT_TIMEOUT_MS, undefined, { unref: true });
    // A measurement times a fresh connection and leaves none opened ahead behind it.
    openNothingAhead(step.signal);
    let left = due.length;
    for (const { s, i } of due) {
      s.measuredAt = now; // one measurement at a time per transport
      const t0 = this.#o.now();
      s.e.stream
        .dial(target, step.signal)
        .then(
          (stream) => {
            this.#record(i, this.#o.now() - t0);
            stream.destroy();
          },
          (err: unknown) => {
            if (step.timedOut()) return;
            s.failures++;
            this.#markDown(i, err instanceof LadderError ? err.code : 'dial failed');
          },
        )
        .finally(() => {
          if (--left === 0) {
            step.clear();
            this.#preferFastest();
          }
        });
    }
  }

  #markDown(i: number, why: string): void {
    const s = this.#states[i]!;
    s.downUntil = this.#o.now() + this.#o.cooldownMs;
    s.silent = 0;
    s.e.ahead?.drop();
    debug('transport %d down: %s', i, why);
    if (i === this.#current) {
      const next = this.#order().find((j) => j !== i);
      if (next !== undefined) this.#use(next, why);
    }
  }

  #use(i: number, why: string): void {
    if (i === this.#current) return;
    this.#current = i;
    const s = this.#states[i]!;
    s.volumeAtUse = this.#volume(s);
    this.#o.onSwitch?.(this.#states[i]!.e.name, why);
  }

  async dial(target: Target, signal?: AbortSignal): Promise<Duplex> {
    let last: unknown;
    this.#rotate();
    for (const i of this.#order()) {
      const s = this.#states[i]!;
      let stream: Duplex;
      const t0 = this.#o.now();
      try {
        stream = await s.e.stream.dial(target, signal);
      } catch (err) {
        if (signal?.aborted || (err instanceof LadderError && err.code === 'ERR_ABORTED'))
          throw err;
        last = err;
        s.failures++;
        this.#markDown(i, err instanceof LadderError ? err.code : 'dial failed');
        continue;
      }
      // A connection opened ahead took no time to connect: not a measure of the transport.
      if (!wasOpenedAhead(stream)) this.#record(i, this.#o.now() - t0);
      this.#use(i, 'it answered');
      this.#watch(stream, i);
      if (this.#states.length > 1) {
        this.#measureOthers(target, i);
        this.#preferFastest();
      }
      return stream;
    }
    if (last instanceof DialError) throw last;
    throw new DialError(
      'ERR_SERVER_UNREACHABLE',
      'no transport of the key could reach the server',
      {
        cause: last,
      },
    );
  }

  /**
   * Counts silent closes of a transport's connections: bytes sent and none received, or only bytes
   * that are not the transport's protocol (an answer that fails authentication: a server that does
   * not know the key answers as the web server it imitates, or a middlebox injects its own reply).
   */
  #watch(stream: Duplex, i: number): void {
    let garbled = false;
    const s = this.#states[i]!;
    if (this.#o.rotateAfterBytes !== undefined) s.open.add(stream);
    stream.on('error', (err) => {
      if (err instanceof AuthError || err instanceof CodecError) garbled = true;
    });
    stream.once('close', () => {
      const c = wireCounts(stream);
      if (s.open.delete(stream) && c) s.carried += c.read + c.written;
      if (!c) return;
      if (c.read > 0 && !garbled) {
        s.silent = 0;
        return;
      }
      if (c.written === 0) return;
      s.silent++;
      if (s.silent >= this.#o.silentLimit) {
        s.failures++;
        this.#markDown(i, `${s.silent} connections in a row closed without an answer`);
      }
    });
  }

  /** UDP goes over the preferred transport that can carry it. */
  open(onPacket: (payload: Buffer, from: Target) => void): PacketSession {
    for (const i of this.#order()) {
      const p = this.#states[i]!.e.packet;
      if (p) return p.open(onPacket);
    }
    throw new DialError('ERR_DIAL', 'no transport of the key carries UDP');
  }
}
