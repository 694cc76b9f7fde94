/**
 * A StreamDialer (and PacketDialer) through a Trojan server over TLS (or, with `connect`, over a
 * WebSocket as v2ray carries it: ws-dialer.ts). The request header and the first payload leave in
 * one TLS record: the socket is corked after the header and uncorked on the caller's first write, or
 * after `firstPayloadWaitMs` for protocols where the server speaks first.
 *
 * With `mux`, connections carry Mux.Cool as v2ray's trojan outbound does when its `mux` is enabled:
 * the Trojan request names v1.mux.cool:9527 and Mux.Cool frames follow, one session per dial, up
 * to `mux` sessions at once on each connection and a few connections shared by all (mux-pool.ts).
 * A server that knows no Mux.Cool (trojan-gfw) would try to connect to v1.mux.cool: such keys are
 * for Ladder and v2ray servers only. UDP does not use it (a UDP ASSOCIATE connection of its own).
 * @module
 */
import { randomInt } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { debuglog } from 'node:util';
import {
  TROJAN_CMD,
  takeTrojanUdpPacket,
  encodeTrojanRequest,
  encodeTrojanUdpPacket,
  trojanPasswordHash,
  trojanRequestLength,
  trojanUdpPacketLength,
} from '../codec/trojan.js';
import { ByteQueue } from '../codec/ss-stream.js';
import { MUX_COOL_TARGET } from '../codec/mux-cool.js';
import { tlsConnect, type TlsClientOptions } from './tls.js';
import { MuxPool, TROJAN_MUX_CONNECTIONS } from './mux-pool.js';
import type { Opener } from './preconnect.js';
import type { PacketDialer, PacketSession, StreamDialer, Target } from './types.js';

const debug = debuglog('ladder:trojan');

/** `split`: the wait for the server's tickets is the handshake's duration (about 2 RTT), within these bounds. */
export const SPLIT_WAIT_MIN_MS = 50;
export const SPLIT_WAIT_MAX_MS = 1000;

export interface TrojanDialerOptions extends TlsClientOptions {
  password: string;
  firstPayloadWaitMs?: number;
  /** Opens the stream the Trojan bytes go over (default: TLS to the server with these options). */
  connect?: (server: Target, signal?: AbortSignal) => Promise<Duplex>;
  /** Mux.Cool sessions at once on one connection (v2ray's `concurrency`); 0 or absent: no Mux.Cool. */
  mux?: number;
  /**
   * With `mux`: pad each session's first frames with KeepAlive frames of random length (default
   * true; stream/mux-cool.ts). Only for servers that discard KeepAlive data, as v2ray and Ladder do.
   */
  muxPadding?: boolean;
  /** With `mux`: sessions one connection carries in its life (default 128, as v2ray). */
  muxSessionsPerConnection?: number;
  /**
   * With `mux`: connections that concurrent sessions are spread over (default 3, opened together
   * at a cold start; 1: all on one, as v2ray; mux-pool.ts `connections`).
   */
  muxConnections?: number;
  /**
   * Plain Trojan over TLS only (not with `mux` or `connect`): send the request with a random slice
   * of the first payload, and the rest once the server's session tickets have arrived (or after
   * the handshake's duration, 50 ms to 1 s), so that an inner handshake does not start in the
   * client's first run after its Finished (docs/lab.md "TLS in TLS"). Costs about one round trip
   * per connection, and a full TLS handshake each time (resumed, Node's server sends no tickets).
   */
  split?: boolean;
  /**
   * Plain Trojan over TLS with fp=chrome (not with `mux` or `connect`): the streams `dial` returns
   * lend their 'data' chunks (core/lent-read.ts), so that records are decrypted into recycled
   * memory. Only for consumers that honour `holdChunks`, such as `relay()`.
   */
  recycleReads?: boolean;
  /**
   * Without `mux`: how each stream's connection is opened, around this dialer's own way (`open`):
   * the per-server and handshake caps, connections opened ahead (key-dialers.ts, preconnect.ts).
   */
  through?: (open: Opener) => Opener;
}

/** The handshake of a `split` connection: its duration, and whether a session ticket came since. */
interface SplitHandshake {
  readonly ms: number;
  ticket: boolean;
}
const splitHandshakes = new WeakMap<Duplex, SplitHandshake>();

