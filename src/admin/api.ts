/**
 * The management API: Outline's Server Management API (shadowbox `api.yml`) so that Outline Manager
 * and its scripts can manage a Ladder server, Ladder's additions under `/ladder/v1`, and the web
 * dashboard under `/dashboard/`; all of it over HTTPS behind a random secret path prefix, as Outline
 * serves it. A request whose path does not start with the prefix gets the same 404 as an unknown
 * route, decided in constant time, before any routing.
 *
 * Errors follow Outline's (restify's) shape: `{"code": "NotFoundError", "message": "..."}` with 400,
 * 404, 409 or 500.
 * @module
 */
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
} from 'node:http';
import { TLSSocket, createSecureContext } from 'node:tls';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { AddressInfo } from 'node:net';
import { timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { debuglog } from 'node:util';
import QRCode from 'qrcode';
import { LadderError } from '../errors.js';
import { listenTcp } from '../transport/listen.js';
import type { AdminService } from './service.js';
import { SecretPrefixFront, type ApiConnectionHandler } from './api-front.js';
import { DecoySite, type Fallback } from '../server/decoy/decoy-site.js';
import { endedReplay } from '../stream/ended-replay.js';
import { DECOY_TLS_OPTIONS } from '../server/decoy/tls-context.js';
import { splitByFirstByte } from '../server/plain-http-handover.js';

const debug = debuglog('ladder:api');
const MAX_BODY_BYTES = 64 * 1024;
/** A connection that has not finished its TLS handshake by then is closed (nginx: 60 s). */
const HANDSHAKE_TIMEOUT_MS = 60_000;

/** The dashboard's files, shipped in the package beside dist/. */
export const DASHBOARD_DIR = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  '..',
  'assets',
  'dashboard',
);

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

class HttpError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Constant-time "starts with", as Outline's prefix filter. */
function startsWithSecret(path: string, prefix: string): boolean {
  const a = Buffer.from(path);
  const b = Buffer.from(prefix);
  const n = Math.min(a.length, b.length);
  const same = timingSafeEqual(a.subarray(0, n), b.subarray(0, n));
  return same && a.length >= b.length;
}

type Handler = (
  params: string[],
  body: () => Promise<Record<string, unknown>>,
  query: URLSearchParams,
) => Promise<Reply> | Reply;

interface Reply {
  status: number;
  json?: unknown;
  raw?: { type: string; body: string | Buffer };
}

const NO_CONTENT: Reply = { status: 204 };

export interface ManagementApiOptions {
  service: AdminService;
  /** The secret path prefix, e.g. "/Xk3...": a leading slash and no trailing one. */
  prefix: string;
  cert: string;
  key: string;
  dashboardDir?: string;
}

export class ManagementApi implements ApiConnectionHandler {
  readonly #o: ManagementApiOptions;
  readonly #routes: { method: string; pattern: RegExp; handler: Handler }[] = [];
  /** Serves connections handed over by a SecretPrefixFront; never listens itself. */
  readonly #http: HttpServer;
  #server: TcpServer | null = null;
  #front: SecretPrefixFront | null = null;
  /** Connections handed to #http (a server that never listens does not track them itself). */
  readonly #conns = new Set<Duplex>();

