/**
 * The seams of the data plane. Front ends (SOCKS5, HTTP) speak to a {@link StreamDialer} and a
 * {@link PacketDialer}; the direct dialer, the Shadowsocks dialers and later Trojan and WebSocket
 * implement them. Only cli/ builds real ones; tests plug in whichever they need.
 * @module
 */
import type { Duplex } from 'node:stream';

/** A destination as SOCKS names it: an IPv4 or IPv6 literal, or a domain name, and a port. */
export interface Target {
  /** IPv4 dotted quad, IPv6 literal without brackets, or a domain name (at most 255 bytes). */
  readonly host: string;
  /** 0..65535 */
  readonly port: number;
}

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

/** Time as a seam, so that tests can drive timestamps and timeouts. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
