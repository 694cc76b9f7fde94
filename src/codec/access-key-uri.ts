/**
 * Access keys as `ss://` URIs: SIP002 (shadowsocks.org "SIP002 URI scheme"), the legacy whole-base64
 * form (shadowsocks.org "Configs: URI and QR code"), SIP003 plugin parameters, and Outline's `prefix`
 * parameter (Outline "Connection prefix disguises").
 *
 * ```
 * ss://userinfo@host:port[/][?plugin=...&prefix=...][#tag]                 SIP002
 *   userinfo, AEAD-2017: base64url(method ":" password), padding optional  (SIP002: recommended)
 *                     or percent-encoded method ":" password              (SIP002: allowed)
 *   userinfo, 2022:      percent-encoded method ":" password              (SIP002: MUST NOT be base64)
 *   host:                IPv4, DNS name, or [IPv6]
 *   plugin:              percent-encoded "name;opt=val;flag"               (SIP003, `\` escapes)
 *   prefix:              percent-encoded UTF-8 text, code points U+0000..U+00FF = bytes  (Outline)
 *   dns:                 a domain: the stream goes in Ladder's DNS tunnel (codec/dns-tunnel.ts)
 *   tag:                 percent-encoded UTF-8 name of the key
 * ss://base64(method ":" password "@" host ":" port)[#tag]                 legacy
 * ```
 *
 * Parsing is lenient where real keys differ (base64url or standard base64, with or without padding,
 * padding percent-encoded as `%3D`, upper-case method names, a few aliases) and strict where a mistake
 * would silently give a key that cannot connect: a 2022 password must be base64 of exactly the key
 * size (SIP022), each `:`-separated SIP023 identity PSK too, and a prefix must leave enough of the
 * salt random. Every failure is a ConfigError whose message names the part and the fix; no message
 * ever contains the password. Pure: no I/O; randomness for {@link generateSsPassword} is a parameter.
 * @module
 */
import { isIPv4, isIPv6 } from 'node:net';
import { CodecError, ConfigError } from '../errors.js';
import { checkTunnelDomain } from './dns-tunnel.js';
import { SS_METHODS, SS_METHOD_NAMES, isSsMethod, type SsMethod } from '../crypto/methods.js';

/** A SIP003 plugin and its options (`name;key=value;flag`; a flag has the value ''). */
export interface SsPlugin {
  name: string;
  options: Record<string, string>;
}

export interface SsAccessKey {
  method: SsMethod;
  /** AEAD-2017: any text. 2022: base64 PSK of the method's key size, or SIP023 `iPSK:...:uPSK`. */
  password: string;
  host: string;
  port: number;
  /** The key's display name (`#tag`). */
  tag?: string;
  /** Outline's prefix: bytes that replace the start of each TCP salt (with the prefix transport). */
  prefix?: Uint8Array;
  /** SIP003 plugin and its options. */
  plugin?: SsPlugin;
  /**
   * Ladder's DNS tunnel (`dns=<domain>`): the Shadowsocks stream goes in DNS queries for names
   * under this domain, through a recursive resolver, to the server authoritative for it.
   */
  dns?: string;
}

/**
 * Names other implementations accept for our methods: outline-ss-server takes the RFC-style
 * `AEAD_*` names, shadowsocks-rust `chacha20-poly1305`. Matched after lower-casing.
 */
const METHOD_ALIASES = {
  'chacha20-poly1305': 'chacha20-ietf-poly1305',
  aead_chacha20_poly1305: 'chacha20-ietf-poly1305',
  aead_aes_128_gcm: 'aes-128-gcm',
  aead_aes_256_gcm: 'aes-256-gcm',
} as const satisfies Record<string, SsMethod>;

/** Stream ciphers (shadowsocks.org "Stream ciphers", deprecated): named as such in the error. */
const STREAM_CIPHER = /^(rc4(-md5(-6)?)?|table|salsa20|chacha20(-ietf)?|.*-(cfb\d*|ctr|ofb))$/;

/**
 * Salt bytes a prefix must leave random. A prefix makes salts share their first bytes; with 8 random
 * bytes left a repeated salt (and so a repeated session key and nonce) needs about 2^32 connections.
 */
export const MIN_RANDOM_SALT_BYTES = 8;
/** Outline "Connection prefix disguises": a prefix must not be longer than 16 bytes. */
export const MAX_PREFIX_BYTES = 16;

/** The longest prefix `method` allows: Outline's 16 bytes, less if its salt is short. */
export function maxPrefixLength(method: SsMethod): number {
  return Math.min(MAX_PREFIX_BYTES, SS_METHODS[method].saltSize - MIN_RANDOM_SALT_BYTES);
}

