/**
 * The local HTTP proxy front end: CONNECT tunnels, and absolute-form requests (`GET http://...`)
 * forwarded with keep-alive on both sides, every upstream connection opened by a StreamDialer.
 *
 * ```
 * client ── head ──▶ decodeRequestHead ──▶ routeRequest
 *   CONNECT host:port ─▶ dial ─▶ "200 Connection established" ─▶ relay()
 *   GET http://h:p/x  ─▶ same h:p as the last request and still open? reuse it : dial
 *                      ─▶ origin-form head + body bytes as they come ─▶ upstream
 *   client ◀── response head (hop-by-hop fields replaced) + body bytes as they come ◀── upstream
 *   then the next request on the same client connection, while both sides persist (RFC 9112 §9.3)
 * ```
 * Heads go through the pure codec (codec/http-proxy.ts), which bounds them and refuses ambiguous
 * framing; bodies are never parsed or buffered: their bytes are forwarded unchanged (chunked stays
 * chunked) and the codec only says where each ends (proxy/message-reader.ts).
 *
 * Failures answer with a status and a plain-text body that names the cause: 400 malformed or not a
 * proxy request, 403 a destination the server refuses, 407 authentication required, 431 an
 * oversized head, 502 the dial failed (its code and the destination in the body), 504 timed out.
 * Nothing is logged with an address: the debug log carries error codes only.
 * @module
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { debuglog } from 'node:util';
import { CodecError, type ErrorCode } from '../errors.js';
import {
  decodeRequestHead,
  decodeResponseHead,
  encodeRequestHead,
  encodeResponseHead,
  forwardHeaders,
  headerValue,
  parseBasicAuth,
  persists,
  requestBodyFraming,
  requestHeadLength,
  responseBodyFraming,
  responseHeadLength,
  routeRequest,
  type BodyFraming,
  type HttpRequestHead,
  type HttpResponseHead,
} from '../codec/http-proxy.js';
import { relay } from '../transport/relay.js';
import { listenTcp } from '../transport/listen.js';
import type { StreamDialer, Target } from '../transport/types.js';
import { Credentials } from './credentials.js';
import { codeOf, describeDialFailure, httpStatusFor } from './failures.js';
import { HeadTimeout, MessageReader, StreamGone } from './message-reader.js';

const debug = debuglog('ladder:http-proxy');

export interface HttpProxyOptions {
  dialer: StreamDialer;
  /** username → password; when set, every request needs `Proxy-Authorization: Basic`. */
  users?: ReadonlyMap<string, string>;
  /** Time allowed for a request head to arrive once the connection is open (default 30 s). */
  headTimeoutMs?: number;
  /** Close a client connection idle between requests after this long (default 60 s). */
  keepAliveTimeoutMs?: number;
  /** Give up on an upstream response head after this long: 504 (default 300 s). */
  responseTimeoutMs?: number;
  /** Passed to relay() for CONNECT tunnels (default none). */
  idleTimeoutMs?: number;
  /** Called with the code of every failure: a metric hook. */
  onError?: (code: ErrorCode) => void;
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  407: 'Proxy Authentication Required',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
  502: 'Bad Gateway',
  504: 'Gateway Timeout',
};

/** A complete plain-text response from the proxy itself. */
function statusResponse(
  status: number,
  body: string,
  keepAlive: boolean,
  extra: [string, string][] = [],
): Buffer {
  const text = `${status} ${REASONS[status] ?? ''}: ${body}\n`;
  const head: HttpResponseHead = {
    version: '1.1',
    status,
    reason: REASONS[status] ?? '',
    headers: [
      ['Content-Type', 'text/plain; charset=utf-8'],
      ['Content-Length', String(Buffer.byteLength(text))],
      ...extra,
      ['Connection', keepAlive ? 'keep-alive' : 'close'],
    ],
  };
  const out = Buffer.alloc(responseHeadLength(head) + Buffer.byteLength(text));
  const n = encodeResponseHead(head, out, 0);
  out.write(text, n, 'utf8');
  return out;
}

