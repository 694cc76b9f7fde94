/**
 * The Shadowsocks server's TCP side: takes a connection (from its own listener, the port mux or a
 * WebSocket path), tries its first bytes against the keys until one opens the request, then dials
 * the target and relays.
 *
 * Probe resistance (docs/probe-resistance.md): every failure before authentication — no key opens
 * the request, a replayed salt, a bad timestamp, bad padding, short or random data — gets one
 * behaviour: the server never writes a byte, keeps reading and discarding, and closes only when the
 * fixed `authTimeoutMs` since the connection opened has passed or when the peer closes. A request
 * that is valid but slow gets exactly the same treatment until it completes. With a handover (a port
 * that also serves TLS) such a connection leaves instead, with every byte it sent.
 * @module
 */
import type { Duplex } from 'node:stream';
import { debuglog } from 'node:util';
import { LadderError, type ErrorCode } from '../errors.js';
import {
  maxAcceptBytes,
  type AcceptedTcp,
  type Random,
  type SsTcpAcceptor,
} from '../codec/ss-tcp.js';
import { ScratchSlot } from '../codec/ss-stream.js';
import { CodecDuplex, type SocketLike } from '../stream/codec-duplex.js';
import type { AccessGate, Lease } from './access/gate.js';
import { readFirstBytes, settlePreAuth, type FirstBytes } from './pre-auth.js';
import type { SsKeyRing } from './ss-key-ring.js';
import { leasedRelay } from './access/leased-relay.js';
import type { Clock, StreamDialer } from '../transport/types.js';

const debug = debuglog('ladder:server');

/** How often `close` looks whether the open connections have finished. */
const CLOSE_POLL_MS = 50;

/**
 * For a port that also serves TLS (port-mux.ts): instead of the probe rule, a connection that has
 * not authenticated is handed over, with every byte it sent, to something else (the TLS stack the
 * decoy site sits behind), so that it reacts as that does.
 */
export interface PreAuthHandover {
  /**
   * Each chunk before Shadowsocks reads it (Shadowsocks may decrypt it in place: copy what you
   * keep), and whether Shadowsocks still lacks bytes to decide once it has read it.
   */
  bytes(chunk: Buffer): void;
  /** Shadowsocks has read every byte so far and cannot decide yet. */
  undecided(): void;
  /** The connection authenticated: it stays with Shadowsocks. */
  authenticated(): void;
  /**
   * The connection is yours (its listeners removed, paused): Shadowsocks refused it (any
   * pre-authentication failure, a key its gate refuses), the peer ended it before it
   * authenticated (`ended`), or you asked for it (`release`).
   */
  take(socket: Duplex, ended: boolean): void;
}

/** What handleConnection returns with a handover: `release` takes an undecided connection now. */
export interface PreAuthControl {
  release(): void;
}

export interface SsTcpHandlerOptions {
  keys: SsKeyRing;
  dialer: StreamDialer;
  gate: AccessGate;
  clock: Clock;
  random: Random;
  /** A connection that has not authenticated after this long is closed. */
  authTimeoutMs: number;
  /** An authenticated connection with no bytes either way for this long is closed. */
  idleTimeoutMs: number;
  /** A connection failed before authentication, with the reason's code. */
  rejected(code: ErrorCode): void;
  /** A connection authenticated with `keyId` after `handshakeMs`. */
  accepted(keyId: string, handshakeMs: number): void;
  /** A connection of `keyId` ended, having carried `up` bytes client→target and `down` back. */
  closed(keyId: string, up: number, down: number, code?: ErrorCode): void;
}

type ClientSocket = SocketLike & { remoteAddress?: string | undefined };

export class SsTcpHandler {
  readonly #o: SsTcpHandlerOptions;
  readonly #sockets = new Set<Duplex>();
  /** One output buffer for every connection's responses (codec/ss-stream.ts ScratchSlot). */
  readonly #scratch = new ScratchSlot();
  #closing = false;

  constructor(options: SsTcpHandlerOptions) {
    this.#o = options;
  }

  /** Connections open now. */
  get connections(): number {
    return this.#sockets.size;
  }