function bad(part: string, why: string): ConfigError {
  return new ConfigError('ERR_KEY_URI', `ss:// key: ${part} ${why}`);
}

/** Quotes user input for a message: short, one line, control characters escaped. */
function show(text: string): string {
  const cut = text.length > 40 ? `${text.slice(0, 40)}...` : text;
  // eslint-disable-next-line no-control-regex
  return `'${cut.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)}'`;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** No lone UTF-16 surrogates: such text has no UTF-8 form, so it cannot be in a URI. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

function isWellFormed(text: string): boolean {
  return text.search(LONE_SURROGATE) < 0;
}

/** encodeURIComponent, with a ConfigError naming `part` instead of a URIError. */
function encodePart(text: string, part: string): string {
  if (!isWellFormed(text)) throw bad(part, 'is not well-formed Unicode (it has a lone surrogate)');
  return encodeURIComponent(text);
}

/** RFC 3986 §2.1 percent-decoding to bytes; throws naming `part` on a malformed escape. */
function percentDecodeBytes(text: string, part: string): Uint8Array {
  const raw = Buffer.from(text, 'utf8');
  const out = new Uint8Array(raw.length);
  let n = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c !== 0x25) {
      out[n++] = c;
      continue;
    }
    const hex = raw.subarray(i + 1, i + 3).toString('latin1');
    if (!/^[0-9A-Fa-f]{2}$/.test(hex))
      throw bad(part, `has a '%' not followed by two hex digits (write a literal % as %25)`);
    out[n++] = parseInt(hex, 16);
    i += 2;
  }
  return out.subarray(0, n);
}

/** Percent-decoding to text; the bytes must be UTF-8. */
function percentDecode(text: string, part: string): string {
  const bytes = percentDecodeBytes(text, part);
  try {
    return utf8.decode(bytes);
  } catch {
    throw bad(part, 'is not UTF-8 after percent-decoding');
  }
}

/** base64 or base64url, padding optional, to UTF-8 text; null if it is not that. */
function decodeBase64Text(text: string): string | null {
  const body = text.replace(/={1,2}$/, '');
  if (!/^[A-Za-z0-9+/_-]+$/.test(body) || body.length % 4 === 1) return null;
  try {
    return utf8.decode(Buffer.from(body.replace(/-/g, '+').replace(/_/g, '/'), 'base64'));
  } catch {
    return null;
  }
}

