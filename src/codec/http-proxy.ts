/**
 * What an HTTP/1.1 proxy decides about a request, pure: where it goes and what may be forwarded.
 * The messages themselves (heads, body framing) are http1.ts, which this module re-exports for
 * the callers that import both from here.
 *
 * ```
 * request-target: CONNECT  → authority-form  host:port             RFC 9112 §3.2.3
 *                 others   → absolute-form   http://host[:port]/p  RFC 9112 §3.2.2
 * ```
 * @module
 */
import { isIPv6 } from 'node:net';
import type { Target } from '../core/target.js';
import { parseError, type HeaderFields, type HttpRequestHead } from './http1.js';

export * from './http1.js';

// ---------------------------------------------------------------------------------------------
// Where a request goes

/** RFC 3986 §3.2.2 reg-name characters (unreserved and sub-delims; percent-encoding refused). */
const REG_NAME = /^[A-Za-z0-9\-._~!$&'()*+,;=]+$/;

function parseHostPort(authority: string, defaultPort: number | null): Target {
  let host: string;
  let portText: string | undefined;
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    if (close < 0) throw parseError(`'${authority.slice(0, 100)}' has an unclosed '['`);
    host = authority.slice(1, close);
    if (!isIPv6(host) || host.includes('%'))
      throw parseError(`'${host.slice(0, 60)}' is not an IPv6 address`);
    const rest = authority.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) throw parseError(`'${authority.slice(0, 100)}' is not host:port`);
      portText = rest.slice(1);
    }
  } else {
    const colon = authority.lastIndexOf(':');
    host = colon < 0 ? authority : authority.slice(0, colon);
    portText = colon < 0 ? undefined : authority.slice(colon + 1);
    if (!REG_NAME.test(host)) throw parseError(`'${host.slice(0, 100)}' is not a host name`);
  }
  if (Buffer.byteLength(host) > 255) throw parseError('the host name is over 255 bytes');
  let port: number;
  // RFC 3986 §3.2.3: an empty port means the scheme's default.
  if (portText === undefined || portText === '') {
    if (defaultPort === null) throw parseError(`'${authority.slice(0, 100)}' has no port`);
    port = defaultPort;
  } else {
    if (!/^\d{1,5}$/.test(portText)) throw parseError(`port '${portText.slice(0, 20)}' is invalid`);
    port = Number(portText);
    if (port < 1 || port > 65535) throw parseError(`port ${portText} is out of range`);
  }
  return { host, port };
}

/** RFC 9112 §3.2.3 authority-form `host:port` (IPv6 in brackets); the port is required. */
export function parseAuthority(authority: string): Target {
  return parseHostPort(authority, null);
}

export interface ForwardTarget {
  readonly target: Target;
  /** origin-form path and query to send upstream (RFC 9112 §3.2.1: "/" when the path is empty) */
  readonly path: string;
  /** Host field value for upstream: the URI's authority (RFC 9112 §3.2.2) */
  readonly hostHeader: string;
}

/**
 * RFC 9112 §3.2.2: an absolute-form `http://host[:port]/path?q` request target. The path is kept
 * byte for byte (no dot-segment or percent normalization: that is the origin's business); a
 * fragment is dropped; userinfo is refused.
 */
export function parseAbsoluteForm(url: string): ForwardTarget {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([^#]*)/.exec(url);
  if (!m)
    throw parseError(
      'the request target is not an absolute URL: this is a proxy, send requests as GET http://host/path',
    );
  const scheme = m[1]!.toLowerCase();
  if (scheme !== 'http')
    throw parseError(`only http:// URLs can be forwarded (use CONNECT for ${scheme}://)`);
  const authority = m[2]!;
  if (authority.includes('@')) throw parseError('credentials in the URL are not forwarded');
  if (authority === '') throw parseError('the URL has no host');
  const target = parseHostPort(authority, 80);
  const rest = m[3]!;
  const path = rest === '' ? '/' : rest.startsWith('?') ? `/${rest}` : rest;
  return { target, path, hostHeader: authority };
}

export type ProxyRoute =
  | { readonly kind: 'connect'; readonly target: Target }
  | ({ readonly kind: 'forward' } & ForwardTarget);

/**
 * Where a proxy request goes: CONNECT with an authority, or any other method with an absolute
 * http:// URL. An origin-form target (`GET /index.html`) means the client took us for a web
 * server; the message says so.
 */
export function routeRequest(head: HttpRequestHead): ProxyRoute {
  if (head.method === 'CONNECT') return { kind: 'connect', target: parseAuthority(head.target) };
  if (head.target.startsWith('/') || head.target === '*')
    throw parseError(
      `this is an HTTP proxy, not a web server: configure it as your proxy, or send '${head.method} http://host/path' (got '${head.target.slice(0, 60)}')`,
    );
  const fwd = parseAbsoluteForm(head.target);
  // RFC 9112 §3.2.4: OPTIONS for a URI with an empty path and no query goes on as `OPTIONS *`.
  if (head.method === 'OPTIONS' && /^[^:]+:\/\/[^/?#]*(#.*)?$/.test(head.target))
    return { kind: 'forward', ...fwd, path: '*' };
  return { kind: 'forward', ...fwd };
}

// ---------------------------------------------------------------------------------------------
// What may be forwarded (RFC 9110 §7.6.1)

/** Hop-by-hop fields, plus the proxy's own. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** Fields kept although hop-by-hop: a body is forwarded with its framing unchanged. */
const FRAMING = new Set(['transfer-encoding']);

function fieldsNamedInConnection(headers: HeaderFields): Set<string> {
  const named = new Set<string>();
  for (const [k, v] of headers)
    if (k.toLowerCase() === 'connection')
      for (const t of v.split(',')) named.add(t.trim().toLowerCase());
  return named;
}

/**
 * The fields that may be forwarded to the next hop: hop-by-hop fields (RFC 9110 §7.6.1), any named
 * in Connection, and `drop` (lower case) removed. Transfer-Encoding stays when `keepFraming`: the
 * body bytes are forwarded as they are, so their framing must be announced as it was.
 */
export function forwardHeaders(
  headers: HeaderFields,
  options: { keepFraming?: boolean; drop?: readonly string[] } = {},
): [string, string][] {
  const named = fieldsNamedInConnection(headers);
  const drop = new Set(options.drop);
  const out: [string, string][] = [];
  for (const [k, v] of headers) {
    const lower = k.toLowerCase();
    if (drop.has(lower)) continue;
    if ((HOP_BY_HOP.has(lower) || named.has(lower)) && !(options.keepFraming && FRAMING.has(lower)))
      continue;
    out.push([k, v]);
  }
  return out;
}

/**
 * The same for node:http's flat rawHeaders (`[name, value, name, value, ...]`); framing fields are
 * dropped too (node:http reframes bodies).
 */
export function forwardableHeaders(raw: readonly string[]): [string, string][] {
  const pairs: [string, string][] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) pairs.push([raw[i]!, raw[i + 1]!]);
  return forwardHeaders(pairs);
}

/** `Proxy-Authorization: Basic base64(user:pass)` (RFC 7617) → credentials, or null. */
export function parseBasicAuth(
  value: string | undefined,
): { username: string; password: string } | null {
  if (!value) return null;
  const m = /^Basic[ \t]+([A-Za-z0-9+/]+={0,2})[ \t]*$/i.exec(value);
  if (!m) return null;
  const text = Buffer.from(m[1]!, 'base64').toString('utf8');
  const i = text.indexOf(':');
  if (i < 0) return null;
  return { username: text.slice(0, i), password: text.slice(i + 1) };
}
