/**
 * One connection of the decoy web server, answered on the raw stream as Debian's nginx 1.22 answers
 * with its default configuration serving static files: the same status lines, header names, order
 * and values, the same error pages, the same keep-alive, timeout and closing behaviour. node:http
 * is not used: its answers (header case, `Keep-Alive: timeout=5`, chunked error pages, bare 400s)
 * tell it apart from nginx in one request.
 *
 * Per connection: read a request head (src/codec/http-request-head.ts) within the header timeout;
 * answer it; discard any request body; then wait for the next request within the keep-alive
 * timeout, or close. A close with unread bytes pending is nginx's "lingering close": send FIN, keep
 * reading and discarding for a while, then close, so that the peer sees a FIN and not a reset.
 * @module
 */
import type { Duplex } from 'node:stream';
import { createReadStream, type Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import { debuglog } from 'node:util';
import { parseRequestHead, type RequestHead } from '../../codec/http-request-head.js';
import { ChunkedBodyScanner } from '../../codec/http-proxy.js';
import {
  CLOSING_STATUSES,
  errorPage,
  mimeType,
  MSIE_PADDING,
  STATUS_LINES,
} from './nginx-pages.js';
import { GZIP_INPUT_BLOCK_BYTES, NginxGzipBody, gzipApplies } from './nginx-gzip.js';

const debug = debuglog('ladder:decoy');

/** What the site serves: a file's bytes (in memory or on disk) and its metadata. */
export interface SiteFile {
  readonly size: number;
  readonly mtimeMs: number;
  readonly type: string;
  /** In-memory content (built-in pages). */
  readonly body?: Buffer;
  /** A path to stream from (a directory of the operator's files). */
  readonly path?: string;
}

export type Lookup =
  | { readonly kind: 'file'; readonly file: SiteFile }
  | { readonly kind: 'dir' }
  | { readonly kind: 'forbidden' }
  | { readonly kind: 'none' };

/** Resolves a decoded, normalised path ("/a/b.html") to what is there. */
export type SiteLookup = (path: string) => Promise<Lookup>;

/** nginx's settings the decoy copies, with nginx's defaults. */
export interface NginxBehaviour {
  /** Server header and error page footer: "nginx/1.22.1" (server_tokens on) or "nginx" (off). */
  readonly serverToken: string;
  /** keepalive_timeout (65 s). */
  readonly keepaliveTimeoutMs: number;
  /** keepalive_requests (1000). */
  readonly keepaliveRequests: number;
  /** client_header_timeout (60 s), from the start of a request until its head is complete. */
  readonly headerTimeoutMs: number;
  /** lingering_timeout (5 s): idle limit while discarding a body or after FIN on a lingering close. */
  readonly lingeringTimeoutMs: number;
  /** lingering_time (30 s): total limit of a lingering close. */
  readonly lingeringTimeMs: number;
  /** client_max_body_size (1 MiB): a larger Content-Length is 413. */
  readonly maxBodyBytes: number;
  /**
   * `gzip on;` as Debian's nginx.conf has it (default true): text/html answers compressed for
   * clients that accept gzip (nginx-gzip.ts). False: nginx's own default, gzip off.
   */
  readonly gzip: boolean;
}

export const NGINX_DEFAULTS: NginxBehaviour = {
  serverToken: 'nginx/1.22.1',
  keepaliveTimeoutMs: 65_000,
  keepaliveRequests: 1000,
  headerTimeoutMs: 60_000,
  lingeringTimeoutMs: 5_000,
  lingeringTimeMs: 30_000,
  maxBodyBytes: 1024 * 1024,
  gzip: true,
};

export interface ResponderContext {
  readonly behaviour: NginxBehaviour;
  readonly lookup: SiteLookup;
  readonly now: () => number;
  /** The next multipart/byteranges boundary number (nginx counts them per worker from 1). */
  nextBoundary(): number;
  /**
   * Plain HTTP on a TLS port: a request that passes the header checks is refused with nginx's 497
   * page ("The plain HTTP request was sent to HTTPS port"), as ngx_http_process_request does.
   */
  readonly plainOnTlsPort?: boolean;
  /** A complete request head arrived (the pre-authentication deadline may stop here). */
  readonly onRequest?: ((conn: Duplex) => void) | undefined;
  /** Called once when the connection is gone. */
  readonly onClose: (conn: Duplex) => void;
}

/** Most unread bytes kept while a response is being written (pipelined requests, a body). */
const MAX_PENDING_BYTES = 64 * 1024;

type State = 'head' | 'busy' | 'discard' | 'keepalive' | 'linger' | 'closed';

interface Parsed {
  head: RequestHead;
  host: string | null;
  keepalive: boolean;
  msie: boolean;
  msie6: boolean;
  chrome: boolean;
  get(name: string): string | undefined;
}

type Body =
  | { kind: 'none' }
  | { kind: 'length'; left: number }
  | { kind: 'chunked'; scanner: ChunkedBodyScanner };

export class NginxConnection {
  readonly #conn: Duplex;
  readonly #ctx: ResponderContext;
  readonly #b: NginxBehaviour;
  #buf: Buffer = Buffer.alloc(0);
  #ended = false;
  #state: State = 'head';
  #timer: NodeJS.Timeout | null = null;
  #lingerDeadline: NodeJS.Timeout | null = null;
  #requests = 0;
  #body: Body = { kind: 'none' };
  #afterBody: (() => void) | null = null;
  /** The version of the request being answered (9: HTTP/0.9, answered without a head). */
  #version = 1001;
  /** TLS connections: "https" in redirects, and no close_notify on a timed-out close. */
  readonly #tls: boolean;

  constructor(conn: Duplex, head: Buffer, ended: boolean, ctx: ResponderContext) {
    this.#conn = conn;
    this.#ctx = ctx;
    this.#b = ctx.behaviour;
    this.#tls = (conn as { encrypted?: boolean }).encrypted === true;
    // nginx answers a request that came with the client's FIN, then closes: the writing side must
    // outlive the reading side whatever the socket was made with.
    (conn as { allowHalfOpen: boolean }).allowHalfOpen = true;
    this.#buf = head;
    this.#ended = ended;
    conn.on('error', (err: Error) => {
      debug('connection error: %s', err.message);
      this.#destroy();
    });
    conn.on('close', () => this.#destroy());
    conn.on('data', (d: Buffer) => this.#onData(d));
    conn.on('end', () => {
      this.#ended = true;
      this.#pump();
    });
    this.#arm(this.#b.headerTimeoutMs, () => this.#timedOut());
    this.#pump();
    if (!ended && conn.isPaused()) conn.resume();
  }

  #onData(d: Buffer): void {
    if (this.#state === 'closed') return;
    if (this.#state === 'linger') {
      this.#arm(this.#b.lingeringTimeoutMs, () => this.#destroy());
      return; // discarded
    }
    this.#buf = this.#buf.length === 0 ? d : Buffer.concat([this.#buf, d]);
    if (this.#state === 'keepalive') {
      this.#state = 'head';
      this.#arm(this.#b.headerTimeoutMs, () => this.#timedOut());
    }
    if (this.#state === 'discard') this.#arm(this.#b.lingeringTimeoutMs, () => this.#timedOut());
    if (this.#buf.length > MAX_PENDING_BYTES && this.#state === 'busy') this.#conn.pause();
    this.#pump();
  }

  #arm(ms: number, fn: () => void): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(fn, ms);
    this.#timer.unref?.();
  }

  #disarm(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }

  /** Advances the connection with what is buffered. */
  #pump(): void {
    for (;;) {
      switch (this.#state) {
        case 'closed':
        case 'busy':
          return;
        case 'linger':
          if (this.#ended) this.#destroy();
          return;
        case 'discard': {
          if (!this.#discardBuffered()) {
            if (this.#ended) this.#close();
            return;
          }
          const next = this.#afterBody;
          this.#afterBody = null;
          next?.();
          continue;
        }
        case 'keepalive':
          if (this.#buf.length === 0) {
            if (this.#ended) this.#close();
            return;
          }
          this.#state = 'head';
          this.#arm(this.#b.headerTimeoutMs, () => this.#timedOut());
          continue;
        case 'head': {
          if (this.#buf.length === 0) {
            if (this.#ended) this.#close();
            return;
          }
          const r = parseRequestHead(this.#buf);
          if (r.kind === 'more') {
            // nginx: the client closed before its request was complete; close too
            if (this.#ended) this.#close();
            return;
          }
          this.#disarm();
          if (r.kind === 'error') {
            this.#state = 'busy';
            this.#version = 1001;
            this.#requests++;
            this.#sendError(r.status, null, false);
            return;
          }
          this.#buf = this.#buf.subarray(r.head.bytesRead);
          this.#version = r.head.version;
          this.#requests++;
          this.#state = 'busy';
          this.#ctx.onRequest?.(this.#conn);
          this.#request(r.head).catch((err: Error) => {
            debug('request failed: %s', err.message);
            this.#destroy();
          });
          return;
        }
      }
    }
  }

  /** Consumes body bytes from the buffer; true once the body is complete. */
  #discardBuffered(): boolean {
    const body = this.#body;
    if (body.kind === 'none') return true;
    if (body.kind === 'length') {
      const n = Math.min(body.left, this.#buf.length);
      body.left -= n;
      this.#buf = this.#buf.subarray(n);
      if (body.left > 0) return false;
    } else {
      let n: number;
      try {
        n = body.scanner.scan(this.#buf, 0);
      } catch {
        // a malformed chunked body: nginx gives up on the connection
        this.#buf = Buffer.alloc(0);
        this.#body = { kind: 'none' };
        this.#afterBody = () => this.#close();
        return true;
      }
      this.#buf = this.#buf.subarray(n);
      if (!body.scanner.done) return false;
    }
    this.#body = { kind: 'none' };
    return true;
  }

  async #request(head: RequestHead): Promise<void> {
    const b = this.#b;
    // Header semantics, in nginx's order (ngx_http_process_request_headers, _request_header).
    const seen = new Map<string, string>();
    let host: string | null = null;
    let connection: 'close' | 'keep-alive' | null = null;
    let ua: string | undefined;
    let contentLength: string | undefined;
    let transferEncoding: string | undefined;
    const UNIQUE = new Set([
      'content-length',
      'transfer-encoding',
      'if-modified-since',
      'if-unmodified-since',
      'if-match',
      'if-none-match',
    ]);
    for (const [rawName, value] of head.headers) {
      const name = rawName.toLowerCase();
      if (name === 'host') {
        if (seen.has('host')) return this.#sendError(400, null, false);
        const h = validateHost(value);
        if (h === null) return this.#sendError(400, null, false);
        host = h;
      } else if (UNIQUE.has(name) && seen.has(name)) {
        return this.#sendError(400, null, false);
      } else if (name === 'connection') {
        const v = value.toLowerCase();
        connection = v.includes('close') ? 'close' : v.includes('keep-alive') ? 'keep-alive' : null;
      } else if (name === 'user-agent') {
        if (ua === undefined) ua = value;
      } else if (name === 'content-length') contentLength = value;
      else if (name === 'transfer-encoding') transferEncoding = value;
      if (!seen.has(name)) seen.set(name, value);
    }
    let serverHost = host;
    if (head.uriHost !== null) {
      const h = validateHost(head.uriHost);
      if (h === null) return this.#sendError(400, null, false);
      serverHost = h;
    }
    if (head.version === 9 && head.method !== 'GET') return this.#sendError(400, null, false);
    if (!seen.has('host') && head.version > 1000) return this.#sendError(400, null, false);
    let body: Body = { kind: 'none' };
    if (contentLength !== undefined) {
      if (!/^[0-9]+$/.test(contentLength) || contentLength.length > 18)
        return this.#sendError(400, null, false);
      body = { kind: 'length', left: Number(contentLength) };
    }
    if (transferEncoding !== undefined) {
      if (head.version < 1001) return this.#sendError(400, null, false);
      if (transferEncoding.toLowerCase() !== 'chunked') return this.#sendError(501, null, false);
      if (contentLength !== undefined) return this.#sendError(400, null, false);
      body = { kind: 'chunked', scanner: new ChunkedBodyScanner() };
    }
    const p: Parsed = {
      head,
      host: serverHost,
      keepalive: false,
      ...browser(ua),
      get: (n) => seen.get(n),
    };
    this.#body = body;
    if (head.method === 'CONNECT' || head.method === 'TRACE') return this.#sendError(405, p, false);
    if (this.#ctx.plainOnTlsPort) return this.#sendError(497, p, false);
    // The request proper: keep-alive as nginx decides it (ngx_http_handler, find_config phase).
    p.keepalive =
      head.version !== 9 &&
      (connection === 'close' ? false : connection === 'keep-alive' ? true : head.version > 1000) &&
      this.#requests < b.keepaliveRequests &&
      !(p.msie6 && head.method === 'POST');
    if (body.kind === 'length' && body.left > b.maxBodyBytes) return this.#sendError(413, p, true);
    const path = normalizeUri(head.uri);
    if (path === null) return this.#sendError(400, p, true);
    const method = head.method;
    const getLike = method === 'GET' || method === 'HEAD' || method === 'POST';
    if (!getLike) return this.#sendError(405, p, true);
    if (path.path.endsWith('/')) {
      // the index module: <dir>/index.html, else 403 for a directory, 404 for nothing
      const idx = await this.#ctx.lookup(path.path + 'index.html');
      if (idx.kind !== 'file') {
        const dir = await this.#ctx.lookup(path.path);
        return this.#sendError(dir.kind === 'dir' ? 403 : 404, p, true);
      }
      if (method === 'POST') return this.#sendError(405, p, true);
      return this.#sendFile(idx.file, p);
    }
    const found = await this.#ctx.lookup(path.path);
    if (found.kind === 'dir') {
      if (method === 'POST') return this.#sendError(405, p, true);
      const location = `${path.path}/${path.args === null ? '' : '?' + path.args}`;
      return this.#sendError(301, p, true, location);
    }
    if (found.kind === 'forbidden') return this.#sendError(403, p, true);
    if (found.kind === 'none') return this.#sendError(404, p, true);
    if (method === 'POST') return this.#sendError(405, p, true);
    return this.#sendFile(found.file, p);
  }

  /** The status line and the headers nginx puts first, then `rest`, then the end of the head. */
  #headBytes(status: number, p: Parsed | null, fields: string[], keepalive: boolean): string {
    const lines = [
      `HTTP/1.1 ${STATUS_LINES[status] ?? STATUS_LINES[500]}`,
      `Server: ${this.#b.serverToken}`,
      `Date: ${new Date(this.#ctx.now()).toUTCString()}`,
      ...fields,
    ];
    void p;
    // Connection comes after Content-*, Last-Modified, Location and Transfer-Encoding; the rest
    // (ETag, Accept-Ranges, Content-Range, Content-Encoding) after it.
    const at = lines.findIndex((l) =>
      /^(ETag|Accept-Ranges|Content-Range|Content-Encoding):/.test(l),
    );
    const conn = `Connection: ${keepalive ? 'keep-alive' : 'close'}`;
    if (at < 0) lines.push(conn);
    else lines.splice(at, 0, conn);
    return lines.join('\r\n') + '\r\n\r\n';
  }

  /**
   * An nginx special response: its page, `Connection: close` for the statuses that always close,
   * headers only for HEAD, body only for HTTP/0.9.
   */
  #sendError(
    status: number,
    p: Parsed | null,
    processed: boolean,
    location?: string,
    contentRange?: string,
  ): void {
    this.#state = 'busy';
    // Before the request was accepted as one (processed === false) nginx never keeps alive.
    const keepalive = processed && p !== null && p.keepalive && !CLOSING_STATUSES.has(status);
    const version = this.#version;
    let page = errorPage(status, this.#b.serverToken);
    if (p && (p.msie || p.chrome) && version >= 1000 && status >= 300) page += MSIE_PADDING;
    if (p && this.#gzips(p, status, 'text/html', Buffer.byteLength(page))) {
      const fields = ['Content-Type: text/html'];
      return this.#sendGzipped(status, p, fields, keepalive, Buffer.from(page, 'latin1'));
    }
    const fields = ['Content-Type: text/html', `Content-Length: ${Buffer.byteLength(page)}`];
    if (location !== undefined) fields.push(`Location: ${this.#absolute(location, p)}`);
    if (contentRange !== undefined) fields.push(`Content-Range: ${contentRange}`);
    const headBytes = version === 9 ? '' : this.#headBytes(status, p, fields, keepalive);
    const body = p?.head.method === 'HEAD' && version !== 9 ? '' : page;
    this.#conn.write(headBytes + body, 'latin1');
    this.#finish(keepalive);
  }

  #absolute(location: string, p: Parsed | null): string {
    const raw = this.#conn as { localPort?: number; localAddress?: string };
    let host = p?.host ?? null;
    if (host === null || host === '') {
      const a = raw.localAddress ?? '127.0.0.1';
      host = a.includes(':') ? `[${a}]` : a;
    }
    const port = raw.localPort;
    const defaultPort = this.#tls ? 443 : 80;
    const portPart = port === undefined || port === defaultPort ? '' : `:${port}`;
    return `${this.#tls ? 'https' : 'http'}://${host}${portPart}${location}`;
  }

  #sendFile(file: SiteFile, p: Parsed): void {
    const v = validatorsOf(file);
    if (this.#answeredConditional(p, v)) return;
    const head = p.head;
    const sendBody = head.method !== 'HEAD';
    if (this.#gzips(p, 200, file.type, file.size)) {
      // gzip drops Content-Length and Accept-Ranges, so ranges no longer apply; the ETag is weak
      const gzFields = [
        `Content-Type: ${file.type}`,
        `Last-Modified: ${v.lastModified}`,
        `ETag: W/${v.etag}`,
      ];
      return this.#sendGzipped(200, p, gzFields, p.keepalive, file);
    }
    const ranges = requestedRanges(p, v, file.size);
    if (ranges === 'unsatisfiable')
      return this.#sendError(416, p, true, undefined, `bytes */${file.size}`);
    if (head.version === 9) {
      return this.#stream(file, '', sendBody ? [[0, file.size]] : [], [], p.keepalive);
    }
    const fields = (type: string, length: number): string[] => [
      `Content-Type: ${type}`,
      `Content-Length: ${length}`,
      `Last-Modified: ${v.lastModified}`,
      `ETag: ${v.etag}`,
    ];
    if (ranges === null) {
      const h = this.#headBytes(
        200,
        p,
        [...fields(file.type, file.size), 'Accept-Ranges: bytes'],
        p.keepalive,
      );
      return this.#stream(file, h, sendBody ? [[0, file.size]] : [], [], p.keepalive);
    }
    if (ranges.length === 1) {
      const [s, e] = ranges[0]!;
      const h = this.#headBytes(
        206,
        p,
        [...fields(file.type, e - s), `Content-Range: bytes ${s}-${e - 1}/${file.size}`],
        p.keepalive,
      );
      return this.#stream(file, h, sendBody ? [[s, e]] : [], [], p.keepalive);
    }
    return this.#sendByteRanges(file, p, v, ranges, sendBody);
  }

  /**
   * ngx_http_not_modified_filter: a failed If-Unmodified-Since or If-Match is 412; an
   * If-Modified-Since / If-None-Match that the file meets is 304. True when answered so.
   */
  #answeredConditional(p: Parsed, v: FileValidators): boolean {
    const ius = p.get('if-unmodified-since');
    const im = p.get('if-match');
    if (
      (ius !== undefined && !(parseHttpTime(ius) >= v.mtimeS)) ||
      (im !== undefined && !etagMatches(im, v.etag, false))
    ) {
      this.#sendError(412, p, true);
      return true;
    }
    const ims = p.get('if-modified-since');
    const inm = p.get('if-none-match');
    if (ims === undefined && inm === undefined) return false;
    const modified = ims !== undefined && parseHttpTime(ims) !== v.mtimeS;
    const noneMatch = inm !== undefined && !etagMatches(inm, v.etag, true);
    if (modified || noneMatch) return false;
    this.#conn.write(
      p.head.version === 9
        ? ''
        : this.#headBytes(
            304,
            p,
            [`Last-Modified: ${v.lastModified}`, `ETag: ${v.etag}`],
            p.keepalive,
          ),
      'latin1',
    );
    this.#finish(p.keepalive);
    return true;
  }

  /** Several ranges: a multipart/byteranges body, each part with its own Content-Range. */
  #sendByteRanges(
    file: SiteFile,
    p: Parsed,
    v: FileValidators,
    ranges: [number, number][],
    sendBody: boolean,
  ): void {
    const boundary = String(this.#ctx.nextBoundary()).padStart(20, '0');
    const parts = ranges.map(
      ([s, e]) =>
        `\r\n--${boundary}\r\nContent-Type: ${file.type}\r\nContent-Range: bytes ${s}-${e - 1}/${file.size}\r\n\r\n`,
    );
    const closing = `\r\n--${boundary}--\r\n`;
    const length =
      parts.reduce((n, x) => n + x.length, 0) +
      ranges.reduce((n, [s, e]) => n + e - s, 0) +
      closing.length;
    const h = this.#headBytes(
      206,
      p,
      [
        `Content-Type: multipart/byteranges; boundary=${boundary}`,
        `Content-Length: ${length}`,
        `Last-Modified: ${v.lastModified}`,
        `ETag: ${v.etag}`,
      ],
      p.keepalive,
    );
    if (!sendBody) return this.#stream(file, h, [], [], p.keepalive);
    return this.#stream(file, h, ranges, [...parts, closing], p.keepalive);
  }

  /**
   * Writes `head`, then the file's byte ranges (each preceded by `separators[i]`, the last separator
   * after them), streamed from disk with backpressure; then finishes the request.
   */
  #stream(
    file: SiteFile,
    head: string,
    ranges: readonly (readonly [number, number])[],
    separators: readonly string[],
    keepalive: boolean,
  ): void {
    const conn = this.#conn;
    if (head.length > 0) conn.write(head, 'latin1');
    const parts = ranges.map((r, i) => ({ range: r, before: separators[i] ?? '' }));
    const tail = separators.length > ranges.length ? separators[separators.length - 1]! : '';
    const next = (i: number): void => {
      if (this.#state === 'closed') return;
      if (i >= parts.length) {
        if (tail.length > 0) conn.write(tail, 'latin1');
        return this.#finish(keepalive);
      }
      const { range, before } = parts[i]!;
      if (before.length > 0) conn.write(before, 'latin1');
      const [s, e] = range;
      if (e <= s) return next(i + 1);
      if (file.body) {
        conn.write(file.body.subarray(s, e));
        return next(i + 1);
      }
      const rs = createReadStream(file.path!, { start: s, end: e - 1, highWaterMark: 64 * 1024 });
      let sent = 0;
      rs.on('data', (chunk: Buffer | string) => {
        const c = chunk as Buffer;
        sent += c.length;
        if (!conn.write(c)) {
          rs.pause();
          conn.once('drain', () => rs.resume());
        }
      });
      rs.on('error', () => this.#destroy());
      rs.on('end', () => {
        // a file that shrank since stat: the promised length cannot be met
        if (sent !== e - s) return this.#destroy();
        next(i + 1);
      });
      conn.once('close', () => rs.destroy());
    };
    next(0);
  }

  /** Does Debian's nginx compress this answer (nginx-gzip.ts)? */
  #gzips(p: Parsed, status: number, type: string, length: number): boolean {
    return (
      this.#b.gzip &&
      gzipApplies(
        {
          version: p.head.version,
          acceptEncoding: p.get('accept-encoding'),
          via: p.get('via') !== undefined,
        },
        status,
        type,
        length,
      )
    );
  }

  /**
   * A gzip answer: `fields` in nginx's order with Transfer-Encoding and Content-Encoding added,
   * then (except for HEAD) the body compressed in nginx's pieces, one chunk per piece.
   */
  #sendGzipped(
    status: number,
    p: Parsed,
    fields: string[],
    keepalive: boolean,
    body: Buffer | SiteFile,
  ): void {
    const head = p.head.method === 'HEAD';
    const withTe = [...fields];
    // Transfer-Encoding sits where Content-Length would be followed by Last-Modified: after both
    const lm = withTe.findIndex((l) => l.startsWith('Last-Modified:'));
    if (!head) withTe.splice(lm >= 0 ? lm + 1 : 1, 0, 'Transfer-Encoding: chunked');
    withTe.push('Content-Encoding: gzip');
    this.#conn.write(this.#headBytes(status, p, withTe, keepalive), 'latin1');
    if (head) return this.#finish(keepalive);
    this.#gzipBody(body).then(
      () => this.#finish(keepalive),
      (err: Error) => {
        debug('gzip failed: %s', err.message);
        this.#destroy();
      },
    );
  }

  /** Streams `body` through gzip as chunks, each block of input at most 32 KiB, with backpressure. */
  async #gzipBody(body: Buffer | SiteFile): Promise<void> {
    const conn = this.#conn;
    const size = Buffer.isBuffer(body) ? body.length : body.size;
    const gz = new NginxGzipBody(size);
    const send = async (data: Buffer, last: boolean): Promise<void> => {
      if (this.#state === 'closed') throw new Error('closed');
      if (data.length === 0 && !last) return;
      const ok = conn.write(
        Buffer.concat([
          Buffer.from(`${data.length.toString(16)}\r\n`, 'latin1'),
          data,
          Buffer.from(last ? '\r\n0\r\n\r\n' : '\r\n', 'latin1'),
        ]),
      );
      if (!ok) await new Promise((r) => conn.once('drain', r));
    };
    let previous: Buffer | null = null;
    const block = async (b: Buffer): Promise<void> => {
      if (previous) await send(await gz.push(previous), false);
      previous = b;
    };
    if (Buffer.isBuffer(body)) {
      for (let i = 0; i < body.length; i += GZIP_INPUT_BLOCK_BYTES)
        await block(body.subarray(i, i + GZIP_INPUT_BLOCK_BYTES));
    } else if (body.body) {
      for (let i = 0; i < body.body.length; i += GZIP_INPUT_BLOCK_BYTES)
        await block(body.body.subarray(i, i + GZIP_INPUT_BLOCK_BYTES));
    } else {
      const rs = createReadStream(body.path!, { highWaterMark: GZIP_INPUT_BLOCK_BYTES });
      conn.once('close', () => rs.destroy());
      let read = 0;
      for await (const chunk of rs) {
        read += (chunk as Buffer).length;
        await block(chunk as Buffer);
      }
      // a file that changed size since stat: the promised body cannot be given
      if (read !== size) throw new Error('file changed');
    }
    // The last block goes with the end of the body: one chunk with everything left and the trailer.
    const last = previous as Buffer | null;
    const tail = last ? await gz.push(last) : Buffer.alloc(0);
    await send(Buffer.concat([tail, await gz.finish()]), true);
  }

  /** After a response: discard the rest of the body, then keep alive or close. */
  #finish(keepalive: boolean): void {
    if (this.#state === 'closed') return;
    if (this.#conn.isPaused()) this.#conn.resume();
    this.#afterBody = () => {
      if (!keepalive) return this.#close();
      this.#state = 'keepalive';
      this.#arm(this.#b.keepaliveTimeoutMs, () => this.#close(true));
    };
    this.#state = 'discard';
    if (this.#body.kind !== 'none') this.#arm(this.#b.lingeringTimeoutMs, () => this.#timedOut());
    this.#pump();
  }

  /** A request head or a body that did not arrive in time: nginx closes without a word. */
  #timedOut(): void {
    if (this.#state === 'closed') return;
    this.#destroy();
  }

  /**
   * Closes as nginx does after a response: at once when nothing unread is pending, else a
   * lingering close (FIN now, read and discard until the peer is quiet or the time is up).
   */
  #close(idle = false): void {
    if (this.#state === 'closed' || this.#state === 'linger') return;
    const conn = this.#conn;
    if (idle && this.#buf.length === 0) {
      // an idle keep-alive connection: closed as it is
      this.#state = 'closed';
      conn.end(() => this.#destroy());
      return;
    }
    if (this.#buf.length === 0 || this.#ended) {
      this.#state = 'closed';
      this.#disarm();
      conn.end(() => this.#destroy());
      return;
    }
    this.#state = 'linger';
    this.#buf = Buffer.alloc(0);
    conn.end();
    this.#arm(this.#b.lingeringTimeoutMs, () => this.#destroy());
    this.#lingerDeadline = setTimeout(() => this.#destroy(), this.#b.lingeringTimeMs);
    this.#lingerDeadline.unref?.();
  }

  #destroy(): void {
    const first = this.#state !== 'closed' || this.#timer !== null || this.#lingerDeadline !== null;
    this.#state = 'closed';
    this.#disarm();
    if (this.#lingerDeadline) clearTimeout(this.#lingerDeadline);
    this.#lingerDeadline = null;
    this.#buf = Buffer.alloc(0);
    if (!this.#conn.destroyed) this.#conn.destroy();
    if (first) this.#ctx.onClose(this.#conn);
  }

  /** Closes every connection (the site is shutting down). */
  destroy(): void {
    this.#destroy();
  }
}

/** What a file's conditional requests are judged by, as nginx forms them. */
interface FileValidators {
  mtimeS: number;
  etag: string;
  lastModified: string;
}

function validatorsOf(file: SiteFile): FileValidators {
  const mtimeS = Math.floor(file.mtimeMs / 1000);
  return {
    mtimeS,
    etag: `"${mtimeS.toString(16)}-${file.size.toString(16)}"`,
    lastModified: new Date(mtimeS * 1000).toUTCString(),
  };
}

/**
 * ngx_http_range_filter_module: the ranges asked for (HTTP/1.0 on, `bytes=`, and an If-Range the
 * file meets), null for the whole file.
 */
function requestedRanges(
  p: Parsed,
  v: FileValidators,
  size: number,
): [number, number][] | 'unsatisfiable' | null {
  const rangeHeader = p.get('range');
  if (
    p.head.version < 1000 ||
    rangeHeader === undefined ||
    rangeHeader.length < 7 ||
    !/^bytes=/i.test(rangeHeader)
  )
    return null;
  const ifRange = p.get('if-range');
  if (ifRange !== undefined) {
    const apply =
      ifRange.length >= 2 && ifRange.endsWith('"')
        ? ifRange === v.etag
        : parseHttpTime(ifRange) === v.mtimeS;
    if (!apply) return null;
  }
  return parseRanges(rangeHeader.slice(6), size);
}

/** ngx_http_validate_host: lower-cased host without port or trailing dot, or null when invalid. */
export function validateHost(value: string): string | null {
  let dotPos = value.length;
  let hostLen = value.length;
  let state: 'usual' | 'literal' | 'rest' = 'usual';
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 0x2e) {
      if (dotPos === i - 1) return null;
      dotPos = i;
    } else if (c === 0x3a) {
      if (state === 'usual') {
        hostLen = i;
        state = 'rest';
      }
    } else if (c === 0x5b) {
      if (i === 0) state = 'literal';
    } else if (c === 0x5d) {
      if (state === 'literal') {
        hostLen = i + 1;
        state = 'rest';
      }
    } else if (c === 0x2d) {
      // allowed
    } else if (c === 0 || c === 0x2f || c <= 0x20 || c === 0x7f) {
      return null;
    }
  }
  if (dotPos === hostLen - 1) hostLen--;
  if (hostLen <= 0) return null;
  return value.slice(0, hostLen).toLowerCase();
}

/** What nginx makes of a User-Agent (ngx_http_process_user_agent). */
function browser(ua: string | undefined): { msie: boolean; msie6: boolean; chrome: boolean } {
  if (ua === undefined) return { msie: false, msie6: false, chrome: false };
  let msie = false;
  let msie6 = false;
  const i = ua.indexOf('MSIE ');
  if (i >= 0 && i + 7 < ua.length) {
    msie = true;
    if (ua[i + 6] === '.') {
      if (ua[i + 5] === '4' || ua[i + 5] === '5') msie6 = true;
      else if (ua[i + 5] === '6' && !ua.slice(i + 8).includes('SV1')) msie6 = true;
    }
  }
  if (ua.includes('Opera')) {
    msie = false;
    msie6 = false;
  }
  const chrome = !ua.includes('Gecko/') && ua.includes('Chrome/');
  return { msie, msie6, chrome };
}

/**
 * The path part of a request URI decoded and normalised as nginx does (percent-decoding, merged
 * slashes, "." and ".." resolved); null when nginx answers 400 (a bad escape, a NUL, ".." above
 * the root).
 */
export function normalizeUri(uri: string): { path: string; args: string | null } | null {
  const q = uri.indexOf('?');
  const rawPath = q >= 0 ? uri.slice(0, q) : uri;
  const args = q >= 0 ? uri.slice(q + 1) : null;
  const hash = rawPath.indexOf('#');
  const encoded = hash >= 0 ? rawPath.slice(0, hash) : rawPath;
  const bytes: number[] = [];
  for (let i = 0; i < encoded.length; i++) {
    const c = encoded.charCodeAt(i);
    if (c === 0x25) {
      const h = encoded.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(h)) return null;
      const v = parseInt(h, 16);
      if (v === 0) return null;
      bytes.push(v);
      i += 2;
    } else bytes.push(c);
  }
  const decoded = Buffer.from(bytes).toString('latin1');
  const out: string[] = [];
  const segments = decoded.split('/');
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i]!;
    const last = i === segments.length - 1;
    if (s === '' || s === '.') {
      if (last) out.push('');
      continue;
    }
    if (s === '..') {
      if (out.length === 0) return null;
      out.pop();
      if (last) out.push('');
      continue;
    }
    out.push(s);
  }
  return { path: '/' + out.join('/'), args };
}