/** base64 or base64url, padding optional, to bytes; null if it is not that. */
function decodeBase64Bytes(text: string): Buffer | null {
  const body = text.replace(/={1,2}$/, '');
  if (!/^[A-Za-z0-9+/_-]+$/.test(body) || body.length % 4 === 1) return null;
  return Buffer.from(body.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
}

/** A method name as written in a key, to ours; throws ERR_UNKNOWN_METHOD listing the supported ones. */
export function resolveMethod(name: string): SsMethod {
  if (isSsMethod(name)) return name;
  const lower = name.toLowerCase();
  if (isSsMethod(lower)) return lower;
  if (Object.hasOwn(METHOD_ALIASES, lower))
    return METHOD_ALIASES[lower as keyof typeof METHOD_ALIASES];
  const why = STREAM_CIPHER.test(lower)
    ? ' (a stream cipher without integrity protection, deprecated by shadowsocks.org)'
    : '';
  throw new ConfigError(
    'ERR_UNKNOWN_METHOD',
    `ss:// key: unknown method ${show(name)}${why}; supported: ${SS_METHOD_NAMES.join(', ')}`,
  );
}

/**
 * Checks a password for `method`: non-empty; for 2022 (SIP022) base64 of exactly keySize bytes, or
 * SIP023 `iPSK:...:uPSK` with every part so (identity headers exist for the AES methods only).
 */
export function checkSsPassword(method: SsMethod, password: string): void {
  const spec = SS_METHODS[method];
  if (password.length === 0) throw bad('the password', 'is empty');
  if (!isWellFormed(password))
    throw bad('the password', 'is not well-formed Unicode (it has a lone surrogate)');
  if (spec.edition === 2017) return;
  const parts = password.split(':');
  if (parts.length > 1 && spec.cipher === 'chacha20-poly1305') {
    throw bad(
      'the password',
      `has ${parts.length} ':'-separated PSKs, but ${method} has no identity headers (SIP023 is for the AES methods); use a single PSK`,
    );
  }
  const fix = `(make one with 'ladder keys new --method ${method}' or 'openssl rand -base64 ${spec.keySize}')`;
  parts.forEach((part, i) => {
    const name =
      parts.length === 1
        ? 'the password'
        : i < parts.length - 1
          ? `identity PSK ${i + 1} of the password (part ${i + 1} of ${parts.length})`
          : `the user PSK of the password (part ${i + 1} of ${parts.length})`;
    const bytes = decodeBase64Bytes(part);
    if (bytes === null)
      throw bad(name, `is not base64; ${method} takes base64 of ${spec.keySize} bytes ${fix}`);
    if (bytes.length !== spec.keySize)
      throw bad(
        name,
        `is base64 of ${bytes.length} bytes; ${method} takes exactly ${spec.keySize} ${fix}`,
      );
  });
}

function splitMethodPassword(text: string): { method: SsMethod; password: string } {
  const i = text.indexOf(':');
  if (i <= 0) throw bad('the user info', "must be 'method:password'");
  const method = resolveMethod(text.slice(0, i));
  const password = text.slice(i + 1);
  checkSsPassword(method, password);
  return { method, password };
}

/** SIP002 userinfo: percent-encoded `method:password`, or base64(url) of it (maybe with `%3D`). */
function parseUserinfo(raw: string): { method: SsMethod; password: string } {
  if (raw.length === 0) throw bad('the user info', "is empty; write 'method:password' before '@'");
  let text = raw.includes('%') ? percentDecode(raw, 'the user info') : raw;
  if (!text.includes(':')) {
    const decoded = decodeBase64Text(text);
    if (decoded === null || !decoded.includes(':'))
      throw bad(
        'the user info',
        "is neither base64url of 'method:password' nor percent-encoded 'method:password'",
      );
    text = decoded;
  }
  return splitMethodPassword(text);
}

const HOST_NAME =
  /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$/;

function checkHost(host: string): void {
  if (isIPv6(host)) return;
  if (host.includes(':'))
    throw bad(`the host ${show(host)}`, 'looks like IPv6; put it in brackets, e.g. [::1]:8388');
  if (!isIPv4(host) && !HOST_NAME.test(host))
    throw bad(
      `the host ${show(host)}`,
      'is not an IP address or host name (letters, digits, - and . only; IDN names in punycode)',
    );
}

function parsePort(text: string): number {
  const port = Number(text);
  if (!/^\d{1,5}$/.test(text) || port < 1 || port > 65535)
    throw bad(`the port ${show(text)}`, 'is not a number from 1 to 65535');
  return port;
}

/** `host:port` or `[v6]:port`. */
function parseHostPort(text: string): { host: string; port: number } {
  if (text.startsWith('[')) {
    const m = /^\[([^\]]*)\](?::(.*))?$/.exec(text);
    if (!m) throw bad(`the address ${show(text)}`, 'must be [IPv6]:port');
    if (!isIPv6(m[1]!)) throw bad(`the host ${show(m[1]!)}`, 'in brackets is not an IPv6 address');
    if (m[2] === undefined)
      throw bad(`the address ${show(text)}`, 'has no port: write [IPv6]:port');
    return { host: m[1]!, port: parsePort(m[2]) };
  }
  const i = text.lastIndexOf(':');
  if (i < 0)
    throw bad(`the address ${show(text)}`, 'has no port: write host:port, e.g. 198.18.0.1:8388');
  const host = text.slice(0, i);
  if (host.length === 0) throw bad('the host', 'is empty');
  // Unbracketed, '::1:8388' could be the address ::1:8388 or ::1 port 8388 (RFC 3986 §3.2.2).
  if (host.includes(':'))
    throw bad(`the address ${show(text)}`, 'has an IPv6 host without brackets: write [::1]:8388');
  checkHost(host);
  return { host, port: parsePort(text.slice(i + 1)) };
}

/** Outline's prefix text (percent-encoded; `+` is a space, as in Go's url.Query) → bytes. */
export function decodePrefix(text: string): Uint8Array {
  const bytes = percentDecodeBytes(text.replace(/\+/g, ' '), 'the prefix');
  let s: string;
  try {
    s = utf8.decode(bytes);
  } catch {
    // Outline reads the prefix as text: byte 0xA8 is the character U+00A8, written %C2%A8.
    throw bad(
      'the prefix',
      "is not UTF-8 after percent-decoding: write each byte 0x80-0xFF as its character's UTF-8, e.g. 0xA8 as %C2%A8 (what encodeURIComponent('\\u00a8') gives)",
    );
  }
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff)
      throw bad(
        'the prefix',
        `has the character U+${c.toString(16).toUpperCase().padStart(4, '0')}, above U+00FF (each character stands for one byte 0-255)`,
      );
    out[i] = c;
  }
  return out;
}

