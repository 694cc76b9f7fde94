/**
 * One TCP port for every protocol: a connection whose first bytes are a TLS ClientHello goes to the
 * TLS front (Trojan, WebSockets on secret paths, and the decoy web site for everything else: see
 * ws-front.ts); anything else is raw Shadowsocks.
 *
 * The choice uses only the first 11 bytes (src/codec/tls-hello.ts). On a port that serves TLS, a
 * connection that Shadowsocks refuses — bytes no key opens, a replay, a bad timestamp, a refused
 * key, a close before authenticating — is handed with every byte it sent to the same TLS stack
 * (tls-handover.ts), so that it meets what a TLS web server does with those bytes, not Shadowsocks'
 * silence; or, when its first byte is one nginx reads as plain HTTP on its ssl port and the site
 * can answer that, to the site's plain-HTTP answer (plain-http-handover.ts). While too few bytes
 * have come to decide (to classify, or for Shadowsocks to try its keys), the chosen handover is fed
 * them as a shadow: as soon as it would react (an alert, an answer, a close), the connection is
 * handed to it, at that moment; as long as it would wait, so does the port.
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
import {
  PlainHttpHandover,
  isPlainHttpStart,
  type PlainHttpAnswer,
} from './plain-http-handover.js';
import { PreAuthGuard, linkPreAuth, readFirstBytes } from './pre-auth.js';

const debug = debuglog('ladder:mux');

export interface TlsFront {
  secureContext: SecureContext;
  /** Takes each connection once its TLS handshake is done (a TrojanHandler, or a TlsInnerFront). */
  handler: { handle(conn: Duplex): void };
  /**
   * Answers plain HTTP sent to this port as nginx does (the decoy's 497 page), for what
   * Shadowsocks refuses and nginx would read as plain HTTP (plain-http-handover.ts). Without it,
   * such bytes go to the TLS stack too (a `--fallback` web server has no such page to give).
   */
  plainHttp?: PlainHttpAnswer;
}

/** What a connection Shadowsocks refuses is handed to: the TLS stack, or nginx's plain-HTTP answer. */
type Handover = TlsHandover | PlainHttpHandover;

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
    // Fed the first bytes while they cannot be classified: would a web server react already?
    let shadow: Handover | null = null;
    let fed = 0;
    // No stage timer: the connection's pre-auth ticket closes it at the deadline, in any stage.
    socket.once('close', () => shadow?.abandon());
    readFirstBytes(socket, {
      onEnd: (fb) => {
        this.#sockets.delete(socket);
        const all = fb.q.takeAll();
        const h = shadow ?? this.#handover(all[0]);
        h.feed(all.subarray(fed));
        h.feedEnd();
        this.#commit(h, socket);
      },
      onBytes: (fb) => {
        // At most 11 bytes are ever held here before the choice, plus the chunk that decides it.
        const head = fb.q.peek(fb.q.length);
        const kind = classifyFirstBytes(head);
        if (kind === null && head.length < CLIENT_HELLO_PREFIX_LENGTH) {
          if (!shadow) {
            const h = (shadow = this.#handover(head[0], () => {
              fb.stop();
              this.#sockets.delete(socket);
              this.#commit(h, socket);
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
   * Not a ClientHello: Shadowsocks, with TLS (or nginx's plain-HTTP answer) taking whatever
   * Shadowsocks refuses. `shadow`, when set, has been fed `head` already.
   */
  #other(socket: Socket, head: Buffer, startedAt: number, shadow: Handover | null): void {
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
          h = this.#handover(head[0], release);
          for (const b of seen) h.feed(b);
        } else if (h.reacted) release();
      },
      authenticated: () => {
        if (graceTimer) clearTimeout(graceTimer);
        h?.abandon();
      },
      take: (sock, ended) => {
        if (graceTimer) clearTimeout(graceTimer);
        const x = h ?? this.#handover(head[0]);
        if (!h) for (const b of seen) x.feed(b);
        if (ended) x.feedEnd();
        this.#commit(x, sock);
      },
    });
  }

  /** The handover nginx would pick by the connection's first byte (`undefined`: none came). */
  #handover(first: number | undefined, onReact?: () => void): Handover {
    const plain = this.#o.tls!.plainHttp;
    if (plain && first !== undefined && isPlainHttpStart(first))
      return new PlainHttpHandover(plain, onReact);
    return new TlsHandover({
      secureContext: this.#o.tls!.secureContext,
      alpn: ALPN,
      ...(onReact ? { onReact } : {}),
    });
  }

  /** The connection is TLS's (or the site's); its pre-auth ticket still ends it at the deadline. */
  #commit(h: Handover, socket: Duplex): void {
    if (h instanceof PlainHttpHandover) {
      h.commit(socket);
      return;
    }
    const front = this.#o.tls!;
    linkPreAuth(socket, h.tls);
    h.commit(socket, (tls) => front.handler.handle(tls));
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
    // A handshake that never completes is closed at the socket's pre-auth deadline.
    closeOnEndBeforeHandshake(tls);
  }
}
