/**
 * The Shadowsocks server: one TCP port and the same UDP port, any number of access keys of any
 * supported method at once. This file wires the parts: the keys and what is remembered of them
 * (ss-key-ring.ts), the TCP side with its probe rule (ss-tcp-handler.ts) and the UDP relay
 * (ss-udp-relay.ts).
 *
 * Privacy: nothing here logs a destination or a client address. Client addresses live only in
 * memory, for the "key that last matched" hint and UDP return paths, and are never written out.
 * @module
 */
import {
  DEFAULT_AUTH_TIMEOUT_MS,
  DEFAULT_CLOSE_GRACE_MS,
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_MAX_CONNECTIONS,
} from '../core/defaults.js';
import { createServer, type Server, type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { debuglog } from 'node:util';
import type { ErrorCode } from '../errors.js';
import type { Random, SsServerKey } from '../codec/ss-tcp.js';
import type { TrialBudgetOptions } from './udp-trial-budget.js';
import { CountingGate, type AccessGate } from './access/gate.js';
import { PreAuthGuard } from './pre-auth.js';
import { SsKeyRing } from './ss-key-ring.js';
import { SsTcpHandler, type PreAuthControl, type PreAuthHandover } from './ss-tcp-handler.js';
import { SsUdpRelay } from './ss-udp-relay.js';
import { listenTcp } from '../transport/listen.js';
import {
  systemClock,
  type Clock,
  type PacketDialer,
  type StreamDialer,
} from '../transport/types.js';

export type { PreAuthControl, PreAuthHandover } from './ss-tcp-handler.js';

const debug = debuglog('ladder:server');

/** A UDP session with no packets for this long is forgotten, by default. */
const DEFAULT_UDP_TIMEOUT_MS = 120_000;
/** The shortest UDP session timeout accepted. */
const MIN_UDP_TIMEOUT_MS = 1_000;
const DEFAULT_MAX_UDP_SESSIONS = 4096;

/** What the server reports; the operator layer turns these into metrics. Never addresses. */
export interface ServerEvents {
  /**
   * A connection or datagram failed before authentication (a rejected probe, a stray, a replay),
   * with the reason's code.
   */
  rejected?(code: ErrorCode, transport: 'tcp' | 'udp'): void;
  /** @deprecated the old name of {@link ServerEvents.rejected}; called too when set. */
  probe?(code: ErrorCode, transport: 'tcp' | 'udp'): void;
  /** A TCP connection authenticated with `keyId` after `handshakeMs`. */
  accepted?(keyId: string, handshakeMs: number): void;
  /** A TCP connection of `keyId` ended, having carried `up` bytes client→target and `down` back. */
  closed?(keyId: string, up: number, down: number, code?: ErrorCode): void;
  /** UDP payload bytes for `keyId`. */
  udpBytes?(keyId: string, up: number, down: number): void;
}

export interface SsServerOptions {
  keys: readonly SsServerKey[];
  /** Opens connections to targets (usually a DirectDialer). */
  dialer: StreamDialer;
  /** Sends datagrams to targets; without it the UDP relay is off. */
  packetDialer?: PacketDialer;
  clock?: Clock;
  /** Monotonic milliseconds, for replay windows and budgets (default `performance.now`). */
  monotonicNow?: () => number;
  random?: Random;
  /** A connection that has not authenticated after this long is closed, whatever it sent (default 60 s). */
  authTimeoutMs?: number;
  /** An authenticated connection with no bytes either way for this long is closed (default 5 min). */
  idleTimeoutMs?: number;
  /** Connections at once; more are refused at accept (default 8192). */
  maxConnections?: number;
  /** A UDP session with no packets for this long is forgotten (default 2 min; SIP022 needs ≥ 60 s). */
  udpTimeoutMs?: number;
  /** UDP sessions at once (default 4096); the least recently active goes first. */
  maxUdpSessions?: number;
  /** Rates of the UDP trial-decryption budget (udp-trial-budget.ts). */
  udpTrialBudget?: TrialBudgetOptions;
  events?: ServerEvents;
  /** Admits authenticated keys and takes their byte counts (default: admit all, count nothing). */
  gate?: AccessGate;
  /**
   * The deadline and caps for connections without a key on the server's own TCP listener (default:
   * a guard of its own whose deadline is `authTimeoutMs`); share one across listeners.
   */
  preAuth?: PreAuthGuard;
}

export class SsServer {
  readonly #o: Required<Pick<SsServerOptions, 'clock' | 'authTimeoutMs' | 'maxConnections'>> &
    Pick<SsServerOptions, 'packetDialer'>;
  readonly #keys: SsKeyRing;
  readonly #preAuth: PreAuthGuard;
  readonly #tcpHandler: SsTcpHandler;
  /** The UDP relay, when a packet dialer is set. */
  readonly #udpRelay: SsUdpRelay | null;
  #tcp: Server | null = null;
  #closing = false;

  constructor(options: SsServerOptions) {
    const clock = options.clock ?? systemClock;
    const monotonicNow = options.monotonicNow ?? (() => performance.now());
    const random = options.random ?? randomBytes;
    const authTimeoutMs = options.authTimeoutMs ?? DEFAULT_AUTH_TIMEOUT_MS;
    this.#o = {
      clock,
      packetDialer: options.packetDialer,
      authTimeoutMs,
      maxConnections: options.maxConnections ?? DEFAULT_MAX_CONNECTIONS,
    };
    const events = options.events ?? {};
    // A pre-authentication failure goes to ServerEvents.rejected, and to the old name `probe`.
    const rejected = (code: ErrorCode, transport: 'tcp' | 'udp'): void => {
      events.rejected?.(code, transport);
      events.probe?.(code, transport);
    };
    const gate = options.gate ?? new CountingGate();
    this.#preAuth = options.preAuth ?? new PreAuthGuard({ deadlineMs: authTimeoutMs });
    this.#keys = new SsKeyRing(options.keys, monotonicNow);
    this.#tcpHandler = new SsTcpHandler({
      keys: this.#keys,
      dialer: options.dialer,
      gate,
      clock,
      random,
      authTimeoutMs,
      idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
      rejected: (code) => rejected(code, 'tcp'),
      accepted: (keyId, ms) => events.accepted?.(keyId, ms),
      closed: (keyId, up, down, code) => events.closed?.(keyId, up, down, code),
    });
    this.#udpRelay = options.packetDialer
      ? new SsUdpRelay({
          keys: this.#keys,
          packetDialer: options.packetDialer,
          gate,
          clock,
          monotonicNow,
          random,
          udpTimeoutMs: Math.max(
            options.udpTimeoutMs ?? DEFAULT_UDP_TIMEOUT_MS,
            MIN_UDP_TIMEOUT_MS,
          ),
          maxUdpSessions: options.maxUdpSessions ?? DEFAULT_MAX_UDP_SESSIONS,
          udpTrialBudget: options.udpTrialBudget,
          rejected: (code) => rejected(code, 'udp'),
          udpBytes: (keyId, up, down) => events.udpBytes?.(keyId, up, down),
        })
      : null;
  }

  /** Replaces the set of keys; connections already open keep theirs. */
  setKeys(keys: readonly SsServerKey[]): void {
    this.#keys.setKeys(keys);
  }

  /** The clock the server times connections by (`handleConnection`'s `startedAt` is on it). */
  get clock(): Clock {
    return this.#o.clock;
  }

  /** Connections open now. */
  get connections(): number {
    return this.#tcpHandler.connections;
  }

  /** Binds TCP, then UDP on the same port (when a packet dialer is set). Rejects with ERR_LISTEN naming the address. */
  async listen(host: string, port: number): Promise<AddressInfo> {
    const tcp = createServer({ allowHalfOpen: true, pauseOnConnect: false }, (s) => {
      if (this.#preAuth.admit(s, s.remoteAddress)) this.#tcpHandler.handle(s);
    });
    tcp.maxConnections = this.#o.maxConnections;
    await listenTcp(tcp, host, port, 'TCP', '--listen');
    this.#tcp = tcp;
    tcp.on('error', (err) => debug('tcp listener error %s', err.message));
    const addr = tcp.address() as AddressInfo;
    if (this.#udpRelay) {
      try {
        await this.listenUdp(host, addr.port);
      } catch (err) {
        tcp.close();
        this.#tcp = null;
        throw err;
      }
    }
    return addr;
  }

  /** Binds the UDP relay alone (when another listener owns the TCP port, e.g. the port mux). */
  async listenUdp(host: string, port: number): Promise<void> {
    await this.#udpRelay?.listen(host, port);
  }

  /**
   * Serves a connection accepted elsewhere (the port mux), whose first bytes `head` were already
   * read; `startedAt` is when it was accepted on {@link clock}, so the authentication timeout stays
   * the same. Any Duplex will do: a TCP socket, or a WebSocket stream or Mux.Cool session carrying
   * the same Shadowsocks stream (v2ray-plugin), which then gets the same keys, replay filters and
   * probe rule.
   */
  handleConnection(
    socket: Duplex,
    head?: Buffer,
    startedAt?: number,
    handover?: PreAuthHandover,
  ): PreAuthControl {
    return this.#tcpHandler.handle(socket, head, startedAt, handover);
  }

  /**
   * Stops accepting, lets open connections finish for up to `graceMs`, then closes the rest.
   */
  async close(graceMs = DEFAULT_CLOSE_GRACE_MS): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    const tcp = this.#tcp;
    const closed = tcp ? new Promise<void>((r) => tcp.close(() => r())) : Promise.resolve();
    this.#udpRelay?.close();
    await this.#tcpHandler.close(graceMs);
    await closed;
  }

  /** UDP sessions open now (for tests). */
  get udpSessions(): number {
    return this.#udpRelay?.sessions ?? 0;
  }
}