function header(hash: Buffer, command: 1 | 3, target: Target): Buffer {
  const out = Buffer.allocUnsafe(trojanRequestLength(target));
  encodeTrojanRequest({ hash, command, target }, out, 0);
  return out;
}

export class TrojanDialer implements StreamDialer, PacketDialer {
  readonly #server: Target;
  readonly #o: TrojanDialerOptions;
  readonly #hash: Buffer;
  readonly #connect: (signal?: AbortSignal) => Promise<Duplex>;
  readonly #pool: MuxPool | null = null;
  /** Opens a plain (not Mux.Cool) stream's connection: TLS or the `connect` option, then `through`. */
  readonly #open: Opener;

  constructor(server: Target, options: TrojanDialerOptions) {
    this.#server = server;
    this.#o = options;
    this.#hash = trojanPasswordHash(options.password);
    const connect = options.connect;
    this.#connect = connect
      ? (signal) => connect(server, signal)
      : (signal) => tlsConnect(this.#server, this.#o, signal);
    const own: Opener = connect
      ? this.#connect
      : options.split
        ? (signal) => this.#openSplit(signal)
        : options.recycleReads
          ? (signal) => tlsConnect(server, { ...options, lendReads: true }, signal)
          : this.#connect;
    this.#open = options.through && !(options.mux && options.mux > 0) ? options.through(own) : own;
    const wait = options.firstPayloadWaitMs ?? 50;
    if (options.mux && options.mux > 0)
      this.#pool = new MuxPool({
        connect: async () => {
          const socket = await this.#connect();
          // The request for v1.mux.cool leaves in one record with the first frame.
          socket.cork();
          socket.write(header(this.#hash, TROJAN_CMD.CONNECT, MUX_COOL_TARGET));
          uncorkOnFirstWrite(socket, wait);
          return socket;
        },
        concurrency: options.mux,
        connections: options.muxConnections ?? TROJAN_MUX_CONNECTIONS,
        padding: options.muxPadding ?? true,
        ...(options.muxSessionsPerConnection
          ? { sessionsPerConnection: options.muxSessionsPerConnection }
          : {}),
        announceAfterMs: wait,
        // Straight over TLS (not a WebSocket): the socket's write callback frees a frame buffer.
        reuseFrames: !connect,
      });
  }

  async dial(target: Target, signal?: AbortSignal): Promise<Duplex> {
    if (this.#pool) return this.#pool.open(target, signal);
    const socket = await this.#open(signal);
    socket.cork();
    socket.write(header(this.#hash, TROJAN_CMD.CONNECT, target));
    const split = this.#o.split && !this.#o.connect ? splitHandshakes.get(socket) : undefined;
    if (split)
      splitFirstPayload(socket, {
        firstPayloadWaitMs: this.#o.firstPayloadWaitMs ?? 50,
        ticketWaitMs: Math.min(SPLIT_WAIT_MAX_MS, Math.max(SPLIT_WAIT_MIN_MS, split.ms)),
        ticketCame: split.ticket,
        rand: randomInt,
      });
    else uncorkOnFirstWrite(socket, this.#o.firstPayloadWaitMs ?? 50);
    return socket;
  }

  /**
   * A `split` stream's connection: a full handshake (its tickets are what the split waits for),
   * timed, with the tickets that come before a dial uses it (a connection opened ahead) noted.
   */
  async #openSplit(signal?: AbortSignal): Promise<Duplex> {
    const started = performance.now();
    const lend = this.#o.recycleReads ? { lendReads: true } : {};
    const socket = await tlsConnect(this.#server, { ...this.#o, ...lend, resume: false }, signal);
    const h: SplitHandshake = { ms: performance.now() - started, ticket: false };
    splitHandshakes.set(socket, h);
    socket.once('session', () => (h.ticket = true));
    return socket;
  }

  open(onPacket: (payload: Buffer, from: Target) => void): PacketSession {
    let socket: Duplex | null = null;
    let closed = false;
    const pending: Buffer[] = [];
    const frame = (payload: Uint8Array, target: Target): Buffer => {
      const out = Buffer.allocUnsafe(trojanUdpPacketLength({ target, payload }));
      encodeTrojanUdpPacket({ target, payload }, out, 0);
      return out;
    };
    this.#connect().then(
      (s) => {
        if (closed) {
          s.destroy();
          return;
        }
        socket = s;
        s.cork();
        s.write(header(this.#hash, TROJAN_CMD.UDP_ASSOCIATE, { host: '0.0.0.0', port: 0 }));
        for (const p of pending.splice(0)) s.write(p);
        s.uncork();
        const q = new ByteQueue();
        s.on('data', (chunk: Buffer) => {
          q.push(chunk);
          for (;;) {
            let p;
            try {
              p = takeTrojanUdpPacket(q);
            } catch {
              s.destroy();
              return;
            }
            if (p === null) return;
            onPacket(Buffer.from(p.payload), p.target);
          }
        });
        s.on('error', () => s.destroy());
      },
      () => {
        closed = true;
      },
    );
    return {
      send(payload, target) {
        if (closed) return;
        const f = frame(payload, target);
        if (socket) socket.write(f);
        else if (pending.length < 64) pending.push(f);
      },
      close() {
        closed = true;
        socket?.end();
      },
    };
  }
}

/**
 * For a corked `socket` whose Trojan request is written: the first write() leaves with the request
 * and its first k bytes (k random in 1..n-1) in one TLS record; the rest of it, and whatever is
 * written after, stays corked until the server's first session ticket arrives ('session'), or
 * `ticketWaitMs` passes. A ticket that came before the first write means the server has spoken
 * already: the payload then leaves whole. With nothing written for `firstPayloadWaitMs`, the
 * request leaves alone (server-speaks-first protocols).
 */
export function splitFirstPayload(
  socket: Duplex,
  o: {
    firstPayloadWaitMs: number;
    ticketWaitMs: number;
    /** A ticket came already (on a connection opened ahead of its dial). */
    ticketCame?: boolean;
    rand: (min: number, max: number) => number;
  },
): void {
  let ticket = o.ticketCame === true;
  let release: (() => void) | null = null;
  const onTicket = (): void => {
    ticket = true;
    // 'session' is emitted from inside TLS's read of the ticket; a write from there can sit in
    // the TLS layer unsent until something else is written, so the rest leaves on the next turn.
    if (release) setImmediate(() => release?.());
  };
  socket.once('session', onTicket);
  const write = socket.write;
  let done = false;
  const restore = (): void => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    socket.write = write;
  };
  const timer = setTimeout(() => {
    debug('first payload none within %d ms; the request left alone', o.firstPayloadWaitMs);
    restore();
    socket.uncork();
  }, o.firstPayloadWaitMs);
  timer.unref();
  socket.write = function (this: Duplex, ...args: Parameters<Duplex['write']>): boolean {
    restore();
    const chunk = args[0] as unknown;
    if (ticket || !Buffer.isBuffer(chunk) || chunk.length < 2) {
      debug('first payload whole (%s)', ticket ? 'the ticket came first' : 'too short to split');
      const r = write.apply(this, args);
      socket.uncork();
      return r;
    }
    const k = o.rand(1, chunk.length);
    write.apply(this, [chunk.subarray(0, k)] as unknown as Parameters<Duplex['write']>);
    socket.uncork(); // the request and k bytes: one record
    socket.cork();
    const rest = [chunk.subarray(k), ...args.slice(1)] as Parameters<Duplex['write']>;
    const r = write.apply(this, rest);
    const wait = setTimeout(() => release?.(), o.ticketWaitMs);
    wait.unref();
    release = (): void => {
      release = null;
      clearTimeout(wait);
      socket.removeListener('session', onTicket);
      debug(
        'first payload split at %d of %d; rest after %s',
        k,
        chunk.length,
        ticket ? 'the ticket' : 'the wait',
      );
      socket.uncork();
    };
    socket.once('close', () => release?.());
    return r;
  } as Duplex['write'];
  socket.once('close', () => {
    if (!done) {
      restore();
      socket.uncork();
    }
  });
}

/** Uncorks `socket` right after its next write() (one TLS record for header + payload), or after `waitMs`. */
export function uncorkOnFirstWrite(socket: Duplex, waitMs: number): void {
  const write = socket.write;
  let done = false;
  const release = (): void => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    socket.write = write;
    socket.uncork();
  };
  const timer = setTimeout(release, waitMs);
  timer.unref();
  socket.write = function (this: Duplex, ...args: Parameters<Duplex['write']>): boolean {
    const r = write.apply(this, args);
    release();
    return r;
  } as Duplex['write'];
  socket.once('close', release);
}
