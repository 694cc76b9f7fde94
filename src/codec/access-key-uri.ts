/**
 * Access keys as `ss://` URIs: SIP002 (shadowsocks.org "SIP002 URI scheme"), the legacy
 * whole-base64 form, SIP003 plugin parameters, and Outline's `prefix` parameter.
 *
 * ```
 * ss://userinfo@host:port[/][?plugin=...&prefix=...][#tag]
 *   userinfo, AEAD-2017: base64url(method ":" password), padding optional   (SIP002)
 *   userinfo, 2022:      percent-encoded method ":" password               (SIP002: MUST NOT be base64)
 * ss://base64(method ":" password "@" host ":" port)[#tag]                 (legacy)
 * ```
 * Outline's `prefix` is percent-encoded text whose code points U+0000..U+00FF stand for bytes
 * (so `%C2%A8` is the byte 0xA8).
 * @module
 */
import { isIPv6 } from 'node:net';
import { ConfigError } from '../errors.js';
import { SS_METHODS, SS_METHOD_NAMES, isSsMethod, type SsMethod } from '../crypto/methods.js';
import { makeCipherKey } from '../crypto/ss-key.js';

export interface SsAccessKey {
  method: SsMethod;
  password: string;
  host: string;
  port: number;
  tag?: string;
  /** Outline's prefix: bytes that replace the start of the salt (takes effect with the prefix transport). */
  prefix?: Uint8Array;
  /** SIP003 plugin and its options. */
  plugin?: { name: string; options: Record<string, string> };
}

function bad(part: string, why: string): ConfigError {
  return new ConfigError('ERR_KEY_URI', `ss:// key: ${part} ${why}`);
}

function fromBase64(text: string): string | null {
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(text)) return null;
  return Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString('utf8');
}

function splitMethod(userinfo: string): { method: SsMethod; password: string } {
  const i = userinfo.indexOf(':');
  if (i <= 0) throw bad('the user info', "must be 'method:password'");
  const method = userinfo.slice(0, i);
  const password = userinfo.slice(i + 1);
  if (!isSsMethod(method)) {
    throw new ConfigError(
      'ERR_UNKNOWN_METHOD',
      `ss:// key: unknown method '${method}'; supported: ${SS_METHOD_NAMES.join(', ')}`,
    );
  }
  if (password.length === 0) throw bad('the password', 'is empty');
  // Validates 2022 PSKs (base64 of the right length) and names the problem.
  makeCipherKey(method, password);
  return { method, password };
}

function parseHostPort(text: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:([^:]*)$/.exec(text) ?? /^([^:[\]]+):([^:]*)$/.exec(text);
  if (!m) throw bad(`the address '${text}'`, 'must be host:port (IPv6 in brackets)');
  const host = m[1]!;
  if (text.startsWith('[') && !isIPv6(host))
    throw bad(`the host '${host}'`, 'in brackets is not an IPv6 address');
  const port = Number(m[2]);
  if (!/^\d+$/.test(m[2]!) || port < 1 || port > 65535)
    throw bad(`the port '${m[2]}'`, 'is not a number from 1 to 65535');
  return { host, port };
}

/** Outline prefix text → bytes. */
export function decodePrefix(text: string): Uint8Array {
  let s: string;
  try {
    s = decodeURIComponent(text);
  } catch {
    throw bad('the prefix', 'is not valid percent-encoding');
  }
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff)
      throw bad(
        'the prefix',
        `has the character U+${c.toString(16).toUpperCase()}, above U+00FF (each character stands for one byte)`,
      );
    out[i] = c;
  }
  return out;
}

export function encodePrefix(bytes: Uint8Array): string {
  return encodeURIComponent(String.fromCharCode(...bytes));
}

/** SIP003 plugin options: `name;key=value;flag`, with `\` escaping `;`, `=` and `\`. */
function parsePlugin(text: string): { name: string; options: Record<string, string> } {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\\' && i + 1 < text.length) cur += text[++i];
    else if (c === ';') {
      parts.push(cur);
      cur = '';
    } else cur += c;
  }
  parts.push(cur);
  const name = parts.shift()!;
  if (name.length === 0) throw bad('the plugin', 'has no name');
  const options: Record<string, string> = {};
  for (const p of parts) {
    if (p === '') continue;
    const i = p.indexOf('=');
    if (i < 0) options[p] = '';
    else options[p.slice(0, i)] = p.slice(i + 1);
  }
  return { name, options };
}

