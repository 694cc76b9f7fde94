/**
 * Online keys: a URL the client fetches to learn the current access key, so an operator can move a
 * blocked server without handing out new keys. Two kinds (docs/client.md, "Online keys"):
 *
 * - Outline's dynamic keys: `ssconf://host/path[#name]` is fetched as `https://host/path`, and
 *   `https://...` as itself. The answer is one of Outline's tunnel configs (Outline Config
 *   Reference, "TunnelConfig"): a Shadowsocks URI (`ss://...`), the legacy JSON
 *   `{"server", "server_port", "password", "method", "prefix"?}`, or the YAML form
 *   `transport: {$type: tcpudp, tcp: {$type: shadowsocks, endpoint: host:port, cipher, secret,
 *   prefix?}, udp: ...}`, or `error: {message, details}` (shown to the user).
 * - Ladder's signed key documents (key-document.ts): an `https://` URL whose fragment carries the
 *   operator's public key, `#ladder-pub=<base64url 32 bytes>[&name=...]`.
 *
 * Pure: no I/O.
 * @module
 */
import { parse as parseYaml } from 'yaml';
import { ConfigError } from '../errors.js';
import { formatSsUri, resolveMethod } from './access-key-uri.js';
import { formatLadderKey, parseLadderKey } from './ladder-key.js';
import { ED25519_PUBLIC_KEY_BYTES, type KeyDocumentBody } from './key-document.js';

export type OnlineKey =
  | { readonly kind: 'outline'; readonly url: string; readonly name?: string }
  | {
      readonly kind: 'ladder';
      readonly url: string;
      readonly publicKey: Uint8Array;
      readonly name?: string;
    };

function bad(why: string): ConfigError {
  return new ConfigError('ERR_ONLINE_KEY', `online key: ${why}`);
}

/** True for the schemes of online keys (ssconf://, https://). */
export function isOnlineKeyUri(uri: string): boolean {
  return /^(ssconf|https):\/\//i.test(uri.trim());
}

/** Reads an online key URI; the URL to fetch has no fragment. */
export function parseOnlineKeyUri(uri: string): OnlineKey {
  const text = uri.trim();
  if (!isOnlineKeyUri(text)) throw bad("it must start with 'ssconf://' or 'https://'");
  if (text.length > 4096) throw bad('it is over 4096 characters');
  const https = text.replace(/^ssconf:\/\//i, 'https://');
  let u: URL;
  try {
    u = new URL(https);
  } catch {
    throw bad('it is not a URL: write it as ssconf://host/path or https://host/path');
  }
  if (u.username || u.password) throw bad('a user name or password in the URL is not supported');
  const fragment = u.hash.slice(1);
  u.hash = '';
  const url = u.href;
  const params = new URLSearchParams(fragment);
  const pub = params.get('ladder-pub');
  if (pub === null) {
    let name: string;
    try {
      name = decodeURIComponent(fragment);
    } catch {
      name = '';
    }
    return name ? { kind: 'outline', url, name } : { kind: 'outline', url };
  }
  const raw = /^[A-Za-z0-9_-]+$/.test(pub) ? Buffer.from(pub, 'base64url') : Buffer.alloc(0);
  if (raw.length !== ED25519_PUBLIC_KEY_BYTES)
    throw bad(
      `#ladder-pub= must be the operator's public key, ${ED25519_PUBLIC_KEY_BYTES} bytes as base64url (as ladder keys publish prints it)`,
    );
  const name = params.get('name');
  return name
    ? { kind: 'ladder', url, publicKey: raw, name }
    : { kind: 'ladder', url, publicKey: raw };
}

/** The online key URI for a signed document at `url`. */
export function formatLadderOnlineKey(url: string, publicKey: Uint8Array, name?: string): string {
  const u = new URL(url);
  u.hash = '';
  const frag = `ladder-pub=${Buffer.from(publicKey).toString('base64url')}${name ? `&name=${encodeURIComponent(name)}` : ''}`;
  return `${u.href}#${frag}`;
}

/** Outline's prefix text: each character one byte (U+0000 to U+00FF). */
function prefixBytes(text: unknown): Uint8Array | undefined {
  if (text === undefined || text === null || text === '') return undefined;
  if (typeof text !== 'string') throw bad('"prefix" must be text');
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 0xff) throw bad('"prefix" has a character above U+00FF (each character is one byte)');
    out[i] = c;
  }
  return out;
}

