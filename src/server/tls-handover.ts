/**
 * A server TLS connection that reads bytes before it has a socket: for the one port that serves
 * both raw Shadowsocks and TLS (port-mux.ts), so that bytes which are not a ClientHello and fail
 * Shadowsocks meet exactly what the TLS stack in front of the decoy site does with them (an alert,
 * a close, a handshake, or waiting for more), rather than Shadowsocks' silence, which a prober could
 * tell from a web server's reaction (docs/probe-resistance.md, "One port with TLS").
 *
 * The TLS socket runs over a bridge: bytes are fed in by hand (what Shadowsocks saw), and what TLS
 * writes is held back until {@link TlsHandover.commit} gives it the real socket; then the held
 * output leaves, and the socket's further bytes and its end flow in. Before the commit nothing
 * reaches the wire, so the same object serves as a shadow: fed the first bytes of a connection that
 * Shadowsocks cannot decide yet, it says ({@link TlsHandover.reacted}, `onReact`) whether a TLS
 * server would already have answered or closed, which is the moment the port must decide too.
 * @module
 */
import { Duplex } from 'node:stream';
import { TLSSocket, type SecureContext } from 'node:tls';
import { debuglog } from 'node:util';
import { markEncryptsOnWrite } from '../stream/recycled-reads.js';

const debug = debuglog('ladder:mux');

/** Until commit: bytes fed by hand, output held. After: the socket's bytes in, output out. */
class Bridge extends Duplex {
  #socket: Duplex | null = null;
  #held: Buffer[] = [];
  #heldEnd = false;
  #heldDestroy = false;
  #onOutput: () => void;

  constructor(onOutput: () => void) {
    super({ allowHalfOpen: true });
    this.#onOutput = onOutput;
  }

  get committed(): boolean {
    return this.#socket !== null;
  }

  /** Gives the bridge its socket: held output leaves, and the socket's bytes and end flow in. */
  attach(socket: Duplex): void {
    this.#socket = socket;
    for (const b of this.#held.splice(0)) socket.write(b);
    if (this.#heldDestroy) {
      socket.destroy();
      return;
    }
    if (this.#heldEnd) socket.end();
    socket.on('data', (c: Buffer) => {
      if (!this.push(c)) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('error', (e) => this.destroy(e));
    socket.on('close', () => this.destroy());
    socket.resume();
  }

  override _read(): void {
    this.#socket?.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.#socket) {
      this.#socket.write(chunk, cb);
      return;
    }
    this.#held.push(Buffer.from(chunk));
    this.#onOutput();
    cb();
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.#socket) this.#socket.end();
    else {
      this.#heldEnd = true;
      this.#onOutput();
    }
    cb();
  }

  override _destroy(err: Error | null, cb: (err: Error | null) => void): void {
    if (this.#socket) this.#socket.destroy();
    else {
      this.#heldDestroy = true;
      this.#onOutput();
    }
    cb(err);
  }
}

export interface TlsHandoverOptions {
  secureContext: SecureContext;
  alpn: string[];
  /** Once, when the TLS stack first writes, ends or fails: a server would have reacted now. */
  onReact?: () => void;
}

export class TlsHandover {
  readonly tls: TLSSocket;
  readonly #bridge: Bridge;
  #reacted = false;
  #onReact: (() => void) | undefined;

  /** Replaces the reaction callback (the port hands a shadow from one phase to the next). */
  set onReact(f: (() => void) | undefined) {
    this.#onReact = f;
  }

  constructor(o: TlsHandoverOptions) {
    this.#onReact = o.onReact;
    this.#bridge = new Bridge(() => this.#react());
    // what the relay writes to it is encrypted at once: reads from targets need not be held
    this.tls = markEncryptsOnWrite(
      new TLSSocket(this.#bridge, {
        isServer: true,
        secureContext: o.secureContext,
        ALPNProtocols: o.alpn,
      } as never),
    );
    this.tls.on('error', (e) => {
      debug('tls error %s', e.message);
      this.#react();
      this.tls.destroy();
    });
    this.tls.on('close', () => this.#react());
    closeOnEndBeforeHandshake(this.tls);
  }

  /** Has the TLS stack written, ended or failed on what it was fed? */
  get reacted(): boolean {
    return this.#reacted;
  }

  #react(): void {
    if (this.#reacted || this.#bridge.committed) return;
    this.#reacted = true;
    const f = this.#onReact;
    this.#onReact = undefined;
    // Called from inside the TLS stack's own callbacks: the port decides on the next tick.
    if (f) process.nextTick(f);
  }

  /** Bytes the connection sent, in order (before the commit). */
  feed(bytes: Buffer): void {
    if (bytes.length > 0) this.#bridge.push(bytes);
  }

  /** The connection ended after what was fed (before the commit). */
  feedEnd(): void {
    this.#bridge.push(null);
  }

  /**
   * The connection is TLS's from now on: what TLS wrote so far leaves on `socket`, and what the
   * socket sends next reaches TLS. `onSecure` gets the TLS connection once its handshake is done.
   * A handshake that never completes is the pre-authentication deadline's to end (pre-auth.ts): the
   * socket's ticket closes it, whatever stage the connection is in.
   */
  commit(socket: Duplex, onSecure: (tls: TLSSocket) => void): void {
    const tls = this.tls;
    // The TLS connection runs over a stream, not the socket itself: answer for its peer.
    Object.defineProperty(tls, 'remoteAddress', {
      configurable: true,
      get: () => (socket as { remoteAddress?: string }).remoteAddress,
    });
    tls.once('secure', () => onSecure(tls));
    socket.on('error', () => socket.destroy());
    this.#bridge.attach(socket);
  }

  /** Not needed after all (Shadowsocks took the connection): nothing was or will be sent. */
  abandon(): void {
    if (this.#bridge.committed) return;
    this.#onReact = undefined;
    this.tls.destroy();
  }
}

/**
 * A peer that ends before the handshake is done gets the end back at once, as from a TLS server on
 * a socket without half-open (Node's default, nginx): the port's sockets allow half-open for the
 * Trojan connections behind TLS, so it is done here for the handshake alone.
 */
export function closeOnEndBeforeHandshake(tls: TLSSocket): void {
  let secure = false;
  tls.once('secure', () => (secure = true));
  tls.once('end', () => {
    if (!secure) tls.end();
  });
}