  /**
   * Takes a connection whose first bytes `head` may already have been read; `startedAt` (on the
   * clock) is when it was accepted, so the authentication timeout stays the same.
   */
  handle(
    conn: Duplex,
    head?: Buffer,
    startedAt?: number,
    handover?: PreAuthHandover,
  ): PreAuthControl {
    const socket = conn as ClientSocket;
    if (this.#closing) {
      socket.destroy();
      return { release: () => {} };
    }
    const started = startedAt ?? this.#o.clock.now();
    this.#sockets.add(socket);
    socket.setNoDelay?.(true);
    socket.on('close', () => this.#sockets.delete(socket));
    socket.on('error', (err) =>
      debug('client socket error %s', (err as NodeJS.ErrnoException).code ?? err.message),
    );
    const client = socket.remoteAddress ?? '';
    const pending = new TcpPreAuth(this.#o, {
      socket,
      client,
      started,
      handover,
      acceptor: this.#o.keys.tcpAcceptor(client, this.#o.random, this.#scratch),
      forget: () => this.#sockets.delete(socket),
      serve: (accepted, lease) => void this.#serve(socket, accepted, lease),
    });
    return pending.start(head);
  }

  /** Refuses new connections, lets open ones finish for up to `graceMs`, then closes the rest. */
  async close(graceMs: number): Promise<void> {
    this.#closing = true;
    const deadline = Date.now() + graceMs;
    while (this.#sockets.size > 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, CLOSE_POLL_MS));
    for (const s of this.#sockets) s.destroy();
  }

  async #serve(socket: SocketLike, a: AcceptedTcp, lease: Lease): Promise<void> {
    const keyId = a.key.id;
    let revoked = false;
    // Revoking closes both sides; the relay then ends and closes the lease.
    let sides: Duplex[] = [socket];
    lease.onRevoke(() => {
      revoked = true;
      for (const s of sides) s.destroy();
    });
    let up: Duplex;
    try {
      up = await this.#o.dialer.dial(a.target);
    } catch (err) {
      const code = err instanceof LadderError ? err.code : 'ERR_DIAL';
      debug('dial failed %s', code);
      socket.destroy();
      lease.close();
      this.#o.closed(keyId, 0, 0, code);
      return;
    }
    if (revoked || socket.destroyed) {
      up.destroy();
      lease.close();
      this.#o.closed(keyId, 0, 0);
      return;
    }
    const duplex = this.#codecDuplex(socket, a);
    sides = [duplex, up, socket];
    const t = await leasedRelay(duplex, up, lease, {
      idleTimeoutMs: this.#o.idleTimeoutMs,
      first: a.initialPayload,
      paused: socket,
    });
    lease.close();
    this.#o.closed(keyId, t.up, t.down, t.error?.code);
  }

  /** The client's side of the relay: the authenticated stream, decrypted and encrypted. */
  #codecDuplex(socket: SocketLike, a: AcceptedTcp): CodecDuplex {
    const clock = this.#o.clock;
    let recordedSalt = a.key.key.edition !== 2017;
    return new CodecDuplex(socket, {
      encode: (payload) => {
        const out = a.stream.encode(payload, clock.now());
        if (!recordedSalt) {
          // Our own salt, recorded once it exists: our response replayed to us is refused.
          recordedSalt = true;
          if (a.stream.responseSalt) this.#o.keys.addOwnSalt2017(a.stream.responseSalt);
        }
        return out;
      },
      decode: (chunk, borrowed) => a.stream.decode(chunk, borrowed),
      release: () => a.stream.release(),
    });
  }
}

interface TcpPreAuthConnection {
  socket: ClientSocket;
  client: string;
  /** When the connection was accepted, on the clock. */
  started: number;
  handover: PreAuthHandover | undefined;
  acceptor: SsTcpAcceptor;
  /** The connection is no longer this server's (handed over). */
  forget(): void;
  serve(accepted: AcceptedTcp, lease: Lease): void;
}

/**
 * One connection before it authenticates: its reads go to the acceptor until a key opens the
 * request; its one timer closes it at a fixed time whatever happens.
 */
class TcpPreAuth {
  readonly #o: SsTcpHandlerOptions;
  readonly #c: TcpPreAuthConnection;
  readonly #limit = maxAcceptBytes();
  readonly #authTimer: NodeJS.Timeout;
  #failed = false;
  #handedOver = false;
  /** The acceptor has authenticated the connection or refused it. */
  #decided = false;
  /** A turn of trials over more keys is scheduled. */
  #resumeSoon = false;

  constructor(o: SsTcpHandlerOptions, c: TcpPreAuthConnection) {
    this.#o = o;
    this.#c = c;
    this.#authTimer = setTimeout(
      () => {
        if (!this.#failed) o.rejected('ERR_PROBE_TIMEOUT');
        c.socket.destroy();
      },
      Math.max(0, o.authTimeoutMs - (o.clock.now() - c.started)),
    );
    this.#authTimer.unref();
  }

