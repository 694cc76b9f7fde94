/**
 * One TCP port for every protocol: a connection whose first bytes are a TLS ClientHello goes to the
 * TLS front (Trojan, WebSockets on secret paths, and the decoy web site for everything else: see
 * ws-front.ts); anything else is raw Shadowsocks.
 *
 * The choice uses only the first 11 bytes (src/codec/tls-hello.ts). On a port that serves TLS, a
 * connection that Shadowsocks refuses — bytes no key opens, a replay, a bad timestamp, a refused
 * key, a close before authenticating — is handed with every byte it sent to the same TLS stack
 * (tls-handover.ts), so that it meets what a TLS web server does with those bytes, not Shadowsocks'
 * silence. While too few bytes have come to decide (to classify, or for Shadowsocks to try its
 * keys), the TLS stack is fed them as a shadow: as soon as it would react (an alert, a close), the
 * connection is handed to it, at that moment; as long as it would wait, so does the port.
 * (docs/probe-resistance.md, "One port with TLS", says what this costs a Shadowsocks client.)
 * A port without TLS treats every unauthenticated connection with Shadowsocks' probe rule.
 * @module
 */
import {
  DEFAULT_AUTH_TIMEOUT_MS,
  DEFAULT_CLOSE_GRACE_MS,
  DEFAULT_MAX_CONNECTIONS,
} from '../core/defaults.js';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import { debuglog } from 'node:util';
import { CLIENT_HELLO_PREFIX_LENGTH, classifyFirstBytes } from '../codec/tls-hello.js';
import type { Duplex } from 'node:stream';
import type { PreAuthControl, SsServer } from './ss-server.js';
import { listenTcp } from '../transport/listen.js';
import { markEncryptsOnWrite } from '../stream/recycled-reads.js';
import { TlsHandover, closeOnEndBeforeHandshake } from './tls-handover.js';
import { PreAuthGuard, linkPreAuth, readFirstBytes } from './pre-auth.js';

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
  /**
   * With TLS: how long a connection whose bytes a TLS server would already react to may still wait
   * for the rest of a Shadowsocks request before it is handed to TLS (default 0: at once, exactly
   * when the TLS server alone would react; a Shadowsocks client must then send its salt and first
   * header in its first segment, as every known client does).
   */
  shortHeadGraceMs?: number;
  /**
   * The deadline and caps for connections without a key (default: a guard of its own whose
   * deadline is `authTimeoutMs`); share one with the `--ws-listen` port so the caps count both.
   */
  preAuth?: PreAuthGuard;
}

/** ALPN of the TLS front: a web server on HTTP/1.1 (docs/tls-fingerprint.md). */
const ALPN = ['http/1.1'];

export class PortMux {
  readonly #o: PortMuxOptions;
  readonly #preAuth: PreAuthGuard;
  readonly #sockets = new Set<Socket>();
  #server: Server | null = null;

  constructor(options: PortMuxOptions) {
    this.#o = options;
    this.#preAuth =
      options.preAuth ??
      new PreAuthGuard({ deadlineMs: options.authTimeoutMs ?? DEFAULT_AUTH_TIMEOUT_MS });
  }

