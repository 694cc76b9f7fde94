/**
 * The seam between the data plane and the operator: every server (Shadowsocks, Trojan, WebSocket)
 * asks its gate before relaying for a key, reports every byte to the lease it got, and closes the
 * connection when the lease is revoked. The key manager (key-manager.ts) is the gate with limits;
 * {@link CountingGate} is the one for keys given on the command line, which only counts.
 * @module
 */
import type { Metrics } from '../metrics.js';

export type GateTransport = 'tcp' | 'udp';

export interface AccessGate {
  /**
   * A connection (or UDP session) authenticated as `keyId` from `client` (an address, kept in
   * memory only). Returns its lease, or null to refuse it exactly as a wrong key is refused.
   */
  open(keyId: string, client: string, transport: GateTransport): Lease | null;
}

export interface Lease {
  /** `n` bytes client→target; returns how many ms the sender should wait (a speed cap), usually 0. */
  up(n: number): number;
  /** `n` bytes target→client; returns how many ms to wait. */
  down(n: number): number;
  /** `fn` runs once if the key is revoked (disabled, expired, over its limit, deleted) while open. */
  onRevoke(fn: () => void): void;
  /** The connection ended; call once. */
  close(): void;
}

/** A gate that admits every key and counts its bytes and connections into the metrics. */
export class CountingGate implements AccessGate {
  readonly #metrics: Metrics | undefined;
  constructor(metrics?: Metrics) {
    this.#metrics = metrics;
  }
  open(keyId: string, _client: string, transport: GateTransport): Lease {
    const m = this.#metrics;
    m?.opened(keyId, transport);
    let closed = false;
    return {
      up: (n) => {
        m?.bytes(keyId, 'up', n);
        return 0;
      },
      down: (n) => {
        m?.bytes(keyId, 'down', n);
        return 0;
      },
      onRevoke: () => {},
      close: () => {
        if (closed) return;
        closed = true;
        m?.closed(transport);
      },
    };
  }
}

/**
 * Caps the connections (and UDP sessions) one key holds at once (`--max-connections-per-key`): past
 * the cap a new one is refused exactly as a wrong key is, so that one leaked or shared key cannot
 * take every slot of the server. The key store's device limit counts client addresses instead; the
 * two work together.
 */
export class PerKeyCapGate implements AccessGate {
  readonly #inner: AccessGate;
  readonly #max: number;
  readonly #open = new Map<string, number>();

  constructor(inner: AccessGate, maxPerKey: number) {
    this.#inner = inner;
    this.#max = maxPerKey;
  }

  /** Connections open now for `keyId` through this gate. */
  openFor(keyId: string): number {
    return this.#open.get(keyId) ?? 0;
  }

  open(keyId: string, client: string, transport: GateTransport): Lease | null {
    const n = this.#open.get(keyId) ?? 0;
    if (n >= this.#max) return null;
    const lease = this.#inner.open(keyId, client, transport);
    if (!lease) return null;
    this.#open.set(keyId, n + 1);
    let closed = false;
    return {
      up: (b) => lease.up(b),
      down: (b) => lease.down(b),
      onRevoke: (fn) => lease.onRevoke(fn),
      close: () => {
        if (closed) return;
        closed = true;
        const left = (this.#open.get(keyId) ?? 1) - 1;
        if (left <= 0) this.#open.delete(keyId);
        else this.#open.set(keyId, left);
        lease.close();
      },
    };
  }
}
