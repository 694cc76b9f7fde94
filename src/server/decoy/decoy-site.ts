/**
 * What a TLS port shows to anyone without a key: a web site. The bytes a client already sent (which
 * failed to be a Trojan request) are given back to the site intact, so the site answers exactly what
 * it would have answered had it received the connection directly (trojan-gfw's fallback design).
 *
 * Two kinds: the built-in site (or a directory of the operator's files), served by node:http over
 * the connection; or a forward to another address (a real web server), byte for byte.
 * @module
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize, sep } from 'node:path';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { DECOY_PAGES, NOT_FOUND_PAGE } from './pages.js';
import { relay } from '../../transport/relay.js';
import { endedReplay } from '../../stream/ended-replay.js';
import type { StreamDialer, Target } from '../../transport/types.js';
import { linkPreAuth, settlePreAuth } from '../pre-auth.js';

const BAD_REQUEST = 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n';
/** Node's own answers (lib/_http_server.js socketOnError), by parser error code. */
const CLIENT_ERROR_RESPONSES: Record<string, string> = {
  HPE_HEADER_OVERFLOW: 'HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n',
  HPE_CHUNK_EXTENSIONS_OVERFLOW: 'HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\n\r\n',
  ERR_HTTP_REQUEST_TIMEOUT: 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n',
};

/** Takes over a connection whose first bytes (`head`) were already read. */
export interface Fallback {
  handle(conn: Duplex, head: Buffer): void;
  close(): void;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
};

/** The built-in decoy pages, or the files under `dir` when given. */
export class DecoySite implements Fallback {
  readonly #server: Server;
  readonly #dir: string | undefined;

  constructor(options: { dir?: string } = {}) {
    this.#dir = options.dir;
    this.#server = createServer(
      { keepAliveTimeout: 5000, headersTimeout: 20_000, requestTimeout: 30_000 },
      (req, res) => {
        // #serve handles what it can meet; a bug in it costs one request, not the process.
        this.#serve(req, res).catch(() => res.destroy());
      },
    );
    // A whole request head arrived: the connection is a web client's now, out of the pre-auth deadline.
    this.#server.on('request', (req: IncomingMessage) => settlePreAuth(req.socket));
    // Look like an ordinary server: no X-Powered-By, a plain Server header.
    // Node's default answer to a malformed request is write() then destroy() at once, which loses
    // the answer when the write cannot finish synchronously (a TLS socket over a connection whose
    // first bytes were already read, as in the one-port server): the same bytes then drew a 400
    // from the site alone and a bare FIN through Ladder (found by the lab's prober, test/lab).
    // Same answers as Node's, sent before the connection closes.
    this.#server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      if (!socket.writable) {
        socket.destroy();
        return;
      }
      socket.end(CLIENT_ERROR_RESPONSES[err.code ?? ''] ?? BAD_REQUEST, () => socket.destroy());
    });
  }

  handle(conn: Duplex, head: Buffer): void {
    // The peer ended before the bytes could be judged: the site gets them and the end, as it would.
    if (conn.readableEnded) {
      const replay = endedReplay(conn, head);
      linkPreAuth(conn, replay);
      this.#server.emit('connection', replay as Socket);
      return;
    }
    if (head.length > 0) conn.unshift(head);
    this.#server.emit('connection', conn as Socket);
    // A connection handed over paused (the WebSocket front pauses while it decides) flows again.
    if (conn.isPaused()) conn.resume();
  }

  close(): void {
    this.#server.closeAllConnections();
    this.#server.close();
  }

  async #serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    res.setHeader('server', 'nginx');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/html; charset=utf-8' });
      res.end(req.method === 'HEAD' ? undefined : NOT_FOUND_PAGE);
      return;
    }
    let path = (req.url ?? '/').split('?')[0]!;
    try {
      path = decodeURIComponent(path);
    } catch {
      path = '/';
    }
    if (path.endsWith('/')) path += 'index.html';
    const found = await this.#lookup(path);
    if (!found) {
      res.writeHead(404, {
        'content-type': 'text/html; charset=utf-8',
        'content-length': Buffer.byteLength(NOT_FOUND_PAGE),
      });
      res.end(req.method === 'HEAD' ? undefined : NOT_FOUND_PAGE);
      return;
    }
    res.writeHead(200, {
      'content-type': found.type,
      'content-length': found.body.length,
      'cache-control': 'max-age=3600',
    });
    res.end(req.method === 'HEAD' ? undefined : found.body);
  }

  async #lookup(path: string): Promise<{ type: string; body: Buffer } | null> {
    if (this.#dir === undefined) {
      const p = DECOY_PAGES.get(path);
      return p ? { type: p.type, body: Buffer.from(p.body) } : null;
    }
    const full = normalize(join(this.#dir, path));
    if (!full.startsWith(normalize(this.#dir) + sep)) return null; // no way out of the directory
    try {
      return {
        type: TYPES[extname(full)] ?? 'application/octet-stream',
        body: await readFile(full),
      };
    } catch {
      return null;
    }
  }
}

/** Forwards the connection, first bytes included, to another web server. */
export class ForwardFallback implements Fallback {
  readonly #target: Target;
  readonly #dialer: StreamDialer;

  constructor(target: Target, dialer: StreamDialer) {
    this.#target = target;
    this.#dialer = dialer;
  }

  handle(conn: Duplex, head: Buffer): void {
    // A peer that already ended: the web server gets the bytes and the end, as it would.
    const from = conn.readableEnded ? endedReplay(conn, Buffer.alloc(0)) : conn;
    from.pause();
    this.#dialer.dial(this.#target).then(
      (up) => {
        if (head.length > 0) up.write(head);
        from.resume();
        // The web server's first answer byte means it took a request: the pre-auth deadline ends.
        let answered = false;
        void relay(from, up, {
          idleTimeoutMs: 120_000,
          onBToA: () => {
            if (answered) return;
            answered = true;
            settlePreAuth(conn);
          },
        });
      },
      () => conn.destroy(),
    );
  }

  close(): void {}
}
