/**
 * The web face of the TLS port (and of the plain `--ws-listen` port for use behind a CDN): every
 * connection is read as HTTP. A WebSocket upgrade on one of the secret paths becomes a WebSocket;
 * every other request — another path, the secret path without a proper upgrade, garbage — goes with
 * every byte it sent to the decoy site (the same Fallback as Trojan's), which answers as a web
 * server would (docs/probe-resistance.md, "TLS transports").
 *
 * Inside the WebSocket the first bytes say what is carried (the client chose when it made its key):
 * - a Trojan request (56 lower-case hex digits of a password hash) → the TrojanHandler, as v2ray's
 *   trojan outbound with `network: ws` sends it;
 * - a Mux.Cool New frame → Mux.Cool sessions, each a Shadowsocks stream (v2ray-plugin's default);
 * - anything else → one Shadowsocks stream (v2ray-plugin with `mux=0`, and Ladder's client).
 * Shadowsocks streams go into the same SsServer as raw TCP: same keys, replay filters and probe rule.
 * A Trojan request inside a WebSocket whose password is unknown gets that same Shadowsocks rule
 * (silence, then a close at the fixed timeout) rather than the decoy: whoever sends it already knows
 * the secret path, and a web site does not answer inside a WebSocket.
 * @module
 */
import {
  DEFAULT_AUTH_TIMEOUT_MS,
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_MAX_CONNECTIONS,
} from '../core/defaults.js';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { debuglog } from 'node:util';
import { decodeRequestHead, headerValue } from '../codec/http1.js';
import {
  SecretPaths,
  acceptUpgradeRequest,
  upgradeResponse,
} from '../codec/websocket-handshake.js';
import { classifyMuxStart } from '../codec/mux-cool.js';
import { TROJAN_HASH_LENGTH } from '../codec/trojan.js';
import { WebSocketStream } from '../stream/websocket-stream.js';
import { MuxCool } from '../stream/mux-cool.js';
import { listenTcp } from '../transport/listen.js';
import type { SsServer } from './ss-server.js';
import type { TrojanHandler } from './trojan-server.js';
import type { Fallback } from './decoy/decoy-site.js';
import { PreAuthGuard, readFirstBytes, settlePreAuth, type FirstBytes } from './pre-auth.js';

const debug = debuglog('ladder:ws');
/** v2ray-core 4.34 features/policy: `UplinkOnly: time.Second * 1`, its servers' wait before closing. */
const CLOSE_LINGER_MS = 1000;

export type WsPayload = 'trojan' | 'mux' | 'ss';

function isLowerHex(b: number): boolean {
  return (b >= 0x30 && b <= 0x39) || (b >= 0x61 && b <= 0x66);
}

/**
 * What the first bytes of a WebSocket's payload carry; null while they cannot tell yet. A
 * Shadowsocks salt is random: it passes for a Trojan hash with odds (22/256)^56 and for a Mux.Cool
 * New frame about once in 2^36 (see classifyMuxStart).
 */
export function classifyWsPayload(b: Uint8Array, trojan: boolean): WsPayload | null {
  if (b.length === 0) return null;
  if (trojan && isLowerHex(b[0]!)) {
    let i = 1;
    while (i < Math.min(b.length, TROJAN_HASH_LENGTH) && isLowerHex(b[i]!)) i++;
    if (i === TROJAN_HASH_LENGTH) return 'trojan';
    if (i === b.length) return null; // all hex so far
    return 'ss'; // a hex start that breaks off: a salt (a Mux.Cool frame starts with 0x00)
  }
  const m = classifyMuxStart(b);
  return m === null ? null : m === 'mux' ? 'mux' : 'ss';
}

export interface WsFrontOptions {
  /** The secret paths of every WebSocket key. */
  paths: readonly string[];
  ss: SsServer;
  /** Trojan over WebSocket; without it, WebSocket payloads are Shadowsocks only. */
  trojan?: TrojanHandler;
  /** The web site for everything that is not an upgrade on a secret path. */
  fallback: Fallback;
  /** Hand a connection whose request head has not arrived within this long to the site (default 30 s). */
  headTimeoutMs?: number;
  /** A WebSocket whose payload has not said what it is within this long is closed (default 60 s). */
  authTimeoutMs?: number;
  /** A Mux.Cool connection without sessions for this long is closed (default 5 min; `--idle-timeout`). */
  idleTimeoutMs?: number;
  events?: {
    /** A WebSocket was accepted, carrying `payload`. */
    upgraded?(payload: WsPayload): void;
  };
}