function formatPlugin(p: { name: string; options: Record<string, string> }): string {
  const esc = (s: string): string => s.replace(/[\\;=]/g, (c) => `\\${c}`);
  return [
    esc(p.name),
    ...Object.entries(p.options).map(([k, v]) => (v === '' ? esc(k) : `${esc(k)}=${esc(v)}`)),
  ].join(';');
}

/** Parses an `ss://` URI. Throws ConfigError (ERR_KEY_URI / ERR_UNKNOWN_METHOD) naming the bad part. */
export function parseSsUri(uri: string): SsAccessKey {
  const text = uri.trim();
  if (!/^ss:\/\//i.test(text)) {
    throw bad(
      `'${text.slice(0, 12)}...'`,
      "must start with ss:// (make one with 'ladder keys new')",
    );
  }
  let rest = text.slice(5);
  let tag: string | undefined;
  const hash = rest.indexOf('#');
  if (hash >= 0) {
    try {
      tag = decodeURIComponent(rest.slice(hash + 1));
    } catch {
      throw bad('the #tag', 'is not valid percent-encoding');
    }
    rest = rest.slice(0, hash);
  }
  let query = '';
  const q = rest.indexOf('?');
  if (q >= 0) {
    query = rest.slice(q + 1);
    rest = rest.slice(0, q);
  }
  rest = rest.replace(/\/$/, '');
  let method: SsMethod;
  let password: string;
  let host: string;
  let port: number;
  const at = rest.lastIndexOf('@');
  if (at < 0) {
    // legacy: ss://base64(method:password@host:port)
    const decoded = fromBase64(rest);
    if (decoded === null || !decoded.includes('@'))
      throw bad(
        'the key',
        'is neither SIP002 (userinfo@host:port) nor base64 of method:password@host:port',
      );
    const a = decoded.lastIndexOf('@');
    ({ method, password } = splitMethod(decoded.slice(0, a)));
    ({ host, port } = parseHostPort(decoded.slice(a + 1)));
  } else {
    const userinfo = rest.slice(0, at);
    let plain: string;
    if (userinfo.includes(':') || userinfo.includes('%')) {
      try {
        plain = decodeURIComponent(userinfo);
      } catch {
        throw bad('the user info', 'is not valid percent-encoding');
      }
    } else {
      const d = fromBase64(userinfo);
      if (d === null)
        throw bad('the user info', 'is neither base64url nor percent-encoded method:password');
      plain = d;
    }
    ({ method, password } = splitMethod(plain));
    ({ host, port } = parseHostPort(rest.slice(at + 1)));
  }
  const key: SsAccessKey = { method, password, host, port };
  if (tag !== undefined && tag !== '') key.tag = tag;
  if (query) {
    for (const pair of query.split('&')) {
      if (!pair) continue;
      const eq = pair.indexOf('=');
      const name = eq < 0 ? pair : pair.slice(0, eq);
      const raw = eq < 0 ? '' : pair.slice(eq + 1);
      if (name === 'prefix') key.prefix = decodePrefix(raw);
      else if (name === 'plugin') {
        let v: string;
        try {
          v = decodeURIComponent(raw.replace(/\+/g, '%20'));
        } catch {
          throw bad('the plugin parameter', 'is not valid percent-encoding');
        }
        key.plugin = parsePlugin(v);
      }
      // other parameters are ignored, as SIP002 allows
    }
  }
  return key;
}

/** Formats a key as SIP002: base64url userinfo for AEAD-2017, percent-encoded for 2022. */
export function formatSsUri(key: SsAccessKey): string {
  const userinfo =
    SS_METHODS[key.method].edition === 2017
      ? Buffer.from(`${key.method}:${key.password}`, 'utf8').toString('base64url')
      : `${encodeURIComponent(key.method)}:${encodeURIComponent(key.password)}`;
  const host = isIPv6(key.host) ? `[${key.host}]` : key.host;
  const params: string[] = [];
  if (key.plugin) params.push(`plugin=${encodeURIComponent(formatPlugin(key.plugin))}`);
  if (key.prefix && key.prefix.length > 0) params.push(`prefix=${encodePrefix(key.prefix)}`);
  const query = params.length > 0 ? `/?${params.join('&')}` : '';
  const tag = key.tag ? `#${encodeURIComponent(key.tag)}` : '';
  return `ss://${userinfo}@${host}:${key.port}${query}${tag}`;
}

/** A fresh secret: 2022 methods get base64 of keySize random bytes; AEAD-2017 a random base64url password. */
export function generateSsPassword(method: SsMethod, random: (n: number) => Uint8Array): string {
  const spec = SS_METHODS[method];
  if (spec.edition === 2022) return Buffer.from(random(spec.keySize)).toString('base64');
  return Buffer.from(random(24)).toString('base64url');
}
