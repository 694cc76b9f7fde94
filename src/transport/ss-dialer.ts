/**
 * Dialers that carry streams and datagrams through a Shadowsocks server (AEAD-2017 or 2022).
 *
 * TCP: `dial()` resolves once the TCP connection to the server is up (so an unreachable server is
 * reported as such), and the request header leaves together with the first payload the caller
 * writes (SIP022 §3.1.3: salt and headers in one write). If the caller writes nothing for
 * `firstPayloadWaitMs` (a server-speaks-first protocol), the header leaves alone, padded in 2022.
 * @module
 */
import { deadline } from './deadline.js';
import { DEFAULT_CONNECT_TIMEOUT_MS } from '../core/defaults.js';
import { connect, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import type { Duplex } from 'node:stream';
import { DialError, dialErrorFromSystem } from '../errors.js';
import type { SsCipherKey } from '../crypto/ss-key.js';
import { SlidingWindow } from '../crypto/replay.js';
import { SsTcpClientSession, type Random } from '../codec/ss-tcp.js';
import { ScratchSlot } from '../codec/ss-stream.js';
import {
  decodeUdp2017,
  decodeUdp2022Response,
  encodeUdp2017,
  encodeUdp2022,
} from '../codec/ss-udp.js';
import { CodecDuplex, type SocketLike, type StreamCodec } from '../stream/codec-duplex.js';
import { connectRecycling } from '../stream/recycled-reads.js';
import { serverLookup } from './server-lookup.js';
import { applyCongestion } from './congestion.js';
import {
  systemClock,
  type Clock,
  type PacketDialer,
  type PacketSession,
  type StreamDialer,
  type Target,
} from './types.js';

export interface SsDialerOptions {
  clock?: Clock;
  random?: Random;
  /** Give up connecting to the server after this long (default 10 s). */
  connectTimeoutMs?: number;
  /** How long to wait for the first payload before sending the header alone (default 50 ms). */
  firstPayloadWaitMs?: number;
  /** Outline's prefix: the first bytes of every TCP salt (src/codec/ss-prefix.ts). */
  prefix?: Uint8Array;
  /** Connect to the server from this local address (a multi-homed machine; tests use 127.0.0.x). */
  localAddress?: string;
  /**
   * Opens the stream the Shadowsocks bytes go over (default: TCP to the server, connectTo).
   * `ladder probe` measures its own; the WebSocket transports (ws-dialer.ts) pass theirs, as a
   * SIP003 plugin would carry the stream.
   */
  connect?: (server: Target, signal?: AbortSignal) => Promise<SocketLike>;
  /**
   * Read the server's bytes into recycled memory (stream/recycled-reads.ts; not with `connect`).
   * Only for consumers that honour `holdChunks`, such as `relay()` and the HTTP proxy's
   * MessageReader: the payloads a dialed stream emits are then borrowed.
   */
  recycleReads?: boolean;
}

class ClientCodec implements StreamCodec {
  readonly #session: SsTcpClientSession;
  readonly #target: Target;
  readonly #clock: Clock;
  started = false;

  constructor(session: SsTcpClientSession, target: Target, clock: Clock) {
    this.#session = session;
    this.#target = target;
    this.#clock = clock;
  }

  requestAlone(): Buffer {
    this.started = true;
    return this.#session.encodeRequest(this.#target, Buffer.alloc(0), this.#clock.now());
  }

  encode(payload: Buffer): Buffer {
    if (this.started) return this.#session.encode(payload);
    this.started = true;
    return this.#session.encodeRequest(this.#target, payload, this.#clock.now());
  }

  decode(chunk: Buffer, borrowed: boolean): Buffer[] {
    return this.#session.decode(chunk, this.#clock.now(), borrowed);
  }

  release(): void {
    this.#session.release();
  }
}

export class SsStreamDialer implements StreamDialer {
  readonly #server: Target;
  readonly #key: SsCipherKey;
  readonly #clock: Clock;
  /** One output buffer for every connection of this dialer (codec/ss-stream.ts ScratchSlot). */
  readonly #scratch = new ScratchSlot();
  readonly #random: Random;
  readonly #connectTimeoutMs: number;
  readonly #waitMs: number;
  readonly #prefix: Uint8Array | undefined;
  readonly #localAddress: string | undefined;
  readonly #connect: SsDialerOptions['connect'];
  readonly #recycle: boolean;

  constructor(server: Target, key: SsCipherKey, options: SsDialerOptions = {}) {
    this.#localAddress = options.localAddress;
    this.#server = server;
    this.#key = key;
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? randomBytes;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.#waitMs = options.firstPayloadWaitMs ?? 50;
    this.#connect = options.connect;
    this.#recycle = options.recycleReads ?? false;
    this.#prefix = options.prefix;
    // Fails now, not at the first dial, if the prefix leaves too little of the salt random.
    if (this.#prefix) new SsTcpClientSession(key, this.#random, this.#prefix);
  }

  async dial(target: Target, signal?: AbortSignal): Promise<Duplex> {
    const socket = this.#connect
      ? await this.#connect(this.#server, signal)
      : await connectTo(
          this.#server,
          this.#connectTimeoutMs,
          signal,
          this.#localAddress,
          this.#recycle,
        );
    const codec = new ClientCodec(
      new SsTcpClientSession(this.#key, this.#random, this.#prefix, this.#scratch),
      target,
      this.#clock,
    );
    const duplex = new CodecDuplex(socket, codec);
    const timer = setTimeout(() => {
      if (!codec.started && !duplex.destroyed) socket.write(codec.requestAlone());
    }, this.#waitMs);
    timer.unref();
    duplex.once('close', () => clearTimeout(timer));
    return duplex;
  }
}

/** Connects to a proxy server; failures become DialError ERR_SERVER_UNREACHABLE naming the server. */
export function connectTo(
  server: Target,
  timeoutMs: number,
  signal?: AbortSignal,
  localAddress?: string,
  recycleReads = false,
): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const what = `proxy server ${server.host.includes(':') ? `[${server.host}]` : server.host}:${server.port}`;
    if (signal?.aborted) {
      reject(new DialError('ERR_ABORTED', `${what}: aborted`));
      return;
    }
    const options = {
      host: server.host,
      port: server.port,
      noDelay: true,
      // the server's name resolved once a minute, not once per connection (server-lookup.ts)
      lookup: serverLookup,
      ...(localAddress ? { localAddress } : {}),
    };
    const socket = recycleReads ? connectRecycling(options) : connect(options);
    const clear = deadline(
      timeoutMs,
      signal,
      () =>
        fail(new DialError('ERR_SERVER_UNREACHABLE', `${what}: no answer within ${timeoutMs} ms`)),
      () => fail(new DialError('ERR_ABORTED', `${what}: aborted`)),
    );
    const done = (): void => {
      clear();
      socket.off('error', onError);
    };
    const fail = (err: DialError): void => {
      done();
      socket.destroy();
      reject(err);
    };
    const onError = (err: Error): void => {
      const d = dialErrorFromSystem(err, what);
      fail(
        new DialError(
          'ERR_SERVER_UNREACHABLE',
          `${d.message} (is the Ladder server running there?)`,
          { cause: err },
        ),
      );
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      done();
      applyCongestion(socket);
      resolve(socket);
    });
  });
}