function hostKey(t: Target): string {
  return `${t.host.toLowerCase()} ${t.port}`;
}

/** An upstream connection kept for the next request to the same host:port. */
interface Upstream {
  readonly key: string;
  readonly reader: MessageReader;
}

/** Why an exchange could not complete, and whether the client may still be answered. */
class ExchangeFailure extends Error {
  readonly status: number;
  readonly code: ErrorCode;
  /** Nothing reached the upstream server's application: the request may be sent again. */
  readonly retryable: boolean;
  constructor(status: number, code: ErrorCode, message: string, retryable = false) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryable = retryable;
  }
}

export class HttpProxyServer {
  readonly #o: HttpProxyOptions;
  readonly #credentials: Credentials | null;
  readonly #sockets = new Set<Socket>();
  readonly #upstreams = new Set<Duplex>();
  readonly #closing = new AbortController();
  readonly #dialing = new Set<AbortController>();
  #server: Server | null = null;

  constructor(options: HttpProxyOptions) {
    this.#o = options;
    this.#credentials = options.users ? new Credentials(options.users) : null;
  }

  /** Listens on host:port (port 0: any free port). Rejects with ERR_LISTEN naming the problem. */
  async listen(host: string, port: number): Promise<AddressInfo> {
    const server = createServer({ allowHalfOpen: true, noDelay: true }, (s) => this.handle(s));
    await listenTcp(server, host, port, 'HTTP proxy', '--http');
    server.on('error', (e: NodeJS.ErrnoException) => debug('listener error %s', e.code));
    this.#server = server;
    return server.address() as AddressInfo;
  }

