/**
 * The local HTTP proxy front end: CONNECT tunnels, and absolute-form requests (`GET http://...`)
 * forwarded with keep-alive on both sides, every connection carried by a StreamDialer. node:http
 * (llhttp) does the framing; src/codec/http-proxy.ts decides targets and forwardable headers.
 *
 * Failures answer with a status and a plain-text body that names the cause: 400 malformed or not a
 * proxy request, 407 authentication required, 502 the dial failed (with its code), 504 timed out,
 * 431 oversized head (node:http).
 * @module
 */
import {
  Agent,
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type RequestOptions,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createHash, timingSafeEqual } from 'node:crypto';
import { debuglog } from 'node:util';
import { LadderError, type ErrorCode } from '../errors.js';
import {
  forwardableHeaders,
  parseAbsoluteForm,
  parseAuthority,
  parseBasicAuth,
} from '../codec/http-proxy.js';
import { relay } from '../transport/relay.js';
import type { StreamDialer } from '../transport/types.js';

const debug = debuglog('ladder:http-proxy');

export interface HttpProxyOptions {
  dialer: StreamDialer;
  users?: ReadonlyMap<string, string>;
  idleTimeoutMs?: number;
  onError?: (code: ErrorCode) => void;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** An http.Agent whose connections are opened by a StreamDialer, pooled with keep-alive. */
class DialerAgent extends Agent {
  readonly #dialer: StreamDialer;
  constructor(dialer: StreamDialer) {
    super({
      keepAlive: true,
      keepAliveMsecs: 15_000,
      maxSockets: 64,
      maxFreeSockets: 16,
      timeout: 60_000,
    });
    this.#dialer = dialer;
  }
  override createConnection(
    options: { host?: string | null; port?: number | null },
    cb: (err: Error | null, socket?: Duplex) => void,
  ): undefined {
    const host = (options.host ?? '').replace(/^\[|\]$/g, '');
    this.#dialer.dial({ host, port: Number(options.port ?? 80) }).then(
      (s) => cb(null, s),
      (e: Error) => cb(e),
    );
    return undefined;
  }
}

function statusFor(err: unknown): number {
  const code = err instanceof LadderError ? err.code : undefined;
  if (code === 'ERR_DIAL_TIMEOUT') return 504;
  if (code === 'ERR_DIAL_FORBIDDEN') return 403;
  return 502;
}

function describe(err: unknown): string {
  if (err instanceof LadderError) return `${err.code}: ${err.message}`;
  return (err as Error | undefined)?.message ?? String(err);
}

export class HttpProxyServer {
  readonly #o: HttpProxyOptions;
  readonly #agent: DialerAgent;
  readonly #users: { name: Buffer; pass: Buffer }[] | null;
  #server: Server | null = null;

  constructor(options: HttpProxyOptions) {
    this.#o = options;
    this.#agent = new DialerAgent(options.dialer);
    this.#users = options.users
      ? [...options.users].map(([u, p]) => ({ name: digest(u), pass: digest(p) }))
      : null;
  }