  /** Starts reading (with `head` first, if given). */
  start(head: Buffer | undefined): PreAuthControl {
    // Still waiting to authenticate, the loop reads on; once `head` alone authenticated, #serve
    // resumes the socket after its reader is attached (resuming earlier would drop buffered bytes).
    const firstBytes = readFirstBytes(this.#c.socket, {
      ...(head ? { head } : {}),
      // The acceptor keeps what it was given: each read goes to it at once, alone.
      onBytes: (fb) => this.#onChunk(fb, fb.q.takeAll()),
      onEnd: (fb) => this.#onEnd(fb),
    });
    return {
      release: () => {
        if (!this.#failed && !this.#handedOver && !firstBytes.stopped)
          this.#handOver(firstBytes, false);
      },
    };
  }

  #onChunk(fb: FirstBytes, chunk: Buffer): void {
    this.#c.handover?.bytes(chunk);
    this.#step(fb, chunk);
  }

  /** Gives the acceptor a new chunk, or (`null`) lets it try the next keys on what it holds. */
  #step(fb: FirstBytes, chunk: Buffer | null): void {
    if (this.#decided || this.#handedOver) return;
    const { socket, client, handover, acceptor } = this.#c;
    let accepted: AcceptedTcp | null;
    try {
      const now = this.#o.clock.now();
      accepted = chunk ? acceptor.push(chunk, now) : acceptor.resume(now);
      if (accepted === null && acceptor.buffered > this.#limit)
        throw new LadderError('ERR_CIPHER', 'request too long');
    } catch (err) {
      this.#decided = true;
      this.#fail(fb, err instanceof LadderError ? err.code : 'ERR_CODEC');
      return;
    }
    if (accepted === null) {
      if (acceptor.deferred) this.#resumeLater(fb);
      else handover?.undecided();
      return;
    }
    this.#decided = true;
    const lease = this.#o.gate.open(accepted.key.id, client, 'tcp');
    if (!lease) {
      this.#fail(fb, 'ERR_ACCESS_DENIED');
      return;
    }
    fb.stop();
    clearTimeout(this.#authTimer);
    settlePreAuth(socket);
    handover?.authenticated();
    this.#o.keys.rememberTcp(client, accepted.key);
    this.#o.accepted(accepted.key.id, this.#o.clock.now() - this.#c.started);
    this.#c.serve(accepted, lease);
  }

  /**
   * More keys to try with these bytes: the next ones after other work of this turn (other
   * connections' reads, timers), so that trials over many keys never stall the server.
   */
  #resumeLater(fb: FirstBytes): void {
    if (this.#resumeSoon) return;
    this.#resumeSoon = true;
    setImmediate(() => {
      this.#resumeSoon = false;
      if (!this.#c.socket.destroyed) this.#step(fb, null);
    });
  }

  /**
   * Every failure before authentication, and a key its gate refuses, ends here: read and drop until
   * the fixed timer or the peer closes (or, with a handover, leave at once).
   */
  #fail(fb: FirstBytes, code: ErrorCode): void {
    const socket = this.#c.socket;
    this.#failed = true;
    this.#o.rejected(code);
    debug('pre-auth failure %s', code);
    if (this.#c.handover) {
      this.#handOver(fb, false);
      return;
    }
    fb.stop();
    socket.on('data', discard);
    socket.once('end', () => {
      clearTimeout(this.#authTimer);
      socket.destroy();
    });
    socket.resume();
  }

  /**
   * A peer that closes before authenticating gets its close back, and nothing else (with a
   * handover: its end goes along with its bytes).
   */
  #onEnd(fb: FirstBytes): void {
    if (!this.#failed) this.#o.rejected('ERR_PROBE_SHORT');
    if (this.#c.handover) {
      this.#handOver(fb, true);
      return;
    }
    clearTimeout(this.#authTimer);
    this.#c.socket.destroy();
  }

  /** With a handover (a port that also serves TLS), the connection leaves with every byte it sent. */
  #handOver(fb: FirstBytes, ended: boolean): void {
    if (this.#handedOver) return;
    this.#handedOver = true;
    clearTimeout(this.#authTimer);
    fb.stop();
    this.#c.forget();
    this.#c.handover!.take(this.#c.socket, ended);
  }
}

function discard(): void {
  /* probe mode: read and drop */
}
