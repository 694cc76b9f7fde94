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
 * @module
 */
import type { Duplex } from 'node:stream';
import { debuglog } from 'node:util';
import { DialError, LadderError } from '../errors.js';
import type { PacketDialer, PacketSession, StreamDialer, Target } from './types.js';

const debug = debuglog('ladder:failover');

export interface FailoverEntry {
  /** What the user is told, e.g. "trojan over TLS to 198.18.0.1:443". */
  readonly name: string;
  readonly stream: StreamDialer;
  readonly packet?: PacketDialer;
}

export interface FailoverOptions {
  /** How long a failed transport is passed over (default 60 s). */
  cooldownMs?: number;
  /** Silent closes in a row that count as a failure (default 2). */
  silentLimit?: number;
  now?: () => number;
  /** Told when the transport in use changes. */
  onSwitch?: (to: string, why: string) => void;
}

interface State {
  readonly e: FailoverEntry;
  downUntil: number;
  silent: number;
}

/** Bytes on the wire of a dialled stream: ours (CodecDuplex keeps its socket) or a socket's own. */
function wireCounts(s: Duplex): { read: number; written: number } | null {
  const sock = (s as { socket?: { bytesRead?: number; bytesWritten?: number } }).socket ?? s;
  const r = (sock as { bytesRead?: number }).bytesRead;
  const w = (sock as { bytesWritten?: number }).bytesWritten;
  return typeof r === 'number' && typeof w === 'number' ? { read: r, written: w } : null;
}

export class FailoverDialer implements StreamDialer, PacketDialer {
  readonly #states: State[];
  readonly #o: Required<Omit<FailoverOptions, 'onSwitch'>> & Pick<FailoverOptions, 'onSwitch'>;
  #current = 0;

  constructor(entries: readonly FailoverEntry[], options: FailoverOptions = {}) {
    if (entries.length === 0)
      throw new LadderError('ERR_CONFIG', 'failover needs at least one transport');
    this.#states = entries.map((e) => ({ e, downUntil: 0, silent: 0 }));
    this.#o = {
      cooldownMs: options.cooldownMs ?? 60_000,
      silentLimit: options.silentLimit ?? 2,
      now: options.now ?? Date.now,
      onSwitch: options.onSwitch,
    };
  }

  /** The transport new connections use first. */
  get current(): string {
    return this.#states[this.#current]!.e.name;
  }

  /** The preferred transport first, then the others in key order; those cooling down go last. */
  #order(): number[] {
    const now = this.#o.now();
    const idx = this.#states.map((_, i) => (i + this.#current) % this.#states.length);
    return [
      ...idx.filter((i) => this.#states[i]!.downUntil <= now),
      ...idx.filter((i) => this.#states[i]!.downUntil > now),
    ];
  }

  #markDown(i: number, why: string): void {
    const s = this.#states[i]!;
    s.downUntil = this.#o.now() + this.#o.cooldownMs;
    s.silent = 0;
    debug('transport %d down: %s', i, why);
    if (i === this.#current) {
      const next = this.#order().find((j) => j !== i);
      if (next !== undefined) this.#use(next, why);
    }
  }

  #use(i: number, why: string): void {
    if (i === this.#current) return;
    this.#current = i;
    this.#o.onSwitch?.(this.#states[i]!.e.name, why);
  }

  async dial(target: Target, signal?: AbortSignal): Promise<Duplex> {
    let last: unknown;
    for (const i of this.#order()) {
      const s = this.#states[i]!;
      let stream: Duplex;
      try {
        stream = await s.e.stream.dial(target, signal);
      } catch (err) {
        if (signal?.aborted || (err instanceof LadderError && err.code === 'ERR_ABORTED'))
          throw err;
        last = err;
        this.#markDown(i, err instanceof LadderError ? err.code : 'dial failed');
        continue;
      }
      this.#use(i, 'it answered');
      this.#watch(stream, i);
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

  /** Counts silent closes (bytes sent, none received) of a transport's connections. */
  #watch(stream: Duplex, i: number): void {
    stream.once('close', () => {
      const c = wireCounts(stream);
      if (!c) return;
      const s = this.#states[i]!;
      if (c.read > 0) {
        s.silent = 0;
        return;
      }
      if (c.written === 0) return;
      s.silent++;
      if (s.silent >= this.#o.silentLimit)
        this.#markDown(i, `${s.silent} connections in a row closed without an answer`);
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
