/**
 * What an HTTP proxy must understand of a request (RFC 9110 §9.3.6 CONNECT, RFC 9112 §3.2.2
 * absolute-form, §3.2.3 authority-form, RFC 9110 §7.6.1 hop-by-hop fields), pure: the framing itself
 * is node:http's (llhttp), this decides where a request goes and what may be forwarded.
 * @module
 */
import { isIPv6 } from 'node:net';
import { CodecError } from '../errors.js';
import type { Target } from '../transport/types.js';

/** RFC 9112 §3.2.3 authority-form `host:port` (IPv6 in brackets); the port is required. */
export function parseAuthority(authority: string): Target {
  const m =
    /^\[([0-9A-Fa-f:.]+)\]:(\d{1,5})$/.exec(authority) ??
    /^([^:[\]\s/@]+):(\d{1,5})$/.exec(authority);
  if (!m) throw new CodecError('ERR_HTTP_PARSE', `'${authority.slice(0, 100)}' is not host:port`);
  const port = Number(m[2]);
  if (port < 1 || port > 65535)
    throw new CodecError('ERR_HTTP_PARSE', `port ${m[2]} is out of range`);
  const host = m[1]!;
  if (authority.startsWith('[') && !isIPv6(host))
    throw new CodecError('ERR_HTTP_PARSE', `'${host}' is not an IPv6 address`);
  if (Buffer.byteLength(host) > 255)
    throw new CodecError('ERR_HTTP_PARSE', 'host name is over 255 bytes');
  return { host, port };
}

export interface ForwardTarget {
  readonly target: Target;
  /** origin-form path and query to send upstream */
  readonly path: string;
  /** Host header value for upstream */
  readonly hostHeader: string;
}

/** RFC 9112 §3.2.2: an absolute-form `http://host[:port]/path?q` request target. */
export function parseAbsoluteForm(url: string): ForwardTarget {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new CodecError(
      'ERR_HTTP_PARSE',
      'the request target is not an absolute URL: this is a proxy, send requests as GET http://host/path',
    );
  }
  if (u.protocol !== 'http:')
    throw new CodecError(
      'ERR_HTTP_PARSE',
      `only http:// URLs can be forwarded (use CONNECT for ${u.protocol}//)`,
    );
  if (u.username || u.password)
    throw new CodecError('ERR_HTTP_PARSE', 'credentials in the URL are not forwarded');
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  if (host.length === 0) throw new CodecError('ERR_HTTP_PARSE', 'the URL has no host');
  const port = u.port ? Number(u.port) : 80;
  return { target: { host, port }, path: `${u.pathname}${u.search}`, hostHeader: u.host };
}

/** RFC 9110 §7.6.1 hop-by-hop fields, plus the proxy's own. */
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

/**
 * The header fields (as node:http's rawHeaders pairs) that may be forwarded: hop-by-hop fields and
 * any named in Connection are dropped.
 */
export function forwardableHeaders(raw: readonly string[]): [string, string][] {
  const named = new Set<string>();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === 'connection')
      for (const t of raw[i + 1]!.split(',')) named.add(t.trim().toLowerCase());
  }
  const out: [string, string][] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const k = raw[i]!.toLowerCase();
    if (HOP_BY_HOP.has(k) || named.has(k)) continue;
    out.push([raw[i]!, raw[i + 1]!]);
  }
  return out;
}

/** `Proxy-Authorization: Basic base64(user:pass)` → credentials, or null when absent or not Basic. */
export function parseBasicAuth(
  value: string | undefined,
): { username: string; password: string } | null {
  if (!value) return null;
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(value);
  if (!m) return null;
  const text = Buffer.from(m[1]!, 'base64').toString('utf8');
  const i = text.indexOf(':');
  if (i < 0) return null;
  return { username: text.slice(0, i), password: text.slice(i + 1) };
}
