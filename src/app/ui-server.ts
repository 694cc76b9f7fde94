/**
 * The client's local control page and its API on one HTTP port: the page's files (assets/client-ui/,
 * no resource from outside the machine), Ladder's own calls under /ladder/ (state, import a key,
 * connect, disconnect, choose a transport, run the probe, apply a client update), and the Clash-compatible API (clash-api.ts). Every call
 * but the page's files needs the access token (`Authorization: Bearer`), the same as the Clash
 * secret; the page reads it from the URL's #fragment, which browsers never send to a server.
 * A Host header other than the address listened on is refused (DNS rebinding), unless remote use
 * was allowed.
 * @module
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { timingSafeEqual, createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { LadderError } from '../errors.js';
import { ClashApi, readBody } from './clash-api.js';
import type { ClientController } from './client-controller.js';

/** The page's files; `vendor` ones come from an installed npm package instead of assets/. */
const ASSETS: Record<string, { file: string; type: string; vendor?: true }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/app.css': { file: 'app.css', type: 'text/css; charset=utf-8' },
  // The QR decoder the page runs on an uploaded image (npm package jsqr, served from this machine).
  '/vendor/jsQR.js': { file: 'jsqr', type: 'text/javascript; charset=utf-8', vendor: true },
};

/** Where an installed package's main file is, or undefined if it is not installed. */
function vendorFile(pkg: string): URL | undefined {
  try {
    return pathToFileURL(createRequire(import.meta.url).resolve(pkg));
  } catch {
    return undefined;
  }
}

/** The page may load only its own files and talk only to this port. */
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

export interface UiServerOptions {
  readonly controller: ClientController;
  readonly token: string;
  readonly version: string;
  /** Where the page's files are (assets/client-ui). */
  readonly assetsDir: URL;
  /** Accept any Host header (--ui-allow-remote). */
  readonly allowRemote?: boolean;
  readonly ports: { socks?: number; http?: number };
}

const digest = (s: string) => createHash('sha256').update(s).digest();

export class UiServer {
  readonly #o: UiServerOptions;
  readonly #server: Server;
  readonly #api: ClashApi;
  readonly #token: Buffer;
  #hosts = new Set<string>();