/** UDP through a Shadowsocks server: one association per `open()`, one local UDP socket each. */
export class SsPacketDialer implements PacketDialer {
  readonly #server: Target;
  readonly #key: SsCipherKey;
  readonly #clock: Clock;
  readonly #random: Random;

  constructor(server: Target, key: SsCipherKey, options: { clock?: Clock; random?: Random } = {}) {
    this.#server = server;
    this.#key = key;
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? randomBytes;
  }

  open(onPacket: (payload: Buffer, from: Target) => void): PacketSession {
    const key = this.#key;
    const clock = this.#clock;
    const random = this.#random;
    const server = this.#server;
    const sock: UdpSocket = createSocket(server.host.includes(':') ? 'udp6' : 'udp4');
    sock.on('error', () => sock.close());
    const sessionId = random(8);
    let packetId = 0n;
    // SIP022 §3.2.4: a client session may see more than one server session (server restarts).
    const windows = new Map<string, SlidingWindow>();
    sock.on('message', (msg, rinfo) => {
      if (rinfo.port !== server.port) return;
      try {
        if (key.edition === 2017) {
          const d = decodeUdp2017(key, msg);
          if (d) onPacket(d.payload, d.target);
          return;
        }
        const p = decodeUdp2022Response(key, msg, clock.now());
        if (!p || !p.clientSessionId?.equals(sessionId)) return;
        const sid = p.sessionId.toString('hex');
        let w = windows.get(sid);
        if (!w) {
          if (windows.size >= 4) windows.delete(windows.keys().next().value!);
          w = new SlidingWindow();
          windows.set(sid, w);
        }
        if (!w.accept(p.packetId)) return;
        onPacket(p.payload, p.target);
      } catch {
        // a malformed reply is dropped, as a router drops a corrupt datagram
      }
    });
    let closed = false;
    return {
      send(payload, target) {
        if (closed) return;
        const d = {
          target,
          payload: Buffer.from(payload.buffer, payload.byteOffset, payload.length),
        };
        const packet =
          key.edition === 2017
            ? encodeUdp2017(key, random(key.keySize), d)
            : encodeUdp2022(
                key,
                { sessionId, packetId: packetId++ },
                d,
                new Uint8Array(0),
                clock.now(),
                random,
              );
        sock.send(packet, server.port, server.host);
      },
      close() {
        if (closed) return;
        closed = true;
        sock.close();
      },
    };
  }
}
