/**
 * The seams of the data plane. Front ends (SOCKS5, HTTP) speak to a {@link StreamDialer} and a
 * {@link PacketDialer}; the direct dialer, the Shadowsocks dialers and later Trojan and WebSocket
 * implement them. Only cli/ builds real ones; tests plug in whichever they need.
 * @module
 */
import type { Duplex } from 'node:stream';
import type { Target } from '../core/target.js';

export type { Target } from '../core/target.js';
export type { Clock } from '../core/clock.js';
export { systemClock } from '../core/clock.js';

/** Opens byte streams to targets. */
export interface StreamDialer {
  /**
   * Opens a stream to `target`. Resolves once bytes may be written; for tunnels with no
   * server feedback (Shadowsocks) that is at once, and a failure shows later as an error or an
   * early end on the stream. Rejects with a DialError.
   */
  dial(target: Target, signal?: AbortSignal): Promise<Duplex>;
}

/** One UDP association: datagrams to any target, replies from any target. */
export interface PacketSession {
  send(payload: Uint8Array, target: Target): void;
  close(): void;
}

/** Opens UDP associations. */
export interface PacketDialer {
  /** `onPacket` receives each reply with the address it came from. */
  open(onPacket: (payload: Buffer, from: Target) => void): PacketSession;
}
