/**
 * The WebSocket opening handshake (RFC 6455 §4), pure: what a server checks in an upgrade request,
 * what it answers, what a client sends and checks in the answer. The heads themselves are parsed and
 * written by the HTTP head codec (`http-proxy.ts`, RFC 9112).
 *
 * ```
 * GET /secret-path HTTP/1.1                        101 Switching Protocols
 * Host: example.com                                Upgrade: websocket
 * Upgrade: websocket                               Connection: Upgrade
 * Connection: Upgrade                              Sec-WebSocket-Accept: base64(SHA-1(key ‖ GUID))
 * Sec-WebSocket-Key: base64(16 random bytes)
 * Sec-WebSocket-Version: 13
 * ```
 * The path is the transport's secret: {@link SecretPaths} compares it in constant time against every
 * configured path, so response timing says nothing about how much of a guess was right.
 * @module
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { ConfigError } from '../errors.js';
import { websocketAccept } from './websocket.js';
import { headerValue, type HeaderFields, type HttpRequestHead } from './http-proxy.js';

/** Chrome's User-Agent string on Windows, for the client's upgrade request (what a CDN sees). */
export const BROWSER_USER_AGENT =
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36';

/** The path part of a request-target (origin-form or absolute-form), percent-decoded when it can be. */
export function requestPath(target: string): string {
  let t = target;
  const scheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/.exec(t);
  if (scheme) t = t.slice(scheme[0].length) || '/';
  const q = t.search(/[?#]/);
  if (q >= 0) t = t.slice(0, q);
  try {
    return decodeURIComponent(t);
  } catch {
    return t;
  }
}

const digest = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();

/**
 * A set of secret paths, compared in constant time: the candidate is hashed once and its digest
 * compared with every path's digest by timingSafeEqual, with no early exit.
 */
export class SecretPaths {
  readonly #digests: Buffer[];
  constructor(paths: readonly string[]) {
    this.#digests = [...new Set(paths)].map(digest);
  }
  get size(): number {
    return this.#digests.length;
  }
  has(path: string): boolean {
    const d = digest(path);
    let found = 0;
    for (const s of this.#digests) found |= timingSafeEqual(s, d) ? 1 : 0;
    return found === 1;
  }
}

/** Comma-separated tokens of every occurrence of a field, lower case. */
function tokens(headers: HeaderFields, name: string): string[] {
  const out: string[] = [];
  const lower = name.toLowerCase();
  for (const [k, v] of headers)
    if (k.toLowerCase() === lower)
      for (const t of v.split(',')) {
        const s = t.trim().toLowerCase();
        if (s) out.push(s);
      }
  return out;
}

/** A Sec-WebSocket-Key: base64 of 16 bytes (RFC 6455 §4.1, item 7). */
function isKey(key: string): boolean {
  return /^[A-Za-z0-9+/]{22}==$/.test(key);
}

/**
 * RFC 6455 §4.2.1: is `head` an opening handshake for one of `paths`? Returns the client's
 * Sec-WebSocket-Key when it is, or null when the request belongs to the web site instead (any other
 * path, method or version, a missing or malformed header).
 */
export function acceptUpgradeRequest(head: HttpRequestHead, paths: SecretPaths): string | null {
  // The path is checked first and always, so that every request costs the same comparison.
  const pathOk = paths.has(requestPath(head.target));
  const key = headerValue(head.headers, 'sec-websocket-key')?.trim() ?? '';
  const ok =
    pathOk &&
    head.method === 'GET' &&
    head.version === '1.1' &&
    headerValue(head.headers, 'host') !== undefined &&
    tokens(head.headers, 'upgrade').includes('websocket') &&
    tokens(head.headers, 'connection').includes('upgrade') &&
    headerValue(head.headers, 'sec-websocket-version')?.trim() === '13' &&
    isKey(key);
  return ok ? key : null;
}

/** The 101 answer to an accepted handshake (RFC 6455 §4.2.2, item 5). */
export function upgradeResponse(key: string): Buffer {
  return Buffer.from(
    'HTTP/1.1 101 Switching Protocols\r\n' +
      'Upgrade: websocket\r\n' +
      'Connection: Upgrade\r\n' +
      `Sec-WebSocket-Accept: ${websocketAccept(key)}\r\n\r\n`,
    'latin1',
  );
}

export interface UpgradeRequestOptions {
  /** The request path (the secret), starting with '/'; a query is allowed. */
  path: string;
  /** The Host header (for a CDN: the site's name). */
  host: string;
  /** base64 of 16 random bytes. */
  key: string;
  userAgent?: string;
}

function hasSpaceOrControl(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f) return true;
  }
  return false;
}

/** The client's opening handshake (RFC 6455 §4.1), with a browser's User-Agent. */
export function upgradeRequest(o: UpgradeRequestOptions): Buffer {
  if (!o.path.startsWith('/') || hasSpaceOrControl(o.path))
    throw new ConfigError(
      'ERR_CONFIG',
      `the WebSocket path '${o.path.slice(0, 60)}' must start with '/' and have no spaces or controls`,
    );
  if (hasSpaceOrControl(o.host) || o.host.length === 0)
    throw new ConfigError(
      'ERR_CONFIG',
      'the WebSocket Host must be a name without spaces or controls',
    );
  return Buffer.from(
    `GET ${o.path} HTTP/1.1\r\n` +
      `Host: ${o.host}\r\n` +
      `User-Agent: ${o.userAgent ?? BROWSER_USER_AGENT}\r\n` +
      'Upgrade: websocket\r\n' +
      'Connection: Upgrade\r\n' +
      `Sec-WebSocket-Key: ${o.key}\r\n` +
      'Sec-WebSocket-Version: 13\r\n\r\n',
    'latin1',
  );
}

/**
 * RFC 6455 §4.1 (the client's checks of the answer): null when the server accepted, or the reason
 * it did not, for the client's error message.
 */
export function checkUpgradeResponse(
  head: { status: number; headers: HeaderFields },
  key: string,
): string | null {
  if (head.status !== 101)
    return `the server answered HTTP ${head.status} instead of 101 (a wrong path, or not a WebSocket server)`;
  if (!tokens(head.headers, 'upgrade').includes('websocket'))
    return 'the answer has no Upgrade: websocket';
  if (!tokens(head.headers, 'connection').includes('upgrade'))
    return 'the answer has no Connection: Upgrade';
  const accept = headerValue(head.headers, 'sec-websocket-accept')?.trim();
  if (accept !== websocketAccept(key)) return 'the answer has a wrong Sec-WebSocket-Accept';
  return null;
}