  constructor(options: ManagementApiOptions) {
    if (!/^\/[A-Za-z0-9_-]{8,}$/.test(options.prefix))
      throw new LadderError(
        'ERR_CONFIG',
        'the API prefix must be "/" and at least 8 URL-safe characters',
      );
    this.#o = options;
    this.#defineRoutes();
    this.#http = createHttpServer(
      { requestTimeout: 30_000, headersTimeout: 20_000 },
      // #handle answers every error itself; this catch is the net under it, so that a handler's
      // bug costs one request rather than the process (an unhandled rejection ends Node).
      (req, res) =>
        void this.#handle(req, res).catch((err: Error) => {
          debug('request handler failed: %s', err.message);
          res.destroy();
        }),
    );
    this.#http.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      debug('client error %s', err.code ?? err.message);
      if (socket.writable)
        socket.end(
          `HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n${JSON.stringify({ code: 'BadRequest', message: `malformed HTTP request (${err.code ?? 'parse error'})` })}`,
        );
      else socket.destroy();
    });
  }

  /** The secret path prefix ("/Xk3..."). */
  get prefix(): string {
    return this.#o.prefix;
  }

  /**
   * A front for a TLS port shared with something else (the main port): connections whose first
   * request is under the secret prefix come here, all others go to `fallback`.
   */
  front(fallback: Fallback): SecretPrefixFront {
    return new SecretPrefixFront(this.#o.prefix, this, fallback);
  }

  handleConnection(conn: Duplex, head: Buffer): void {
    this.#conns.add(conn);
    conn.once('close', () => this.#conns.delete(conn));
    if (conn.readableEnded) {
      this.#http.emit('connection', endedReplay(conn, head) as Socket);
      return;
    }
    if (head.length > 0) conn.unshift(head);
    this.#http.emit('connection', conn as Socket);
    if (conn.isPaused()) conn.resume();
  }

  /**
   * Serves the API over TLS on its own port. A connection whose first request is outside the
   * secret prefix gets `fallback` (default: the built-in decoy site), as the main port would give.
   */
  async listen(host: string, port: number, fallback?: Fallback): Promise<AddressInfo> {
    const front = this.front(fallback ?? new DecoySite());
    const secureContext = createSecureContext({
      cert: this.#o.cert,
      key: this.#o.key,
      ...DECOY_TLS_OPTIONS,
    });
    // As nginx's ssl port: the first byte picks TLS or plain HTTP, and plain HTTP gets the site's
    // "plain HTTP request was sent to HTTPS port" page (never the API: its prefix is a secret).
    const plain = front.handlePlainOnTlsPort;
    const server = createTcpServer((raw) => {
      raw.on('error', () => raw.destroy());
      // Silence and a handshake that never completes end here, as tls.Server's handshakeTimeout.
      const timer = setTimeout(() => raw.destroy(), HANDSHAKE_TIMEOUT_MS);
      timer.unref();
      raw.once('close', () => clearTimeout(timer));
      const tls = (conn: Duplex): void => {
        const s = new TLSSocket(conn as Socket, { isServer: true, secureContext } as never);
        s.on('error', () => s.destroy());
        s.once('secure', () => {
          clearTimeout(timer);
          front.handle(s, Buffer.alloc(0));
        });
      };
      if (!plain) return tls(raw);
      splitByFirstByte(raw, tls, (conn, head) => {
        clearTimeout(timer); // the site's own header timeout applies from here
        plain(conn, head);
      });
    });
    await listenTcp(server, host, port, 'TCP', '--api');
    this.#server = server;
    this.#front = front;
    return server.address() as AddressInfo;
  }

  close(): Promise<void> {
    const s = this.#server;
    this.#server = null;
    for (const c of this.#conns) c.destroy();
    this.#conns.clear();
    this.#front?.close();
    this.#front = null;
    if (!s) return Promise.resolve();
    return new Promise((r) => s.close(() => r()));
  }

  #route(method: string, path: string, handler: Handler): void {
    // {id} matches one path segment
    const pattern = new RegExp(`^${path.replace(/\{id\}/g, '([^/]+)')}$`);
    this.#routes.push({ method, pattern, handler });
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let reply: Reply;
    try {
      const url = requestUrl(req.url);
      const path = url.pathname;
      if (!startsWithSecret(path, this.#o.prefix))
        throw new HttpError(404, 'ResourceNotFound', `${path} does not exist`);
      const rest = path.slice(this.#o.prefix.length);
      if (rest === '' || rest === '/') {
        res.writeHead(302, { Location: `${this.#o.prefix}/dashboard/` }).end();
        return;
      }
      if (rest.startsWith('/dashboard/') && req.method === 'GET') {
        reply = await this.#dashboardFile(rest.slice('/dashboard/'.length) || 'index.html');
      } else {
        const method = req.method ?? 'GET';
        let found: { handler: Handler; params: string[] } | null = null;
        let pathMatched = false;
        for (const r of this.#routes) {
          const m = r.pattern.exec(rest);
          if (!m) continue;
          pathMatched = true;
          if (r.method !== method) continue;
          found = { handler: r.handler, params: m.slice(1).map(decodeSegment) };
          break;
        }
        if (!found) {
          if (pathMatched)
            throw new HttpError(405, 'MethodNotAllowed', `${method} is not allowed on ${rest}`);
          throw new HttpError(404, 'ResourceNotFound', `${rest} does not exist`);
        }
        reply = await found.handler(found.params, () => readJson(req), url.searchParams);
      }
    } catch (err) {
      reply = errorReply(err);
    }
    const headers: Record<string, string> = {
      'Cache-Control': 'no-store',
      'X-Content-Type-Options': 'nosniff',
      'Referrer-Policy': 'no-referrer',
    };
    if (reply.raw) {
      headers['Content-Type'] = reply.raw.type;
      if (reply.raw.type.startsWith('text/html'))
        headers['Content-Security-Policy'] =
          "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
      res.writeHead(reply.status, headers).end(reply.raw.body);
    } else if (reply.json !== undefined) {
      headers['Content-Type'] = 'application/json';
      res.writeHead(reply.status, headers).end(JSON.stringify(reply.json));
    } else {
      res.writeHead(reply.status, headers).end();
    }
  }

  async #dashboardFile(name: string): Promise<Reply> {
    const dir = this.#o.dashboardDir ?? DASHBOARD_DIR;
    const file = normalize(join(dir, name));
    const type = CONTENT_TYPES[file.slice(file.lastIndexOf('.'))];
    if (!file.startsWith(dir + '/') || !type || name.includes('\0'))
      throw new HttpError(404, 'ResourceNotFound', `${name} does not exist`);
    try {
      return { status: 200, raw: { type, body: await readFile(file) } };
    } catch {
      throw new HttpError(404, 'ResourceNotFound', `${name} does not exist`);
    }
  }

  #defineRoutes(): void {
    this.#defineServerRoutes();
    this.#defineKeyRoutes();
    this.#defineLadderRoutes();
  }

  /** A new key: `id` from the path (PUT) or none (POST); a body may not name its own id. */
  #createKey(id: string | undefined, body: Record<string, unknown>): Reply {
    const s = this.#o.service;
    if (body.id !== undefined)
      throw new HttpError(400, 'InvalidArgument', 'Parameter `id` is not allowed');
    const k = s.createKey(body, id);
    return { status: 201, json: s.keyJson(k) };
  }

  /** Outline's API: the server's settings and metrics. */
  #defineServerRoutes(): void {
    const s = this.#o.service;
    const keys = s.keys;
    const r = this.#route.bind(this);
    r('GET', '/server', () => ({ status: 200, json: s.serverJson() }));
    r('PUT', '/name', async (_p, body) => {
      const { name } = await body();
      if (name === undefined)
        throw new HttpError(400, 'MissingParameter', 'Parameter `name` is missing');
      if (typeof name !== 'string')
        throw new HttpError(400, 'InvalidArgument', 'Parameter `name` must be of type string');
      s.name = name;
      return NO_CONTENT;
    });
    r('PUT', '/server/hostname-for-access-keys', async (_p, body) => {
      const { hostname } = await body();
      if (hostname === undefined)
        throw new HttpError(400, 'MissingParameter', 'hostname must be provided');
      s.hostname = hostname as string;
      return NO_CONTENT;
    });
    r('PUT', '/server/port-for-new-access-keys', async (_p, body) => {
      const { port } = await body();
      if (port === undefined)
        throw new HttpError(400, 'MissingParameter', 'Parameter `port` is missing');
      s.portForNewAccessKeys = port as number;
      return NO_CONTENT;
    });
    for (const path of ['/server/access-key-data-limit', '/experimental/access-key-data-limit']) {
      r('PUT', path, async (_p, body) => {
        keys.setDefaultLimit((await body()).limit);
        return NO_CONTENT;
      });
      r('DELETE', path, () => {
        keys.setDefaultLimit(null);
        return NO_CONTENT;
      });
    }
    r('GET', '/metrics/enabled', () => ({
      status: 200,
      json: { metricsEnabled: s.metricsEnabled },
    }));
    r('PUT', '/metrics/enabled', async (_p, body) => {
      s.metricsEnabled = (await body()).metricsEnabled as boolean;
      return NO_CONTENT;
    });
    r('GET', '/metrics/transfer', () => ({
      status: 200,
      json: { bytesTransferredByUserId: keys.transferByKey() },
    }));
    r('GET', '/experimental/server/metrics', (_p, _b, q) => ({
      status: 200,
      json: experimentalServerMetrics(keys, q.get('since')),
    }));
  }

  /** Outline's API: access keys. */
  #defineKeyRoutes(): void {
    const s = this.#o.service;
    const keys = s.keys;
    const r = this.#route.bind(this);
    const create = async (id: string | undefined, body: Record<string, unknown>): Promise<Reply> =>
      this.#createKey(id, body);
    r('GET', '/access-keys', () => ({
      status: 200,
      json: { accessKeys: keys.list().map((k) => s.keyJson(k)) },
    }));
    r('POST', '/access-keys', async (_p, body) => create(undefined, await body()));
    r('PUT', '/access-keys/{id}', async ([id], body) => create(id!, await body()));
    r('GET', '/access-keys/{id}', ([id]) => ({ status: 200, json: s.keyJson(keys.get(id!)) }));
    r('DELETE', '/access-keys/{id}', ([id]) => {
      keys.delete(id!);
      return NO_CONTENT;
    });
    r('PUT', '/access-keys/{id}/name', async ([id], body) => {
      const { name } = await body();
      if (name === undefined)
        throw new HttpError(400, 'MissingParameter', 'Parameter `name` is missing');
      keys.rename(id!, name);
      return NO_CONTENT;
    });
    r('PUT', '/access-keys/{id}/data-limit', async ([id], body) => {
      keys.setDataLimit(id!, (await body()).limit);
      return NO_CONTENT;
    });
    r('DELETE', '/access-keys/{id}/data-limit', ([id]) => {
      keys.setDataLimit(id!, null);
      return NO_CONTENT;
    });
  }

  /** Ladder's additions under /ladder/v1: health, fleet, usage, key patches and QR codes. */
  #defineLadderRoutes(): void {
    const s = this.#o.service;
    const keys = s.keys;
    const r = this.#route.bind(this);
    const create = async (id: string | undefined, body: Record<string, unknown>): Promise<Reply> =>
      this.#createKey(id, body);
    const v1 = '/ladder/v1';
    r('GET', `${v1}/server/health`, () => {
      const m = s.metrics?.snapshot();
      const states: Record<string, number> = {};
      for (const k of keys.list()) states[k.state] = (states[k.state] ?? 0) + 1;
      return {
        status: 200,
        json: {
          name: s.name,
          version: s.serverJson().version,
          uptimeSeconds: m?.uptimeS ?? 0,
          activeConnections: m?.active ?? 0,
          connectionsTotal: m?.connections ?? 0,
          probesTotal: m?.probes ?? 0,
          keys: states,
        },
      };
    });
    r('GET', `${v1}/fleet`, () => ({ status: 200, json: s.fleetJson() }));
    r('GET', `${v1}/usage`, (_p, _b, q) => ({
      status: 200,
      json: { days: keys.history(undefined, parseDays(q.get('days'))) },
    }));
    r('POST', `${v1}/access-keys`, async (_p, body) => {
      const b = await body();
      return create(typeof b.id === 'string' ? b.id : undefined, { ...b, id: undefined });
    });
    r('PATCH', `${v1}/access-keys/{id}`, async ([id], body) => ({
      status: 200,
      json: s.keyJson(s.patchKey(id!, await body())),
    }));
    r('GET', `${v1}/access-keys/{id}/usage`, ([id], _b, q) => ({
      status: 200,
      json: { days: keys.history(id!, parseDays(q.get('days'))) },
    }));
    r('GET', `${v1}/access-keys/{id}/qr.svg`, async ([id], _b, q) => {
      const k = s.keyJson(keys.get(id!));
      const url =
        q.get('transport') === 'trojan' && k.ladder.trojanUrl ? k.ladder.trojanUrl : k.accessUrl;
      const svg = await QRCode.toString(url, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 });
      return { status: 200, raw: { type: 'image/svg+xml', body: svg } };
    });
  }
}