/** ngx_parse_http_time for the RFC 1123 form nginx itself sends; -1 for anything else. */
export function parseHttpTime(value: string): number {
  const m = /^[A-Za-z]{3}, (\d{2}) ([A-Za-z]{3}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT$/.exec(value);
  if (!m) return -1;
  const month = [
    'Jan',
    'Feb',
    'Mar',
    'Apr',
    'May',
    'Jun',
    'Jul',
    'Aug',
    'Sep',
    'Oct',
    'Nov',
    'Dec',
  ].indexOf(m[2]!);
  if (month < 0) return -1;
  const t = Date.UTC(+m[3]!, month, +m[1]!, +m[4]!, +m[5]!, +m[6]!);
  return Number.isNaN(t) ? -1 : t / 1000;
}

/** ngx_http_test_if_match: is `etag` in the list (weak: "W/" prefixes ignored)? */
export function etagMatches(list: string, etag: string, weak: boolean): boolean {
  if (list === '*') return true;
  let p = 0;
  const end = list.length;
  while (p < end) {
    if (weak && end - p > 2 && list[p] === 'W' && list[p + 1] === '/') p += 2;
    if (etag.length > end - p) return false;
    if (list.startsWith(etag, p)) {
      let q = p + etag.length;
      while (q < end && (list[q] === ' ' || list[q] === '\t')) q++;
      if (q === end || list[q] === ',') return true;
    }
    while (p < end && list[p] !== ',') p++;
    while (p < end && (list[p] === ' ' || list[p] === '\t' || list[p] === ',')) p++;
  }
  return false;
}

/** ngx_http_range_parse: half-open ranges, 'unsatisfiable' (416), or null (serve it all). */
export function parseRanges(
  spec: string,
  size: number,
): [number, number][] | 'unsatisfiable' | null {
  const out: [number, number][] = [];
  let p = 0;
  let total = 0;
  const s = spec;
  const digit = (i: number): boolean =>
    i < s.length && s.charCodeAt(i) >= 0x30 && s.charCodeAt(i) <= 0x39;
  const MAX = Number.MAX_SAFE_INTEGER / 10;
  for (;;) {
    let start = 0;
    let end = 0;
    let suffix = false;
    while (s[p] === ' ') p++;
    let found = false;
    if (s[p] !== '-') {
      if (!digit(p)) return 'unsatisfiable';
      while (digit(p)) {
        if (start >= MAX) return 'unsatisfiable';
        start = start * 10 + s.charCodeAt(p++) - 0x30;
      }
      while (s[p] === ' ') p++;
      if (s[p++] !== '-') return 'unsatisfiable';
      while (s[p] === ' ') p++;
      if (p >= s.length || s[p] === ',') {
        end = size;
        found = true;
      }
    } else {
      suffix = true;
      p++;
    }
    if (!found) {
      if (!digit(p)) return 'unsatisfiable';
      while (digit(p)) {
        if (end >= MAX) return 'unsatisfiable';
        end = end * 10 + s.charCodeAt(p++) - 0x30;
      }
      while (s[p] === ' ') p++;
      if (p < s.length && s[p] !== ',') return 'unsatisfiable';
      if (suffix) {
        start = end < size ? size - end : 0;
        end = size - 1;
      }
      if (end >= size) end = size;
      else end++;
    }
    if (start < end) {
      out.push([start, end]);
      total += end - start;
    } else if (start === 0) return null;
    if (s[p++] !== ',') break;
  }
  if (out.length === 0) return 'unsatisfiable';
  if (total > size) return null;
  return out;
}

/** Stat-based lookup under `root` for a normalised path; never outside `root`. */
export function directoryLookup(root: string): SiteLookup {
  const base = root.replace(/\/+$/, '');
  return async (path: string): Promise<Lookup> => {
    if (path.includes('\0')) return { kind: 'none' };
    const full = base + (path.endsWith('/') && path.length > 1 ? path.slice(0, -1) : path);
    let st: Stats;
    try {
      st = await stat(full);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      return code === 'EACCES' ? { kind: 'forbidden' } : { kind: 'none' };
    }
    if (st.isDirectory()) return { kind: 'dir' };
    if (!st.isFile()) return { kind: 'none' };
    if (path.endsWith('/')) return { kind: 'none' };
    return {
      kind: 'file',
      file: { size: st.size, mtimeMs: st.mtimeMs, type: mimeType(path), path: full },
    };
  };
}
