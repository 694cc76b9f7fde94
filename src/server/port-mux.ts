/**
 * One TCP port for every protocol: a connection whose first bytes are a TLS ClientHello goes to the
 * TLS front (Trojan, WebSockets on secret paths, and the decoy web site for everything else: see
 * ws-front.ts); anything else is raw Shadowsocks.
 * The choice uses only the first 11 bytes (src/codec/tls-hello.ts). Until they have arrived, a
 * connection is treated exactly as a Shadowsocks server treats an unauthenticated one: nothing is
 * sent, and it is closed at the authentication timeout or when the peer closes
 * (docs/probe-resistance.md).
 * @module
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import { debuglog } from 'node:util';
import { CLIENT_HELLO_PREFIX_LENGTH, classifyFirstBytes } from '../codec/tls-hello.js';
import type { Duplex } from 'node:stream';
import type { SsServer } from './ss-server.js';
import { listenTcp } from '../transport/listen.js';

const debug = debuglog('ladder:mux');

export interface TlsFront {
  secureContext: SecureContext;
  /** Takes each connection once its TLS handshake is done (a TrojanHandler, or a TlsInnerFront). */
  handler: { handle(conn: Duplex): void };
}

export interface PortMuxOptions {
  ss: SsServer;
  tls?: TlsFront;
  authTimeoutMs?: number;
  maxConnections?: number;
}

export class PortMux {
  readonly #o: PortMuxOptions;
  readonly #sockets = new Set<Socket>();
  #server: Server | null = null;

  constructor(options: PortMuxOptions) {
    this.#o = options;
  }

  async listen(host: string, port: number): Promise<AddressInfo> {
    const server = createServer({ allowHalfOpen: true }, (s) => this.#onConnection(s));
    server.maxConnections = this.#o.maxConnections ?? 8192;
    await listenTcp(server, host, port, 'TCP', '--listen');
    server.on('error', (e) => debug('listener error %s', e.message));
    this.#server = server;
    const addr = server.address() as AddressInfo;
    try {
      await this.#o.ss.listenUdp(host, addr.port);
    } catch (err) {
      server.close();
      throw err;
    }
    return addr;
  }

  async close(graceMs = 5_000): Promise<void> {
    const s = this.#server;
    this.#server = null;
    const closed = s ? new Promise<void>((r) => s.close(() => r())) : Promise.resolve();
    await this.#o.ss.close(graceMs);
    for (const c of this.#sockets) c.destroy();
    await closed;
  }

  #onConnection(socket: Socket): void {
    const startedAt = Date.now();
    socket.setNoDelay(true);
    socket.on('error', () => socket.destroy());
    if (!this.#o.tls) {
      this.#o.ss.handleConnection(socket, undefined, startedAt);
      return;
    }
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
    let head: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => socket.destroy(), this.#o.authTimeoutMs ?? 60_000);
    timer.unref();
    const done = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.pause();
      this.#sockets.delete(socket);
    };
    const onEnd = (): void => {
      clearTimeout(timer);
      socket.destroy();
    };
    const onData = (chunk: Buffer): void => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]); // at most 11 bytes are ever joined
      const kind = classifyFirstBytes(head);
      if (kind === null && head.length < CLIENT_HELLO_PREFIX_LENGTH) return;
      done();
      if (kind === 'tls') this.#tls(socket, head);
      else this.#o.ss.handleConnection(socket, head, startedAt);
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
  }

  #tls(socket: Socket, head: Buffer): void {
    const front = this.#o.tls!;
    socket.unshift(head);
    const tls = new TLSSocket(socket, {
      isServer: true,
      secureContext: front.secureContext,
      ALPNProtocols: ['http/1.1'],
    } as never);
    tls.on('error', (e) => {
      debug('tls error %s', e.message);
      tls.destroy();
    });
    tls.once('secure', () => front.handler.handle(tls));
    // A handshake that never completes is closed like any other silent connection.
    const t = setTimeout(() => tls.destroy(), this.#o.authTimeoutMs ?? 60_000);
    t.unref();
    tls.once('secure', () => clearTimeout(t));
    tls.once('close', () => clearTimeout(t));
  }
}