/** Outline's /experimental/server/metrics: bytes per key since `since` (no timing or location). */
function experimentalServerMetrics(keys: AdminService['keys'], since: string | null): object {
  if (!since) throw new HttpError(400, 'MissingParameter', 'Parameter `since` is missing');
  const days = parseSince(since);
  // Outline's ids are integers and so is this field: keys with ids of their own are left out.
  const perKey = keys
    .list()
    .filter((k) => /^\d+$/.test(k.id))
    .map((k) => {
      const bytes = keys.history(k.id, days).reduce((a, d) => a + d.bytes, 0);
      return {
        accessKeyId: Number(k.id),
        dataTransferred: { bytes },
        // Ladder keeps no per-connection timing or location history (docs/privacy.md).
        tunnelTime: { seconds: 0 },
        connection: {
          lastTrafficSeen: null,
          peakDeviceCount: { data: k.devices, timestamp: null },
        },
      };
    });
  return {
    server: {
      dataTransferred: { bytes: perKey.reduce((a, k) => a + k.dataTransferred.bytes, 0) },
      tunnelTime: { seconds: 0 },
      locations: [],
    },
    accessKeys: perKey,
  };
}

function parseDays(v: string | null): number {
  if (v === null) return 30;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 366)
    throw new HttpError(400, 'InvalidArgument', '`days` must be an integer from 1 to 366');
  return n;
}