  /** Stops accepting, cancels pending dials, and closes every client and upstream connection. */
  async close(): Promise<void> {
    const s = this.#server;
    this.#server = null;
    this.#closing.abort();
    for (const a of this.#dialing) a.abort();
    for (const c of this.#sockets) c.destroy();
    for (const u of this.#upstreams) u.destroy();
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }

  #fail(code: ErrorCode): void {
    debug('failure %s', code);
    this.#o.onError?.(code);
  }

  /** Serves one accepted connection; usable with a listener of your own. */
  handle(socket: Socket): void {
    if (this.#closing.signal.aborted) {
      socket.destroy();
      return;
    }
    this.#sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('error', () => socket.destroy());
    void this.#serve(socket).finally(() => this.#sockets.delete(socket));
  }

  async #serve(socket: Socket): Promise<void> {
    const client = new MessageReader(socket);
    let upstream: Upstream | null = null;
    // The client going away takes the current upstream with it.
    const onClientClose = (): void => {
      upstream?.reader.stream.destroy();
    };
    socket.on('close', onClientClose);
    const dropUpstream = (): void => {
      if (upstream) {
        upstream.reader.release();
        upstream.reader.stream.destroy();
        upstream = null;
      }
    };
    try {
      for (let first = true; ; first = false) {
        let decoded;
        try {
          decoded = await client.readHead(
            decodeRequestHead,
            first ? (this.#o.headTimeoutMs ?? 30_000) : (this.#o.keepAliveTimeoutMs ?? 60_000),
          );
        } catch (err) {
          if (err instanceof HeadTimeout) {
            if (err.partial)
              endWith(socket, statusResponse(408, 'the request head is incomplete', false));
            else endWith(socket, null); // an idle keep-alive connection: just close it
          } else if (err instanceof CodecError) {
            this.#fail(err.code);
            const status = err.code === 'ERR_HTTP_TOO_LARGE' ? 431 : 400;
            endWith(socket, statusResponse(status, `${err.message} (${err.code})`, false));
          } else socket.destroy();
          return;
        }
        if (decoded === null) break; // the client closed between requests
        const req = decoded.value;

        if (!this.#authorized(req)) {
          this.#fail('ERR_SOCKS_AUTH');
          // Keep the connection when no body follows: a browser retries with credentials on it.
          const keep = persists(req.version, req.headers) && !hasBody(req);
          socket.write(
            statusResponse(407, 'proxy authentication required', keep, [
              ['Proxy-Authenticate', 'Basic realm="ladder", charset="UTF-8"'],
            ]),
          );
          if (keep) continue;
          break;
        }

        let route;
        let framing: BodyFraming;
        try {
          route = routeRequest(req);
          framing = route.kind === 'connect' ? { kind: 'none' } : requestBodyFraming(req);
        } catch (err) {
          const code = codeOf(err);
          this.#fail(code);
          endWith(socket, statusResponse(400, `${(err as Error).message} (${code})`, false));
          return;
        }

        if (route.kind === 'connect') {
          dropUpstream();
          await this.#tunnel(socket, client, route.target);
          return;
        }

        if (upstream && (upstream.key !== hostKey(route.target) || !upstream.reader.reusable))
          dropUpstream();
        let outcome: { clientPersists: boolean; upstream: Upstream | null };
        try {
          outcome = await this.#exchange(client, req, route, framing, upstream);
        } catch (err) {
          upstream = null;
          const f =
            err instanceof ExchangeFailure
              ? err
              : new ExchangeFailure(502, 'ERR_DIAL', (err as Error).message);
          this.#fail(f.code);
          if (f.status > 0 && !socket.destroyed)
            endWith(socket, statusResponse(f.status, f.message, false));
          else socket.destroy();
          return;
        }
        upstream = outcome.upstream;
        if (!outcome.clientPersists) break;
      }
      endWith(socket, null);
    } finally {
      socket.off('close', onClientClose);
      dropUpstream();
    }
  }

  #authorized(req: HttpRequestHead): boolean {
    if (!this.#credentials) return true;
    const cred = parseBasicAuth(headerValue(req.headers, 'proxy-authorization'));
    return cred !== null && this.#credentials.check(cred.username, cred.password);
  }

  async #dial(target: Target, client: Socket): Promise<Duplex> {
    // One controller per dial, aborted by the client's close or by close() (AbortSignal.any costs
    // tens of µs per connection).
    const abort = new AbortController();
    const onGone = (): void => abort.abort();
    client.once('close', onGone);
    this.#dialing.add(abort);
    try {
      const up = await this.#o.dialer.dial(target, abort.signal);
      this.#upstreams.add(up);
      up.once('close', () => this.#upstreams.delete(up));
      up.on('error', () => up.destroy());
      return up;
    } finally {
      this.#dialing.delete(abort);
      client.off('close', onGone);
    }
  }

  async #tunnel(socket: Socket, client: MessageReader, target: Target): Promise<void> {
    let up: Duplex;
    try {
      up = await this.#dial(target, socket);
    } catch (err) {
      this.#fail(codeOf(err));
      if (!socket.destroyed)
        endWith(
          socket,
          statusResponse(httpStatusFor(err), describeDialFailure(err, target), false),
        );
      return;
    }
    if (socket.destroyed) {
      up.destroy();
      return;
    }
    const early = client.release(); // bytes the client sent after the head (a TLS ClientHello)
    socket.write('HTTP/1.1 200 Connection established\r\n\r\n');
    if (early !== null) up.write(early);
    socket.resume();
    const result = await relay(
      socket,
      up,
      this.#o.idleTimeoutMs ? { idleTimeoutMs: this.#o.idleTimeoutMs } : {},
    );
    if (result.error) this.#fail(result.error.code);
  }

  /**
   * One request and its response. Resolves with whether the client connection persists and the
   * upstream to keep (null when it must not be reused); rejects with an ExchangeFailure whose
   * status is 0 once a response has begun (then the client connection can only be closed).
   */
  async #exchange(
    client: MessageReader,
    req: HttpRequestHead,
    route: { target: Target; path: string; hostHeader: string },
    framing: BodyFraming,
    kept: Upstream | null,
  ): Promise<{ clientPersists: boolean; upstream: Upstream | null }> {
    const socket = client.stream as Socket;
    let upstream = kept;
    for (let attempt = 0; ; attempt++) {
      const reused = upstream !== null;
      if (upstream === null) {
        try {
          upstream = {
            key: hostKey(route.target),
            reader: new MessageReader(await this.#dial(route.target, socket)),
          };
        } catch (err) {
          throw new ExchangeFailure(
            httpStatusFor(err),
            codeOf(err),
            describeDialFailure(err, route.target),
          );
        }
      }
      try {
        return await this.#forward(client, req, route, framing, upstream);
      } catch (err) {
        upstream.reader.release();
        upstream.reader.stream.destroy();
        upstream = null;
        // A kept connection the server closed just as we reused it: send the request again, once,
        // when that cannot repeat anything (no body, a safe method, no response byte seen).
        if (
          err instanceof ExchangeFailure &&
          err.retryable &&
          reused &&
          attempt === 0 &&
          framing.kind === 'none' &&
          (req.method === 'GET' || req.method === 'HEAD' || req.method === 'OPTIONS')
        )
          continue;
        throw err;
      }
    }
  }

  /**
   * Reads response heads until the final one, forwarding 1xx responses to a 1.1 client;
   * `responseStarted` says whether the client has had bytes of a response already.
   */
  async #finalResponse(
    upstream: Upstream,
    req: HttpRequestHead,
    socket: Socket,
    where: string,
    bodyError: () => unknown,
  ): Promise<{ res: HttpResponseHead; responseStarted: boolean }> {
    let res: HttpResponseHead;
    let responseStarted = false;
    for (;;) {
      let decoded;
      try {
        decoded = await upstream.reader.readHead(
          decodeResponseHead,
          this.#o.responseTimeoutMs ?? 300_000,
        );
      } catch (err) {
        throw headFailure(err, where, responseStarted, bodyError());
      }
      if (decoded === null)
        throw new ExchangeFailure(
          responseStarted ? 0 : 502,
          'ERR_DIAL',
          `${where} closed the connection without a response`,
          !responseStarted,
        );
      res = decoded.value;
      if (res.status >= 200) break;
      if (res.status === 101)
        throw new ExchangeFailure(502, 'ERR_HTTP_PARSE', `${where} switched protocols unasked`);
      // RFC 9110 §15.2: a proxy forwards 1xx responses (100 Continue, 103 Early Hints) to 1.1 clients.
      if (req.version === '1.1') {
        const interim: HttpResponseHead = { ...res, version: '1.1' };
        const b = Buffer.alloc(responseHeadLength(interim));
        encodeResponseHead(interim, b, 0);
        socket.write(b);
        responseStarted = true;
      }
    }
    return { res, responseStarted };
  }

