/**
 * The open connections of a running client, for its local control page and the Clash API: each
 * connection's destination, the routing rule that matched, when it opened, and bytes each way; the
 * totals behind the live up/down rates. Destinations stay in memory only (never logged) and leave the
 * table when the connection closes. A connection can be closed from here (Clash's DELETE
 * /connections/:id).
 * @module
 */
import { randomUUID } from 'node:crypto';
import { Duplex } from 'node:stream';
import { HOLD, holdChunks, lendsChunks } from '../core/lent-read.js';
import type { StreamDialer, Target } from '../transport/types.js';

/** Connections listed at most; more still work but are counted, not listed. */
export const MAX_LISTED_CONNECTIONS = 4096;

export interface ConnectionInfo {
  readonly id: string;
  readonly target: Target;
  /** The rule's text ("DOMAIN-SUFFIX,cn,DIRECT") or "MATCH" when no rule matched. */
  rule: string;
  /** DIRECT, PROXY, or the transport a rule named. */
  chain: string;
  readonly start: Date;
  upload: number;
  download: number;
}

export interface RouteNote {
  readonly rule: string;
  readonly chain: string;
}

/**
 * A Duplex that passes bytes to and from `inner` and counts them. Backpressure goes through: a full
 * reader pauses `inner`, a full `inner` holds the writer's callback.
 */
class CountingDuplex extends Duplex {
  readonly #inner: Duplex;
  readonly #onUp: (n: number) => void;
  readonly #onDown: (n: number) => void;

  constructor(inner: Duplex, onUp: (n: number) => void, onDown: (n: number) => void) {
    super({ allowHalfOpen: true });
    this.#inner = inner;
    this.#onUp = onUp;
    this.#onDown = onDown;
    // An inner stream that lends its chunks (core/lent-read.ts) lends them through this one: a
    // consumer's hold reaches it, and so does a chunk left buffered here past its handler.
    const lending = lendsChunks(inner);
    if (lending) (this as unknown as { [HOLD]: () => void })[HOLD] = () => holdChunks(inner);
    inner.on('data', (chunk: Buffer) => {
      this.#onDown(chunk.length);
      if (!this.push(chunk)) inner.pause();
      if (lending && this.readableLength > 0) holdChunks(inner);
    });
    inner.once('end', () => this.push(null));
    inner.once('error', (err) => this.destroy(err));
    inner.once('close', () => {
      if (!this.destroyed && !this.readableEnded) this.destroy();
    });
  }

  override _read(): void {
    this.#inner.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.#onUp(chunk.length);
    this.#inner.write(chunk, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.#inner.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.#inner.destroy(err ?? undefined);
    cb(err);
  }
}

export class ConnectionTable {
  readonly #open = new Map<string, { info: ConnectionInfo; stream: Duplex }>();
  #uploadTotal = 0;
  #downloadTotal = 0;

  /** Bytes carried since the start, each way (closed connections included). */
  get totals(): { upload: number; download: number } {
    return { upload: this.#uploadTotal, download: this.#downloadTotal };
  }

  /** A snapshot of the open connections. */
  list(): ConnectionInfo[] {
    return [...this.#open.values()].map((c) => ({ ...c.info }));
  }

  /** Closes one connection; false when no open connection has this id. */
  close(id: string): boolean {
    const c = this.#open.get(id);
    if (!c) return false;
    c.stream.destroy();
    return true;
  }

  closeAll(): void {
    for (const c of [...this.#open.values()]) c.stream.destroy();
  }

  /**
   * A dialer that records each connection `inner` opens. `routeOf` gives the rule that matched a
   * target object passed to `inner` (set by the routing layer's decision hook), if any.
   */
  wrap(inner: StreamDialer, routeOf?: (target: Target) => RouteNote | undefined): StreamDialer {
    return {
      dial: async (target, signal) => {
        const asked = { ...target };
        const stream = await inner.dial(asked, signal);
        const route = routeOf?.(asked) ?? { rule: 'MATCH', chain: 'PROXY' };
        const info: ConnectionInfo = {
          id: randomUUID(),
          target: { host: target.host, port: target.port },
          rule: route.rule,
          chain: route.chain,
          start: new Date(),
          upload: 0,
          download: 0,
        };
        const counted = new CountingDuplex(
          stream,
          (n) => {
            info.upload += n;
            this.#uploadTotal += n;
          },
          (n) => {
            info.download += n;
            this.#downloadTotal += n;
          },
        );
        if (this.#open.size < MAX_LISTED_CONNECTIONS) {
          this.#open.set(info.id, { info, stream: counted });
          counted.once('close', () => this.#open.delete(info.id));
        }
        return counted;
      },
    };
  }
}