/** Bytes → Outline's prefix text: each byte as the character U+00XX, then encodeURIComponent. */
export function encodePrefix(bytes: Uint8Array): string {
  return encodeURIComponent(String.fromCharCode(...bytes));
}

function checkPrefix(method: SsMethod, prefix: Uint8Array): void {
  const max = maxPrefixLength(method);
  if (prefix.length > max)
    throw bad(
      'the prefix',
      `is ${prefix.length} bytes; with ${method} (a ${SS_METHODS[method].saltSize}-byte salt) keep it to ${max} or fewer so that salts stay unique (Outline's limit is ${MAX_PREFIX_BYTES}; the shortest prefix that works is best)`,
    );
}

/** SIP003 option text: `name;key=value;flag`, where `\` escapes the next character. */
export function parsePluginText(text: string): SsPlugin {
  // Split on unescaped ';', then each option on its first unescaped '='; unescape last.
  const fields: string[][] = [[]];
  let cur = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\\') {
      if (i + 1 >= text.length) throw bad('the plugin', "ends with a lone '\\' (write \\\\)");
      cur += c + text[++i];
    } else if (c === ';') {
      fields.at(-1)!.push(cur);
      fields.push([]);
      cur = '';
    } else if (c === '=' && fields.at(-1)!.length === 0 && fields.length > 1) {
      fields.at(-1)!.push(cur);
      cur = '';
    } else cur += c;
  }
  fields.at(-1)!.push(cur);
  const unescape = (s: string): string => s.replace(/\\(.)/gs, '$1');
  const name = unescape(fields[0]![0]!);
  if (name.length === 0) throw bad('the plugin', 'has no name (plugin=name;option=value)');
  const entries: [string, string][] = [];
  for (const f of fields.slice(1)) {
    const key = unescape(f[0]!);
    if (key.length === 0) {
      if (f.length === 1) continue; // an empty field: `a;;b`
      throw bad('the plugin', 'has an option with no name before its =');
    }
    entries.push([key, f.length > 1 ? unescape(f[1]!) : '']);
  }
  // fromEntries defines own properties, so an option named __proto__ stays an option.
  return { name, options: Object.fromEntries(entries) };
}

/** SIP003: colons, semicolons, equal signs and backslashes MUST be escaped with a backslash. */
export function formatPluginText(p: SsPlugin): string {
  const esc = (s: string): string => s.replace(/[\\:;=]/g, (c) => `\\${c}`);
  return [
    esc(p.name),
    ...Object.entries(p.options).map(([k, v]) => (v === '' ? esc(k) : `${esc(k)}=${esc(v)}`)),
  ].join(';');
}

/**
 * Parses an `ss://` URI (SIP002, or the legacy whole-base64 form). Unknown query parameters are
 * ignored, as SIP002 asks. Throws ConfigError `ERR_KEY_URI` (or `ERR_UNKNOWN_METHOD`) naming the part.
 */
export function parseSsUri(uri: string): SsAccessKey {
  const text = uri.trim();
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(text)?.[1];
  if (scheme?.toLowerCase() !== 'ss' || text.slice(3, 5) !== '//') {
    throw bad(
      scheme === undefined ? 'the text' : `the scheme '${scheme}:'`,
      "is not ss://: an access key starts with ss:// (make one with 'ladder keys new')",
    );
  }
  let rest = text.slice(5);

  let tag: string | undefined;
  const hash = rest.indexOf('#');
  if (hash >= 0) {
    const raw = rest.slice(hash + 1);
    rest = rest.slice(0, hash);
    // A tag is only a name: keep a malformed one as written rather than refuse the key.
    try {
      tag = percentDecode(raw, 'the #tag');
    } catch {
      tag = raw.replace(LONE_SURROGATE, '\uFFFD');
    }
  }
  let query = '';
  const q = rest.indexOf('?');
  if (q >= 0) {
    query = rest.slice(q + 1);
    rest = rest.slice(0, q);
  }

  let key: SsAccessKey;
  const at = rest.lastIndexOf('@');
  if (at >= 0) {
    // SIP002: the last '/' is optional before '?' or '#'.
    const authority = rest.endsWith('/') ? rest.slice(0, -1) : rest;
    const { method, password } = parseUserinfo(authority.slice(0, at));
    key = { method, password, ...parseHostPort(authority.slice(at + 1)) };
  } else {
    key = parseLegacy(rest);
  }
  if (tag !== undefined && tag.length > 0) key.tag = tag;

  for (const pair of query.split('&')) {
    if (pair.length === 0) continue;
    const eq = pair.indexOf('=');
    const name = eq < 0 ? pair : pair.slice(0, eq);
    const value = eq < 0 ? '' : pair.slice(eq + 1);
    if (name === 'prefix') {
      const prefix = decodePrefix(value);
      if (prefix.length > 0) {
        checkPrefix(key.method, prefix);
        key.prefix = prefix;
      }
    } else if (name === 'dns') {
      key.dns = parseDnsTunnelDomain(value);
    } else if (name === 'plugin' && value.length > 0) {
      key.plugin = parsePluginText(
        percentDecode(value.replace(/\+/g, ' '), 'the plugin parameter'),
      );
    }
    // SIP002: unsupported arguments should be ignored (e.g. Outline's outline=1).
  }
  return key;
}

