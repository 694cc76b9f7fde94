/**
 * Direct dialers: TCP and UDP to the target itself, with no tunnel. The server uses them to reach
 * destinations; tests use them as the reference implementation of the dialer suite.
 * @module
 */
import { deadline } from './deadline.js';
import { DEFAULT_CONNECT_TIMEOUT_MS } from '../core/defaults.js';
import { connect, isIP, type LookupFunction, type Socket } from 'node:net';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import type { Duplex } from 'node:stream';
import { DialError, dialErrorFromSystem } from '../errors.js';
import type { PacketDialer, PacketSession, StreamDialer, Target } from './types.js';
import { connectRecycling } from '../stream/recycled-reads.js';
import { applyCongestion } from './congestion.js';

export interface DirectDialerOptions {
  /** Give up connecting after this long (default 10 s). */
  connectTimeoutMs?: number;
  /** Refuse some destinations (ERR_DIAL_FORBIDDEN). Sees the target as given (a name is not resolved). */
  allow?: (host: string, port: number) => boolean;
  /**
   * Read into recycled memory (stream/recycled-reads.ts). Only for consumers that honour
   * `holdChunks`, such as `relay()`: the chunks a socket emits are then borrowed.
   */
  recycleReads?: boolean;
  /**
   * Resolves names for the connect (net.connect's `lookup`), as the guarded dialer filters them;
   * Node then tries every address it returns (autoSelectFamily).
   */
  lookup?: LookupFunction;
  /**
   * Called with each socket as soon as it is made, before it connects: the place to bind it to an
   * interface or mark it (under --tun, direct sockets must bypass the tunnel device).
   */
  onSocket?: (socket: Socket) => void;
  /**
   * The local address each connection binds to, asked per connection (undefined: none). Under
   * --tun, an address of the machine's own, which routing sends around the device
   * (proxy/tun/bypass.ts).
   */
  bindAddress?: () => string | undefined;
}

export class DirectDialer implements StreamDialer {
  readonly #timeoutMs: number;
  readonly #allow: DirectDialerOptions['allow'];
  readonly #recycle: boolean;
  readonly #lookup: LookupFunction | undefined;
  readonly #onSocket: DirectDialerOptions['onSocket'];
  readonly #bindAddress: DirectDialerOptions['bindAddress'];

  constructor(options: DirectDialerOptions = {}) {
    this.#onSocket = options.onSocket;
    this.#bindAddress = options.bindAddress;
    this.#timeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.#allow = options.allow;
    this.#recycle = options.recycleReads ?? false;
    this.#lookup = options.lookup;
  }

  dial(target: Target, signal?: AbortSignal): Promise<Duplex> {
    if (this.#allow && !this.#allow(target.host, target.port)) {
      return Promise.reject(new DialError('ERR_DIAL_FORBIDDEN', 'target not allowed'));
    }
    return new Promise((resolve, reject) => {
      // Never name the target in messages that may be logged: the reason is enough.
      const what = 'target';
      if (signal?.aborted) {
        reject(new DialError('ERR_ABORTED', `${what}: aborted`));
        return;
      }
      const localAddress = this.#bindAddress?.();
      const options = {
        host: target.host,
        port: target.port,
        ...(localAddress ? { localAddress } : {}),
        allowHalfOpen: true,
        noDelay: true,
        ...(this.#lookup ? { lookup: this.#lookup, autoSelectFamily: true } : {}),
      };
      const socket: Socket = this.#recycle ? connectRecycling(options) : connect(options);
      this.#onSocket?.(socket);
      const clear = deadline(
        this.#timeoutMs,
        signal,
        () =>
          fail(
            new DialError('ERR_DIAL_TIMEOUT', `${what}: no answer within ${this.#timeoutMs} ms`),
          ),
        () => fail(new DialError('ERR_ABORTED', `${what}: aborted`)),
      );
      const onError = (err: Error): void => fail(dialErrorFromSystem(err, what));
      function cleanup(): void {
        clear();
        socket.off('error', onError);
      }
      function fail(err: DialError): void {
        cleanup();
        socket.destroy();
        reject(err);
      }
      socket.once('error', onError);
      socket.once('connect', () => {
        cleanup();
        applyCongestion(socket);
        resolve(socket);
      });
    });
  }
}

/** UDP straight to targets: one socket per session (per address family, made when first needed). */
export class DirectPacketDialer implements PacketDialer {
  readonly #onSocket: ((socket: UdpSocket) => void) | undefined;

  /** `onSocket` sees each UDP socket when it is made (as DirectDialerOptions.onSocket). */
  constructor(options: { onSocket?: (socket: UdpSocket) => void } = {}) {
    this.#onSocket = options.onSocket;
  }

  open(onPacket: (payload: Buffer, from: Target) => void): PacketSession {
    const sockets: { udp4?: UdpSocket; udp6?: UdpSocket } = {};
    let closed = false;
    const socketFor = (family: 'udp4' | 'udp6'): UdpSocket => {
      let s = sockets[family];
      if (!s) {
        s = createSocket(family);
        this.#onSocket?.(s);
        s.on('message', (msg, rinfo) => onPacket(msg, { host: rinfo.address, port: rinfo.port }));
        s.on('error', () => {
          /* a send error (unreachable) drops the datagram, as the network would */
        });
        sockets[family] = s;
      }
      return s;
    };
    const sendTo = (payload: Uint8Array, host: string, port: number): void => {
      if (closed) return;
      socketFor(isIP(host) === 6 ? 'udp6' : 'udp4').send(payload, port, host);
    };
    return {
      send(payload, target) {
        if (closed || target.port === 0) return;
        if (isIP(target.host) !== 0) {
          sendTo(payload, target.host, target.port);
          return;
        }
        lookup(target.host).then(
          (r) => sendTo(payload, r.address, target.port),
          () => {
            /* unresolvable: dropped */
          },
        );
      },
      close() {
        if (closed) return;
        closed = true;
        sockets.udp4?.close();
        sockets.udp6?.close();
      },
    };
  }
}