  async listen(host: string, port: number): Promise<AddressInfo> {
    const server = createServer({ allowHalfOpen: true }, (s) => this.#onConnection(s));
    server.maxConnections = this.#o.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
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

  async close(graceMs = DEFAULT_CLOSE_GRACE_MS): Promise<void> {
    const s = this.#server;
    this.#server = null;
    const closed = s ? new Promise<void>((r) => s.close(() => r())) : Promise.resolve();
    await this.#o.ss.close(graceMs);
    for (const c of this.#sockets) c.destroy();
    await closed;
  }

  #onConnection(socket: Socket): void {
    // Every connection is timed and capped from accept until it authenticates (pre-auth.ts).
    if (!this.#preAuth.admit(socket, socket.remoteAddress)) return;
    const startedAt = this.#o.ss.clock.now();
    socket.setNoDelay(true);
    socket.on('error', () => socket.destroy());
    if (!this.#o.tls) {
      this.#o.ss.handleConnection(socket, undefined, startedAt);
      return;
    }
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
    // Fed the first bytes while they cannot be classified: would a TLS server react already?
    let shadow: TlsHandover | null = null;
    let fed = 0;
    readFirstBytes(socket, {
      stageTimeoutMs: this.#o.authTimeoutMs ?? DEFAULT_AUTH_TIMEOUT_MS,
      onTimeout: () => {
        shadow?.abandon();
        socket.destroy();
      },
      onEnd: (fb) => {
        this.#sockets.delete(socket);
        const h = shadow ?? this.#handover();
        h.feed(fb.q.takeAll().subarray(fed));
        h.feedEnd();
        this.#commit(h, socket, startedAt);
      },
      onBytes: (fb) => {
        // At most 11 bytes are ever held here before the choice, plus the chunk that decides it.
        const head = fb.q.peek(fb.q.length);
        const kind = classifyFirstBytes(head);
        if (kind === null && head.length < CLIENT_HELLO_PREFIX_LENGTH) {
          if (!shadow) {
            const h = (shadow = this.#handover(() => {
              fb.stop();
              this.#sockets.delete(socket);
              this.#commit(h, socket, startedAt);
            }));
          }
          shadow.feed(head.subarray(fed));
          fed = head.length;
          return;
        }
        fb.stop();
        this.#sockets.delete(socket);
        const all = fb.q.takeAll();
        if (kind === 'tls') {
          shadow?.abandon();
          this.#tls(socket, all);
          return;
        }
        // The shadow sees every byte before Shadowsocks does, the deciding chunk's too.
        shadow?.feed(all.subarray(fed));
        this.#other(socket, all, startedAt, shadow);
      },
    });
  }

  /**
   * Not a ClientHello: Shadowsocks, with TLS taking whatever Shadowsocks refuses. `shadow`, when
   * set, has been fed `head` already.
   */
  #other(socket: Socket, head: Buffer, startedAt: number, shadow: TlsHandover | null): void {
    const seen: Buffer[] = [];
    let h = shadow;
    let skipHead = shadow !== null;
    let control: PreAuthControl | null = null;
    let graceTimer: NodeJS.Timeout | null = null;
    const release = (): void => {
      const grace = this.#o.shortHeadGraceMs ?? 0;
      if (grace <= 0) control?.release();
      else graceTimer ??= setTimeout(() => control?.release(), grace);
    };
    if (h) h.onReact = release;
    socket.once('close', () => {
      if (graceTimer) clearTimeout(graceTimer);
      h?.abandon();
    });
    control = this.#o.ss.handleConnection(socket, head, startedAt, {
      bytes: (chunk) => {
        if (skipHead) {
          skipHead = false;
          return;
        }
        const copy = Buffer.from(chunk); // Shadowsocks may decrypt the chunk in place
        seen.push(copy);
        h?.feed(copy);
      },
      undecided: () => {
        if (!h) {
          h = this.#handover(release);
          for (const b of seen) h.feed(b);
        } else if (h.reacted) release();
      },
      authenticated: () => {
        if (graceTimer) clearTimeout(graceTimer);
        h?.abandon();
      },
      take: (sock, ended) => {
        if (graceTimer) clearTimeout(graceTimer);
        const x = h ?? this.#handover();
        if (!h) for (const b of seen) x.feed(b);
        if (ended) x.feedEnd();
        this.#commit(x, sock, startedAt);
      },
    });
  }

  #handover(onReact?: () => void): TlsHandover {
    return new TlsHandover({
      secureContext: this.#o.tls!.secureContext,
      alpn: ALPN,
      ...(onReact ? { onReact } : {}),
    });
  }

  /** The connection is TLS's, with the handshake time left of the authentication timeout. */
  #commit(h: TlsHandover, socket: Duplex, startedAt: number): void {
    const front = this.#o.tls!;
    linkPreAuth(socket, h.tls);
    h.commit(
      socket,
      (tls) => front.handler.handle(tls),
      (this.#o.authTimeoutMs ?? DEFAULT_AUTH_TIMEOUT_MS) - (this.#o.ss.clock.now() - startedAt),
    );
  }

  #tls(socket: Socket, head: Buffer): void {
    const front = this.#o.tls!;
    socket.unshift(head);
    // what the relay writes to it is encrypted at once: reads from targets need not be held
    const tls = markEncryptsOnWrite(
      new TLSSocket(socket, {
        isServer: true,
        secureContext: front.secureContext,
        ALPNProtocols: ALPN,
      } as never),
    );
    linkPreAuth(socket, tls);
    tls.on('error', (e) => {
      debug('tls error %s', e.message);
      tls.destroy();
    });
    tls.once('secure', () => front.handler.handle(tls));
    closeOnEndBeforeHandshake(tls);
    // A handshake that never completes is closed like any other silent connection.
    const t = setTimeout(() => tls.destroy(), this.#o.authTimeoutMs ?? DEFAULT_AUTH_TIMEOUT_MS);
    t.unref();
    tls.once('secure', () => clearTimeout(t));
    tls.once('close', () => clearTimeout(t));
  }
}