  constructor(o: UiServerOptions) {
    this.#o = o;
    this.#token = digest(o.token);
    const c = o.controller;
    this.#api = new ClashApi(
      {
        version: o.version,
        connections: c.connections,
        logs: c.logs,
        proxies: () => c.active()?.transports ?? [],
        selected: () => c.selected(),
        select: (name) => c.select(name),
        rules: () => c.active()?.rules ?? [],
        ports: o.ports,
      },
      o.token,
    );
    this.#server = createServer((req, res) => this.#handle(req, res));
    this.#server.on('upgrade', (req: IncomingMessage, socket) => {
      socket.on('error', () => socket.destroy());
      if (!this.#hostOk(req)) return socket.destroy();
      const url = requestUrl(req);
      if (!url || !this.#api.upgrade(req, socket, url)) socket.destroy();
    });
    this.#server.headersTimeout = 10_000;
    this.#server.requestTimeout = 30_000;
    this.#server.maxHeadersCount = 64;
  }

  async listen(host: string, port: number): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', (err) =>
        reject(
          new LadderError('ERR_LISTEN', `--ui ${host}:${port}: ${err.message}`, { cause: err }),
        ),
      );
      this.#server.listen(port, host, () => resolve());
    });
    const a = this.#server.address() as AddressInfo;
    const h = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    this.#hosts = new Set([`${h}:${a.port}`, `localhost:${a.port}`]);
    return a;
  }

  close(): Promise<void> {
    this.#server.closeAllConnections();
    return new Promise((r) => this.#server.close(() => r()));
  }

  #hostOk(req: IncomingMessage): boolean {
    return this.#o.allowRemote === true || this.#hosts.has(String(req.headers.host ?? ''));
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    if (!this.#hostOk(req)) {
      res
        .writeHead(421, { 'Content-Type': 'text/plain' })
        .end('this page answers only on its own address\n');
      return;
    }
    const url = requestUrl(req);
    if (!url) return json(res, 400, { message: 'the request target must be a path' });
    const asset = req.method === 'GET' ? ASSETS[url.pathname] : undefined;
    if (asset) {
      let body: Buffer;
      try {
        const file = asset.vendor ? vendorFile(asset.file) : new URL(asset.file, this.#o.assetsDir);
        if (!file) throw new Error(`${asset.file} is not installed`);
        body = readFileSync(file);
      } catch {
        res.writeHead(500).end('the page is missing from this installation\n');
        return;
      }
      res.writeHead(200, {
        'Content-Type': asset.type,
        'Content-Security-Policy': CSP,
        'X-Content-Type-Options': 'nosniff',
        'Referrer-Policy': 'no-referrer',
        'Cache-Control': 'no-store',
      });
      res.end(body);
      return;
    }
    if (url.pathname.startsWith('/ladder/')) {
      const h = req.headers.authorization ?? '';
      if (!/^Bearer /i.test(h) || !timingSafeEqual(digest(h.slice(7)), this.#token)) {
        json(res, 401, {
          message: 'the access token is missing or wrong: open the URL the client printed',
        });
        return;
      }
      void this.#ladder(req, res, url.pathname).catch((err: unknown) =>
        json(res, err instanceof LadderError ? 400 : 500, { message: (err as Error).message }),
      );
      return;
    }
    if (this.#api.handle(req, res, url)) return;
    json(res, 404, { message: `no route ${url.pathname.slice(0, 100)}` });
  }

  async #ladder(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const c = this.#o.controller;
    const m = req.method ?? 'GET';
    if (path === '/ladder/state' && m === 'GET')
      return json(res, 200, {
        ...c.state(),
        version: this.#o.version,
        logs: c.logs.recent(),
      });
    if (m !== 'POST') return json(res, 405, { message: `${m} is not offered on ${path}` });
    const body = (await readBody(req).catch((err: Error) => {
      throw new LadderError('ERR_API', err.message);
    })) as Record<string, unknown>;
    const str = (k: string): string | undefined =>
      typeof body[k] === 'string' ? (body[k] as string) : undefined;
    switch (path) {
      case '/ladder/keys': {
        const uri = str('uri');
        if (!uri)
          return json(res, 400, {
            message:
              'paste a key: ss://, trojan://, ladder://, or an online key ssconf:// or https://',
          });
        const name = await c.importKey(uri, str('name'));
        return json(res, 200, { name });
      }
      case '/ladder/connect':
        await c.connect(str('name'));
        return json(res, 200, c.state());
      case '/ladder/probe':
        await c.startProbe(str('name'));
        return json(res, 202, c.state().probe);
      case '/ladder/disconnect':
        c.disconnect();
        return json(res, 200, c.state());
      case '/ladder/update': {
        if (!c.state().update.available)
          return json(res, 400, {
            message: 'no newer client is known: nothing to apply (the key document names none)',
          });
        // Runs on; its progress and result are in state().update.
        c.applyUpdate().catch(() => {});
        return json(res, 202, c.state().update);
      }
      case '/ladder/select':
        c.select(str('name') ?? '');
        return json(res, 200, c.state());
    }
    json(res, 404, { message: `no route ${path.slice(0, 100)}` });
  }
}

/** The request's path and query; null for a target that is not an origin-form path. */
export function requestUrl(req: IncomingMessage): URL | null {
  const target = req.url ?? '';
  if (!target.startsWith('/')) return null;
  try {
    // Prefixing keeps "//host/x" a path here, never a URL naming another host.
    return new URL(`http://ui.invalid${target}`);
  } catch {
    return null;
  }
}

function json(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return void res.destroy();
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
  });
  res.end(text);
}
