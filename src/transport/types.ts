/**
 * The seams of the data plane. Front ends (SOCKS5, HTTP) speak to a {@link StreamDialer} and a
 * {@link PacketDialer}; the direct dialer, the Shadowsocks dialers and later Trojan and WebSocket
 * implement them. Only cli/ builds real ones; tests plug in whichever they need.
 * @module
 */
import type { Duplex } from 'node:stream';
import type { Target } from '../core/target.js';
import type { LendingStream } from '../core/lent-read.js';

export type { Target } from '../core/target.js';
export type { Clock } from '../core/clock.js';
export { systemClock } from '../core/clock.js';
export type { LendingStream, LentChunk } from '../core/lent-read.js';

/** Opens byte streams to targets. */
export interface StreamDialer {
  /**
   * Opens a stream to `target`. Resolves once bytes may be written; for tunnels with no
   * server feedback (Shadowsocks) that is at once, and a failure shows later as an error or an
   * early end on the stream. Rejects with a DialError.
   *
   * A dialer built with `recycleReads` returns a {@link LendingStream}: its 'data' chunks are valid
   * during the handler only, unless the handler calls `holdChunks(stream)` (core/lent-read.ts).
   * Pass such a stream to `relay()` or the proxy's message reader, which honour that; anything else
   * that listens to 'data' must check `lendsChunks(stream)` and hold what it keeps.
   */
  dial(target: Target, signal?: AbortSignal): Promise<Duplex | LendingStream>;
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