export class WsFront implements Fallback {
  readonly #o: WsFrontOptions;
  readonly #paths: SecretPaths;
  /** Inside a WebSocket, whatever fails gets the Shadowsocks probe rule. */
  readonly #probeRule: Fallback;
  /** Connections that became WebSockets (a Mux.Cool one may outlive its sessions). */
  readonly #live = new Set<Duplex>();

  constructor(options: WsFrontOptions) {
    this.#o = options;
    this.#paths = new SecretPaths(options.paths);
    this.#probeRule = {
      handle: (conn, head) => options.ss.handleConnection(conn, head),
      close: () => {},
    };
  }

  /** Takes a connection whose first bytes `head` were already read (TLS unwrapped, or plain TCP). */
  handle(conn: Duplex, head: Buffer = Buffer.alloc(0)): void {
    conn.on('error', () => conn.destroy());
    const toSite = (fb: FirstBytes, why: string): void => {
      fb.stop();
      debug('to the site: %s', why);
      this.#o.fallback.handle(conn, fb.q.takeAll());
    };
    readFirstBytes(conn, {
      head,
      stageTimeoutMs: this.#o.headTimeoutMs ?? 30_000,
      onTimeout: (fb) => toSite(fb, 'no request head in time'),
      // A client that closes before a whole head: the site gets what came, as a web server would.
      onEnd: (fb) => toSite(fb, 'closed before a whole head'),
      onBytes: (fb) => {
        const q = fb.q;
        // A web server rejects a request whose method cannot be one at the first bad byte (Node's
        // llhttp answers 400 at once); waiting for a whole head would make garbage meet silence
        // here and a 400 at the site alone, which a prober can tell apart.
        if (!canStartRequestLine(q.peek(Math.min(q.length, MAX_METHOD_LENGTH + 1)))) {
          toSite(fb, 'not an HTTP method');
          return;
        }
        let decoded;
        try {
          decoded = decodeRequestHead(q.peek(q.length), 0);
        } catch {
          toSite(fb, 'not an HTTP request head');
          return;
        }
        if (decoded === null) return;
        const key = acceptUpgradeRequest(decoded.value, this.#paths);
        if (key === null) {
          toSite(fb, 'not an upgrade on a secret path');
          return;
        }
        fb.stop();
        // Whoever asks for a secret path knows the key's secret: the pre-auth deadline ends here.
        settlePreAuth(conn);
        q.take(decoded.bytesRead);
        this.#live.add(conn);
        conn.once('close', () => this.#live.delete(conn));
        conn.write(upgradeResponse(key));
        // v2ray's clients (Go's User-Agent) lose buffered data when a Close comes as soon as the
        // answer ends; v2ray's servers wait for 1 s of quiet first, and so do we. Ladder's client,
        // which presents a browser's User-Agent, takes the Close as the end of the stream at once.
        const ua = headerValue(decoded.value.headers, 'user-agent') ?? '';
        const ws = new WebSocketStream(conn, {
          role: 'server',
          head: q.takeAll(),
          closeLingerMs: ua.startsWith('Mozilla/') ? 0 : CLOSE_LINGER_MS,
        });
        this.#payload(ws);
        conn.resume();
      },
    });
  }

  /** Closes every WebSocket it opened (the fallback is its owner's to close). */
  close(): void {
    for (const c of this.#live) c.destroy();
    this.#live.clear();
  }

  /** Reads the first payload bytes of an accepted WebSocket and hands it to its protocol. */
  #payload(ws: WebSocketStream): void {
    const ss = this.#o.ss;
    const started = ss.clock.now();
    const trojan = this.#o.trojan;
    ws.on('error', (e) => debug('websocket error %s', e.message));
    readFirstBytes(ws, {
      stageTimeoutMs: this.#o.authTimeoutMs ?? DEFAULT_AUTH_TIMEOUT_MS,
      onTimeout: () => ws.destroy(),
      // Closed before a word: closed back, as the Shadowsocks rule does.
      onEnd: () => ws.destroy(),
      onBytes: (fb) => {
        const q = fb.q;
        const kind = classifyWsPayload(q.peek(Math.min(q.length, TROJAN_HASH_LENGTH)), !!trojan);
        if (kind === null) return;
        fb.stop();
        debug('websocket carrying %s', kind);
        this.#o.events?.upgraded?.(kind);
        const first = q.takeAll();
        switch (kind) {
          case 'trojan':
            ws.unshift(first);
            trojan!.handle(ws, this.#probeRule);
            break;
          case 'mux':
            new MuxCool(ws, {
              role: 'server',
              head: first,
              idleTimeoutMs: this.#o.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
              onSession: (s) => ss.handleConnection(s),
            });
            ws.resume();
            break;
          case 'ss':
            ss.handleConnection(ws, first, started);
            break;
        }
      },
    });
  }
}

/** Longest method llhttp knows (MKCALENDAR, PROPPATCH, ... are shorter). */
const MAX_METHOD_LENGTH = 20;

/** False once the bytes cannot begin a request line: methods are upper-case letters and '-'. */
function canStartRequestLine(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) {
    const c = b[i]!;
    if (c === 0x20) return i > 0;
    if (!((c >= 0x41 && c <= 0x5a) || (c === 0x2d && i > 0))) return false;
  }
  return b.length <= MAX_METHOD_LENGTH;
}

/**
 * After TLS: a Trojan request (its first byte is a lower-case hex digit) goes to Trojan, whose own
 * fallback is the site; anything else is read as HTTP by the WsFront.
 */
export class TlsInnerFront {
  readonly #trojan: TrojanHandler | undefined;
  readonly #web: WsFront;

  constructor(o: { trojan?: TrojanHandler; web: WsFront }) {
    this.#trojan = o.trojan;
    this.#web = o.web;
  }

  handle(conn: Duplex): void {
    readFirstBytes(conn, {
      onBytes: (fb) => {
        fb.stop();
        const first = fb.q.takeAll();
        if (this.#trojan && isLowerHex(first[0]!)) {
          conn.unshift(first);
          this.#trojan.handle(conn);
        } else this.#web.handle(conn, first);
      },
      // Silence, or a close before a byte: the site decides, as it would for any web client.
      onEnd: () => this.#web.handle(conn),
    });
  }
}

/**
 * Plain HTTP for WebSockets behind a CDN or reverse proxy (`--ws-listen`): no TLS, no raw Trojan.
 * Every connection holds a pre-authentication ticket (pre-auth.ts) until its upgrade on a secret
 * path or a complete request to the site; share the guard with the main port so the caps count
 * every listener together.
 */
export class WsListener {
  readonly #front: WsFront;
  readonly #preAuth: PreAuthGuard;
  readonly #sockets = new Set<Socket>();
  #server: Server | null = null;

  constructor(front: WsFront, preAuth: PreAuthGuard = new PreAuthGuard()) {
    this.#front = front;
    this.#preAuth = preAuth;
  }

  async listen(
    host: string,
    port: number,
    maxConnections = DEFAULT_MAX_CONNECTIONS,
  ): Promise<AddressInfo> {
    const server = createServer({ allowHalfOpen: true }, (s) => {
      if (!this.#preAuth.admit(s, s.remoteAddress)) return;
      s.setNoDelay(true);
      this.#sockets.add(s);
      s.on('close', () => this.#sockets.delete(s));
      this.#front.handle(s);
    });
    server.maxConnections = maxConnections;
    await listenTcp(server, host, port, 'WebSocket', '--ws-listen');
    server.on('error', (e) => debug('listener error %s', e.message));
    this.#server = server;
    return server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    const s = this.#server;
    this.#server = null;
    if (!s) return;
    const closed = new Promise<void>((r) => s.close(() => r()));
    for (const c of this.#sockets) c.destroy();
    await closed;
  }
}