function splitEndpoint(endpoint: unknown): { host: string; port: number } {
  if (typeof endpoint !== 'string')
    throw bad(
      'only a host:port endpoint is supported (not a websocket, dial or first-supported endpoint)',
    );
  const m = /^\[?([^[\]]+?)\]?:(\d{1,5})$/.exec(endpoint.trim());
  if (!m) throw bad(`the endpoint '${endpoint.slice(0, 80)}' is not host:port`);
  return { host: m[1]!, port: Number(m[2]) };
}

function ssKey(o: {
  host: string;
  port: number;
  method: unknown;
  password: unknown;
  prefix?: unknown;
  tag?: string | undefined;
}): string {
  if (typeof o.method !== 'string' || typeof o.password !== 'string')
    throw bad('the document has no cipher (method) or secret (password)');
  const prefix = prefixBytes(o.prefix);
  return formatSsUri({
    method: resolveMethod(o.method),
    password: o.password,
    host: o.host,
    port: o.port,
    ...(prefix ? { prefix } : {}),
    ...(o.tag ? { tag: o.tag } : {}),
  });
}

/**
 * The access key an Outline dynamic key's answer holds: a Shadowsocks URI, the legacy JSON, or the
 * YAML tunnel config with a Shadowsocks TCP dialer. An `error` answer becomes its message.
 */
export function outlineDocumentKey(text: string, tag?: string): string {
  const t = text.trim();
  if (/^ss:\/\//i.test(t)) {
    const line = t.split(/\r?\n/, 1)[0]!.trim();
    return tag && !line.includes('#') ? `${line}#${encodeURIComponent(tag)}` : line;
  }
  let doc: unknown;
  try {
    // JSON is YAML; aliases are capped by the parser (maxAliasCount) so a document cannot balloon.
    doc = parseYaml(t, { maxAliasCount: 50, merge: true, logLevel: 'error' });
  } catch {
    throw bad('the answer is neither an ss:// key, JSON nor YAML: is the URL right?');
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc))
    throw bad('the answer is not a key document (an ss:// key, or an object)');
  const d = doc as Record<string, unknown>;
  if (d.error && typeof d.error === 'object') {
    const e = d.error as { message?: unknown; details?: unknown };
    const msg = typeof e.message === 'string' ? e.message.slice(0, 200) : 'no message';
    const details = typeof e.details === 'string' ? ` (${e.details.slice(0, 200)})` : '';
    throw bad(`the operator's server says: ${msg}${details}`);
  }
  if ('server' in d || 'server_port' in d) {
    const port = Number(d.server_port);
    if (typeof d.server !== 'string' || !Number.isInteger(port))
      throw bad('the JSON needs "server" and "server_port"');
    return ssKey({
      host: d.server,
      port,
      method: d.method,
      password: d.password,
      prefix: d.prefix,
      tag,
    });
  }
  const tr = d.transport as Record<string, unknown> | undefined;
  if (tr && typeof tr === 'object') {
    const tcp = (tr.$type === 'tcpudp' ? tr.tcp : tr) as Record<string, unknown> | undefined;
    if (!tcp || typeof tcp !== 'object' || tcp.$type !== 'shadowsocks')
      throw bad('only a Shadowsocks TCP transport is supported in the YAML form');
    const at = splitEndpoint(tcp.endpoint);
    return ssKey({ ...at, method: tcp.cipher, password: tcp.secret, prefix: tcp.prefix, tag });
  }
  throw bad('the document has neither "server" (JSON) nor "transport" (YAML)');
}

/** One access key for a signed document's body: its only key, or a ladder:// key of them all. */
export function documentAccessKey(body: KeyDocumentBody, name?: string): string {
  const transports: string[] = [];
  for (const k of body.keys) {
    if (/^ladder:/i.test(k.trim())) transports.push(...parseLadderKey(k).transports);
    else transports.push(k.trim());
  }
  const label = name ?? body.name;
  if (transports.length === 1 && !/#/.test(transports[0]!) && label)
    return `${transports[0]!}#${encodeURIComponent(label)}`;
  if (transports.length === 1) return transports[0]!;
  return formatLadderKey({
    transports: transports.slice(0, 16),
    ...(label ? { name: label } : {}),
  });
}