  async listen(host: string, port: number): Promise<AddressInfo> {
    const server = createServer(
      { keepAlive: true, requestTimeout: 0, headersTimeout: 30_000 },
      (req, res) => this.#onRequest(req, res),
    );
    server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) =>
      this.#onConnect(req, socket, head),
    );
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      if (!socket.writable) return socket.destroy();
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
      const body =
        status === 431
          ? 'request head too large\n'
          : `malformed HTTP request (${err.code ?? 'parse error'})\n`;
      socket.end(
        `HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : 'Bad Request'}\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(
          new LadderError(
            'ERR_LISTEN',
            err.code === 'EADDRINUSE'
              ? `HTTP proxy ${host}:${port} is already in use; choose another with --http`
              : `HTTP proxy ${host}:${port}: ${err.message}`,
            { cause: err },
          ),
        ),
      );
      server.listen({ host, port, exclusive: true }, () => resolve());
    });
    this.#server = server;
    return server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    const s = this.#server;
    this.#server = null;
    this.#agent.destroy();
    if (s) {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
  }

  #authorized(req: IncomingMessage): boolean {
    if (!this.#users) return true;
    const cred = parseBasicAuth(req.headers['proxy-authorization']);
    if (!cred) return false;
    const u = digest(cred.username);
    const p = digest(cred.password);
    let ok = false;
    for (const e of this.#users)
      if (timingSafeEqual(e.name, u) && timingSafeEqual(e.pass, p)) ok = true;
    return ok;
  }

  #onConnect(req: IncomingMessage, socket: Socket, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const reply = (status: number, reason: string, body: string, extra = ''): void => {
      socket.end(
        `HTTP/1.1 ${status} ${reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}connection: close\r\n\r\n${body}`,
      );
    };
    if (!this.#authorized(req)) {
      this.#o.onError?.('ERR_SOCKS_AUTH');
      reply(
        407,
        'Proxy Authentication Required',
        'proxy authentication required\n',
        'proxy-authenticate: Basic realm="ladder"\r\n',
      );
      return;
    }
    let target;
    try {
      target = parseAuthority(req.url ?? '');
    } catch (err) {
      reply(400, 'Bad Request', `CONNECT needs host:port: ${(err as Error).message}\n`);
      return;
    }
    socket.pause();
    this.#o.dialer.dial(target).then(
      (up) => {
        if (socket.destroyed) {
          up.destroy();
          return;
        }
        socket.write('HTTP/1.1 200 Connection established\r\n\r\n');
        if (head.length > 0) up.write(head);
        socket.resume();
        void relay(
          socket,
          up,
          this.#o.idleTimeoutMs ? { idleTimeoutMs: this.#o.idleTimeoutMs } : {},
        );
      },
      (err: unknown) => {
        this.#o.onError?.(err instanceof LadderError ? err.code : 'ERR_DIAL');
        const status = statusFor(err);
        reply(
          status,
          status === 504 ? 'Gateway Timeout' : status === 403 ? 'Forbidden' : 'Bad Gateway',
          `could not reach ${req.url}: ${describe(err)}\n`,
        );
      },
    );
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    const fail = (status: number, body: string, headers: Record<string, string> = {}): void => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      res.writeHead(status, {
        'content-type': 'text/plain; charset=utf-8',
        'content-length': Buffer.byteLength(body),
        ...headers,
      });
      res.end(body);
    };
    if (!this.#authorized(req)) {
      this.#o.onError?.('ERR_SOCKS_AUTH');
      fail(407, 'proxy authentication required\n', {
        'proxy-authenticate': 'Basic realm="ladder"',
      });
      return;
    }
    let fwd;
    try {
      fwd = parseAbsoluteForm(req.url ?? '');
    } catch (err) {
      fail(400, `${(err as Error).message}\n`);
      return;
    }
    const headers = forwardableHeaders(req.rawHeaders).filter(([k]) => k.toLowerCase() !== 'host');
    const upReq = httpRequest({
      agent: this.#agent,
      host: fwd.target.host,
      port: fwd.target.port,
      method: req.method,
      path: fwd.path,
      headers: [['Host', fwd.hostHeader], ...headers].flat(),
      setHost: false,
    } as unknown as RequestOptions);
    upReq.on('response', (upRes) => {
      const out = forwardableHeaders(upRes.rawHeaders);
      res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, out.flat());
      upRes.pipe(res);
      upRes.on('error', () => res.destroy());
    });
    upReq.on('error', (err) => {
      debug('upstream error %s', err instanceof LadderError ? err.code : err.message);
      this.#o.onError?.(err instanceof LadderError ? err.code : 'ERR_DIAL');
      fail(statusFor(err), `could not reach ${fwd.hostHeader}: ${describe(err)}\n`);
    });
    req.pipe(upReq);
    req.on('error', () => upReq.destroy());
    res.on('close', () => {
      if (!res.writableFinished) upReq.destroy();
    });
  }
}
