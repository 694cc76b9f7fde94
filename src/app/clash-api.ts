/**
 * A Clash-compatible REST API (the "external controller": en.clash.wiki/runtime/external-controller)
 * over a running Ladder client, the subset that the common dashboards (yacd, metacubexd, zashboard)
 * use: GET /version, GET|PATCH /configs, GET /proxies, GET|PUT /proxies/:name, GET /rules,
 * GET|DELETE /connections, DELETE /connections/:id, and the /traffic, /logs and /connections streams
 * (chunked JSON lines over HTTP, or text frames over a WebSocket, as Clash serves them).
 *
 * Authentication is Clash's: `Authorization: Bearer <secret>`, or `?token=<secret>` on a WebSocket
 * (browsers cannot set headers there), compared in constant time. Ladder's transports appear as
 * proxies; the group `PROXY` selects one of them or `auto` (the ladder:// key's failover).
 * @module
 */
import { timingSafeEqual, createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { encodeWsHeader, websocketAccept, wsHeaderLength, WS_OPCODE } from '../codec/websocket.js';
import type { ConnectionTable } from './connection-table.js';
import type { LogHub } from './log-hub.js';

/** One transport of the current key, as a Clash proxy. */
export interface ClashProxy {
  readonly name: string;
  /** Clash's type names: Shadowsocks, Trojan. */
  readonly type: string;
  readonly udp: boolean;
}

/** What the API shows and changes: the running client. */
export interface ClashBackend {
  readonly version: string;
  readonly connections: ConnectionTable;
  readonly logs: LogHub;
  /** The transports of the connected key (empty when disconnected). */
  proxies(): readonly ClashProxy[];
  /** `auto` or the name of one transport. */
  selected(): string;
  /** Selects `auto` or a transport; throws an Error with a message for people on an unknown name. */
  select(name: string): void;
  /** The routing rules in force, as Clash lists them. */
  rules(): readonly { type: string; payload: string; proxy: string }[];
  readonly ports: { readonly socks?: number; readonly http?: number };
}

/** The selector group Ladder shows, and its automatic member. */
export const PROXY_GROUP = 'PROXY';
export const AUTO = 'auto';
/** Streams one API port serves at once; more are refused with 503. */
export const MAX_STREAMS = 32;
/** A request body larger than this is refused (413). */
export const MAX_BODY_BYTES = 16 * 1024;

const digest = (s: string) => createHash('sha256').update(s).digest();

export class ClashApi {
  readonly #b: ClashBackend;
  readonly #secret: Buffer;
  readonly #intervalMs: number;
  #streams = 0;

  constructor(backend: ClashBackend, secret: string, o: { intervalMs?: number } = {}) {
    this.#b = backend;
    this.#secret = digest(secret);
    this.#intervalMs = o.intervalMs ?? 1000;
  }

  #authorized(req: IncomingMessage, url: URL): boolean {
    const h = req.headers.authorization ?? '';
    const given = /^Bearer /i.test(h) ? h.slice(7) : url.searchParams.get('token');
    return given !== null && timingSafeEqual(digest(given), this.#secret);
  }

  /** Handles a request under the API's routes; false when the path is none of Clash's. */
  handle(req: IncomingMessage, res: ServerResponse, url: URL): boolean {
    const route = routeOf(url.pathname);
    if (!route) return false;
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Access-Control-Allow-Headers', 'Authorization, Content-Type');
    res.setHeader('Access-Control-Allow-Methods', 'GET, PUT, PATCH, DELETE, OPTIONS');
    if (req.method === 'OPTIONS') {
      res.writeHead(204).end();
      return true;
    }
    if (!this.#authorized(req, url)) {
      json(res, 401, { message: 'Unauthorized' });
      return true;
    }
    void this.#dispatch(req, res, url, route).catch((err: unknown) => {
      if (!res.headersSent) json(res, 400, { message: (err as Error).message });
      else res.destroy();
    });
    return true;
  }

  async #dispatch(req: IncomingMessage, res: ServerResponse, url: URL, r: Route): Promise<void> {
    const m = req.method ?? 'GET';
    const b = this.#b;
    if (r.kind === 'version' && m === 'GET')
      return json(res, 200, { version: `ladder-${b.version}`, meta: false, premium: false });
    if (r.kind === 'configs') {
      if (m === 'GET') return json(res, 200, this.#configs());
      if (m === 'PATCH' || m === 'PUT') {
        await readBody(req);
        // Ladder's ports and rules come from its flags; a change asked here is accepted and ignored,
        // as Clash ignores fields it does not know.
        return void res.writeHead(204).end();
      }
    }
    if (r.kind === 'proxies' && m === 'GET') return json(res, 200, { proxies: this.#proxies() });
    if (r.kind === 'proxy') {
      const all = this.#proxies();
      const p = all[r.name];
      if (!p) return json(res, 404, { message: `no proxy named '${r.name.slice(0, 64)}'` });
      if (r.delay) return json(res, 503, { message: 'delay tests are not offered by Ladder' });
      if (m === 'GET') return json(res, 200, p);
      if (m === 'PUT') {
        const body = await readBody(req);
        const name = (body as { name?: unknown }).name;
        if (typeof name !== 'string')
          return json(res, 400, { message: 'the body must be {"name": "<member>"}' });
        if (r.name !== PROXY_GROUP)
          return json(res, 400, {
            message: `only the group '${PROXY_GROUP}' can be switched in Ladder`,
          });
        if (!(p.all as string[]).includes(name))
          return json(res, 400, {
            message: `'${name.slice(0, 64)}' is not a member of ${PROXY_GROUP}`,
          });
        b.select(name);
        return void res.writeHead(204).end();
      }
    }
    if (r.kind === 'rules' && m === 'GET') return json(res, 200, { rules: b.rules() });
    if (r.kind === 'connections') {
      if (m === 'GET') {
        return json(res, 200, this.#connections());
      }
      if (m === 'DELETE') {
        b.connections.closeAll();
        return void res.writeHead(204).end();
      }
    }
    if (r.kind === 'connection' && m === 'DELETE') {
      if (!b.connections.close(r.id)) return json(res, 404, { message: 'no such connection' });
      return void res.writeHead(204).end();
    }
    if ((r.kind === 'traffic' || r.kind === 'logs') && m === 'GET') {
      const sink = this.#sink(res, false);
      if (!sink) return json(res, 503, { message: `at most ${MAX_STREAMS} streams at once` });
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.flushHeaders(); // a /logs stream may have nothing to say for a while
      return this.#feed(r.kind, sink);
    }
    json(res, 405, { message: `${m} is not offered on ${url.pathname}` });
  }

  #configs(): object {
    const p = this.#b.ports;
    return {
      port: p.http ?? 0,
      'socks-port': p.socks ?? 0,
      'redir-port': 0,
      'tproxy-port': 0,
      'mixed-port': 0,
      'allow-lan': false,
      'bind-address': '127.0.0.1',
      mode: 'rule',
      'log-level': 'info',
      ipv6: true,
    };
  }

  #proxies(): Record<
    string,
    { name: string; type: string; all?: string[]; now?: string; udp: boolean; history: [] }
  > {
    const ts = this.#b.proxies();
    const out: Record<
      string,
      { name: string; type: string; all?: string[]; now?: string; udp: boolean; history: [] }
    > = {};
    const names = ts.map((t) => t.name);
    out.DIRECT = { name: 'DIRECT', type: 'Direct', udp: true, history: [] };
    out.REJECT = { name: 'REJECT', type: 'Reject', udp: true, history: [] };
    for (const t of ts) out[t.name] = { name: t.name, type: t.type, udp: t.udp, history: [] };
    out[AUTO] = { name: AUTO, type: 'Fallback', all: names, udp: true, history: [] };
    out[PROXY_GROUP] = {
      name: PROXY_GROUP,
      type: 'Selector',
      all: [AUTO, ...names],
      now: this.#b.selected(),
      udp: true,
      history: [],
    };
    out.GLOBAL = {
      name: 'GLOBAL',
      type: 'Selector',
      all: [PROXY_GROUP, 'DIRECT', 'REJECT'],
      now: PROXY_GROUP,
      udp: true,
      history: [],
    };
    return out;
  }

  #connections(): object {
    const t = this.#b.connections;
    return {
      downloadTotal: t.totals.download,
      uploadTotal: t.totals.upload,
      connections: t.list().map((c) => ({
        id: c.id,
        metadata: {
          network: 'tcp',
          type: 'Ladder',
          sourceIP: '',
          sourcePort: '',
          destinationIP: /^[0-9.:a-f]+$/i.test(c.target.host) ? c.target.host : '',
          destinationPort: String(c.target.port),
          host: /^[0-9.:a-f]+$/i.test(c.target.host) ? '' : c.target.host,
        },
        upload: c.upload,
        download: c.download,
        start: c.start.toISOString(),
        chains: [c.chain],
        rule: c.rule.split(',')[0] ?? c.rule,
        rulePayload: c.rule.split(',')[1] ?? '',
      })),
    };
  }

  /**
   * A WebSocket upgrade for one of the streams (/traffic, /logs, /connections), from the HTTP
   * server's 'upgrade' event. False when the path is none of them.
   */
  upgrade(req: IncomingMessage, socket: Duplex, url: URL): boolean {
    const route = routeOf(url.pathname);
    if (!route || !['traffic', 'logs', 'connections'].includes(route.kind)) return false;
    const key = req.headers['sec-websocket-key'];
    if (!this.#authorized(req, url)) {
      socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return true;
    }
    if (typeof key !== 'string' || !/^[A-Za-z0-9+/]{22}==$/.test(key)) {
      socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return true;
    }
    const sink = this.#sink(socket, true);
    if (!sink) {
      socket.end(
        'HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n',
      );
      return true;
    }
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${websocketAccept(key)}\r\n\r\n`,
    );
    socket.on('data', () => {}); // frames from the dashboard (pings, close) carry nothing we need
    socket.once('end', () => socket.destroy());
    socket.on('error', () => socket.destroy());
    this.#feed(route.kind as 'traffic', sink);
    return true;
  }

  #feed(kind: 'traffic' | 'logs' | 'connections', sink: Sink): void {
    if (kind === 'logs') {
      const off = this.#b.logs.subscribe((l) => sink.write({ type: l.level, payload: l.text }));
      sink.onClose(off);
      return;
    }
    let next: () => object;
    if (kind === 'connections') next = () => this.#connections();
    else {
      let last = this.#b.connections.totals;
      next = () => {
        const now = this.#b.connections.totals;
        const rate = { up: now.upload - last.upload, down: now.download - last.download };
        last = now;
        return rate;
      };
    }
    sink.write(next());
    const timer = setInterval(() => sink.write(next()), this.#intervalMs);
    sink.onClose(() => clearInterval(timer));
  }

  /** A place to write JSON messages: chunked lines on an HTTP response, or WebSocket text frames. */
  #sink(out: Duplex | ServerResponse, ws: boolean): Sink | null {
    if (this.#streams >= MAX_STREAMS) return null;
    this.#streams++;
    let closed = false;
    const closers: (() => void)[] = [];
    out.once('close', () => {
      if (closed) return;
      closed = true;
      this.#streams--;
      for (const f of closers) f();
    });
    return {
      // A reader that does not keep up loses messages rather than growing our buffer.
      write: (v) => {
        if (closed || out.writableLength >= 1024 * 1024) return;
        const text = JSON.stringify(v);
        out.write(ws ? textFrame(text) : text + '\n');
      },
      onClose: (f) => closers.push(f),
    };
  }
}

interface Sink {
  write(v: object): void;
  onClose(f: () => void): void;
}

type Route =
  | { kind: 'version' | 'configs' | 'proxies' | 'rules' | 'connections' | 'traffic' | 'logs' }
  | { kind: 'proxy'; name: string; delay: boolean }
  | { kind: 'connection'; id: string };

function routeOf(path: string): Route | null {
  switch (path) {
    case '/version':
    case '/configs':
    case '/proxies':
    case '/rules':
    case '/connections':
    case '/traffic':
    case '/logs':
      return { kind: path.slice(1) as 'version' };
  }
  let m = /^\/proxies\/([^/]+)(\/delay)?$/.exec(path);
  if (m) {
    let name: string;
    try {
      name = decodeURIComponent(m[1]!);
    } catch {
      return null;
    }
    return { kind: 'proxy', name, delay: m[2] !== undefined };
  }
  m = /^\/connections\/([0-9a-f-]{1,64})$/i.exec(path);
  if (m) return { kind: 'connection', id: m[1]! };
  return null;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(text),
  });
  res.end(text);
}

/** Reads a JSON body of at most MAX_BODY_BYTES; an empty body is {}. */
export async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > MAX_BODY_BYTES) throw new Error(`the request body is over ${MAX_BODY_BYTES} bytes`);
    chunks.push(c);
  }
  if (n === 0) return {};
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new Error('the request body is not JSON');
  }
}

/** One unmasked text frame (server to client, §5.1). */
export function textFrame(text: string): Buffer {
  const payload = Buffer.from(text, 'utf8');
  const out = Buffer.alloc(wsHeaderLength(payload.length, false) + payload.length);
  const n = encodeWsHeader(
    { fin: true, opcode: WS_OPCODE.TEXT, payloadLength: payload.length },
    out,
    0,
  );
  payload.copy(out, n);
  return out;
}