  async #forward(
    client: MessageReader,
    req: HttpRequestHead,
    route: { target: Target; path: string; hostHeader: string },
    framing: BodyFraming,
    upstream: Upstream,
  ): Promise<{ clientPersists: boolean; upstream: Upstream | null }> {
    const socket = client.stream as Socket;
    const up = upstream.reader.stream;
    const where = `the server at ${route.hostHeader}`;

    const headBytes = forwardedRequestHead(req, route);
    // The head and the body bytes that came with it leave together (one write down the tunnel).
    up.cork();
    up.write(headBytes);

    // The request body goes up while the response may already be coming down.
    let bodySent = framing.kind === 'none';
    let bodyError: unknown = null;
    const body = client.pumpBody(framing, up).then(
      () => {
        bodySent = true;
      },
      (err: unknown) => {
        bodyError = err;
        up.destroy(); // the upstream cannot get a whole request now; stop waiting for its answer
      },
    );
    process.nextTick(() => up.uncork());

    const { res, responseStarted } = await this.#finalResponse(
      upstream,
      req,
      socket,
      where,
      () => bodyError,
    );

    let resFraming: BodyFraming;
    try {
      resFraming = responseBodyFraming(req.method, res);
    } catch (err) {
      throw new ExchangeFailure(
        responseStarted ? 0 : 502,
        codeOf(err),
        `${where} sent a response with bad framing: ${(err as Error).message}`,
      );
    }
    const clientPersists =
      persists(req.version, req.headers) && resFraming.kind !== 'close' && !socket.destroyed;
    const outBytes = forwardedResponseHead(res, clientPersists);
    socket.write(outBytes);
    try {
      await upstream.reader.pumpBody(resFraming, socket);
    } catch (err) {
      throw new ExchangeFailure(0, codeOf(err), `the response body broke off: ${String(err)}`);
    }

    // The response is complete. Reuse needs the request body to have gone up whole, too.
    if (!bodySent) {
      // The server answered before taking the whole body (e.g. 413): neither connection can carry
      // another message. Stop sending; the client connection closes after this response.
      up.destroy();
      await body;
      return { clientPersists: false, upstream: null };
    }
    const keepUpstream =
      req.version === '1.1' &&
      persists(res.version, res.headers) &&
      resFraming.kind !== 'close' &&
      upstream.reader.reusable;
    if (keepUpstream) upstream.reader.watchIdle();
    else {
      upstream.reader.release();
      up.destroy();
    }
    return { clientPersists, upstream: keepUpstream ? upstream : null };
  }
}