/** Outline's `since`: a number and a unit (s, m, h, d, w); Ladder counts whole days. */
function parseSince(v: string): number {
  const m = /^(\d+)([smhdw])$/.exec(v);
  if (!m) throw new HttpError(400, 'InvalidArgument', `Invalid time range: ${v}`);
  const seconds = Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 }[m[2] as 's'];
  return Math.min(366, Math.max(1, Math.ceil(seconds / 86_400)));
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_BODY_BYTES)
      throw new HttpError(413, 'PayloadTooLarge', `the body is over ${MAX_BODY_BYTES} bytes`);
    chunks.push(c);
  }
  if (size === 0) return {};
  let v: unknown;
  try {
    v = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'InvalidContent', 'the body is not JSON');
  }
  if (!v || typeof v !== 'object' || Array.isArray(v))
    throw new HttpError(400, 'InvalidContent', 'the body must be a JSON object');
  return v as Record<string, unknown>;
}

/**
 * The request target as a URL: an absolute path, or the absolute form (`https://host/path`, RFC
 * 9112 §3.2.2). Anything else (`//%00`, whose "host" the URL parser rejects with a throw; `*`) is a
 * 404 like any unknown path, never an exception: a rejected #handle promise would end the whole
 * server.
 */
function requestUrl(target: string | undefined): URL {
  const t = target ?? '/';
  const origin = t.startsWith('/') && !t.startsWith('//');
  if (origin || /^https?:\/\//i.test(t)) {
    try {
      return origin ? new URL(t, 'https://x') : new URL(t);
    } catch {
      // not a target the parser takes: the 404 below
    }
  }
  throw new HttpError(404, 'ResourceNotFound', 'the request target is not a path');
}

/** A path parameter, percent-decoded; a malformed escape (`%ZZ`) names no resource: 404, not 500. */
function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new HttpError(404, 'ResourceNotFound', `${segment} is not a valid path segment`);
  }
}

function errorReply(err: unknown): Reply {
  if (err instanceof HttpError)
    return { status: err.status, json: { code: err.code, message: err.message } };
  if (err instanceof LadderError) {
    switch (err.code) {
      case 'ERR_NOT_FOUND':
        return { status: 404, json: { code: 'NotFoundError', message: err.message } };
      case 'ERR_CONFLICT':
        return { status: 409, json: { code: 'Conflict', message: err.message } };
      case 'ERR_STORE_UNAVAILABLE':
        return { status: 503, json: { code: 'StoreUnavailable', message: err.message } };
      case 'ERR_USAGE':
      case 'ERR_UNKNOWN_METHOD':
      case 'ERR_KEY_URI':
        return { status: 400, json: { code: 'InvalidArgument', message: err.message } };
    }
  }
  debug('internal error %s', (err as Error).message);
  return { status: 500, json: { code: 'InternalServerError', message: 'internal error' } };
}