/** The `dns=` parameter: the DNS tunnel's domain, checked and in canonical form. */
function parseDnsTunnelDomain(value: string): string {
  const text = percentDecode(value, 'the dns parameter');
  try {
    return checkTunnelDomain(text);
  } catch (err) {
    if (!(err instanceof CodecError)) throw err;
    throw bad(
      `dns=${show(text)}`,
      `is not a tunnel domain: ${err.message.replace(/^DNS tunnel: /, '')}`,
    );
  }
}

/** `ss://base64(method:password@host:port)`: base64 may hold '/', so a trailing one is tried both ways. */
function parseLegacy(body: string): SsAccessKey {
  const candidates = [body.includes('%') ? percentDecode(body, 'the key') : body];
  if (candidates[0]!.endsWith('/')) candidates.push(candidates[0]!.slice(0, -1));
  for (const c of candidates) {
    const decoded = decodeBase64Text(c);
    if (decoded === null) continue;
    const at = decoded.lastIndexOf('@');
    if (at < 0) continue;
    return {
      ...splitMethodPassword(decoded.slice(0, at)),
      ...parseHostPort(decoded.slice(at + 1)),
    };
  }
  throw bad(
    'the key',
    "has no '@': it is neither SIP002 (ss://userinfo@host:port) nor base64 of method:password@host:port",
  );
}

/**
 * Formats a key as SIP002: base64url userinfo without padding for AEAD-2017, percent-encoded
 * `method:password` for 2022 (SIP002: MUST NOT be base64). `/` before `?` as SIP002 recommends.
 * Checks the key as parseSsUri would, so what it writes always parses back to the same key.
 */
export function formatSsUri(key: SsAccessKey): string {
  const method = resolveMethod(key.method);
  checkSsPassword(method, key.password);
  checkHost(key.host);
  if (!Number.isInteger(key.port) || key.port < 1 || key.port > 65535)
    throw bad(`the port '${key.port}'`, 'is not a number from 1 to 65535');
  const userinfo =
    SS_METHODS[method].edition === 2017
      ? Buffer.from(`${method}:${key.password}`, 'utf8').toString('base64url')
      : `${encodeURIComponent(method)}:${encodePart(key.password, 'the password')}`;
  const host = isIPv6(key.host) ? `[${key.host}]` : key.host;
  const params: string[] = [];
  if (key.plugin) {
    if (key.plugin.name.length === 0) throw bad('the plugin', 'has no name');
    params.push(`plugin=${encodePart(formatPluginText(key.plugin), 'the plugin')}`);
  }
  if (key.prefix && key.prefix.length > 0) {
    checkPrefix(method, key.prefix);
    params.push(`prefix=${encodePrefix(key.prefix)}`);
  }
  if (key.dns !== undefined) params.push(`dns=${parseDnsTunnelDomain(key.dns)}`);
  const query = params.length > 0 ? `/?${params.join('&')}` : '';
  const tag = key.tag ? `#${encodePart(key.tag, 'the tag')}` : '';
  return `ss://${userinfo}@${host}:${key.port}${query}${tag}`;
}

/**
 * A fresh secret for `method`. 2022 (SIP022): base64 of keySize random bytes, the PSK itself.
 * AEAD-2017: 24 random bytes as base64url (192 bits; EVP_BytesToKey stretches nothing, so the
 * password must carry the entropy).
 */
export function generateSsPassword(method: SsMethod, random: (n: number) => Uint8Array): string {
  const spec = SS_METHODS[method];
  if (spec.edition === 2022) return Buffer.from(random(spec.keySize)).toString('base64');
  return Buffer.from(random(24)).toString('base64url');
}