/**
 * The request head sent upstream. RFC 9112 §3.2.2: the Host field is replaced by the target URI's
 * authority. No Via field is added (RFC 9110 §7.6.3 asks for one): announcing a proxy to every
 * origin defeats its purpose.
 */
function forwardedRequestHead(
  req: HttpRequestHead,
  route: { path: string; hostHeader: string },
): Buffer {
  const head: HttpRequestHead = {
    method: req.method,
    target: route.path,
    version: req.version,
    headers: [
      ['Host', route.hostHeader],
      ...forwardHeaders(req.headers, { keepFraming: true, drop: ['host'] }),
    ],
  };
  const headBytes = Buffer.alloc(requestHeadLength(head));
  encodeRequestHead(head, headBytes, 0);
  return headBytes;
}

/** The response head sent to the client: the upstream's fields and our own Connection field. */
function forwardedResponseHead(res: HttpResponseHead, clientPersists: boolean): Buffer {
  const out: HttpResponseHead = {
    version: '1.1',
    status: res.status,
    reason: res.reason,
    headers: [
      ...forwardHeaders(res.headers, { keepFraming: true }),
      ['Connection', clientPersists ? 'keep-alive' : 'close'],
    ],
  };
  const outBytes = Buffer.alloc(responseHeadLength(out));
  encodeResponseHead(out, outBytes, 0);
  return outBytes;
}

/** What failed when no response head could be read: the upstream, or the request body going up. */
function headFailure(
  err: unknown,
  where: string,
  responseStarted: boolean,
  bodyError: unknown,
): ExchangeFailure {
  if (err instanceof HeadTimeout)
    return new ExchangeFailure(
      responseStarted ? 0 : 504,
      'ERR_DIAL_TIMEOUT',
      `${where} did not answer in time`,
    );
  if (err instanceof CodecError)
    return new ExchangeFailure(
      502,
      err.code,
      `${where} sent a malformed response: ${err.message} (${err.code})`,
    );
  const clean = err instanceof StreamGone && err.clean;
  if (bodyError instanceof CodecError)
    return new ExchangeFailure(
      400,
      bodyError.code,
      `the request body is malformed: ${bodyError.message} (${bodyError.code})`,
    );
  if (bodyError !== null) return new ExchangeFailure(0, 'ERR_DIAL', 'the request body broke off');
  return new ExchangeFailure(
    responseStarted ? 0 : 502,
    'ERR_DIAL',
    `${where} closed the connection without a response`,
    clean && !responseStarted,
  );
}

function hasBody(req: HttpRequestHead): boolean {
  try {
    return requestBodyFraming(req).kind !== 'none';
  } catch {
    return true;
  }
}

/** Sends a last message (or none) and closes, giving the peer 2 s to close first. */
function endWith(socket: Socket, bytes: Buffer | null): void {
  if (socket.destroyed) return;
  if (bytes) socket.end(bytes);
  else socket.end();
  setTimeout(() => socket.destroy(), 2_000).unref();
}
