/**
 * Online keys: a URL the client fetches to learn the current access key, so an operator can move a
 * blocked server without handing out new keys. Two kinds (docs/client.md, "Online keys"):
 *
 * - Outline's dynamic keys: `ssconf://host/path[#name]` is fetched as `https://host/path`, and
 *   `https://...` as itself. The answer is one of Outline's tunnel configs (Outline Config
 *   Reference, "TunnelConfig"): a Shadowsocks URI (`ss://...`), the legacy JSON
 *   `{"server", "server_port", "password", "method", "prefix"?}`, or the YAML form
 *   `transport: {$type: tcpudp, tcp: {$type: shadowsocks, endpoint, cipher, secret, prefix?},
 *   udp: ...}` whose endpoint is host:port, a dial, a websocket (Shadowsocks over WebSocket) or a
 *   first-supported list of them, or `error: {message, details}` (shown to the user).
 * - Ladder's signed key documents (key-document.ts): an `https://` URL whose fragment carries the
 *   operator's public key, `#ladder-pub=<base64url 32 bytes>[&name=...]`.
 *
 * Pure: no I/O.
 * @module
 */
import { parse as parseYaml } from 'yaml';
import { ConfigError } from '../errors.js';
import { formatSsUri, resolveMethod, type SsPlugin } from './access-key-uri.js';
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

function splitEndpoint(endpoint: string): { host: string; port: number } {
  const m = /^\[?([^[\]]+?)\]?:(\d{1,5})$/.exec(endpoint.trim());
  if (!m) throw bad(`the endpoint '${endpoint.slice(0, 80)}' is not host:port`);
  return { host: m[1]!, port: Number(m[2]) };
}

/** Where a Shadowsocks stream goes: a TCP address, and the WebSocket it rides in, if any. */
interface SsEndpoint {
  readonly host: string;
  readonly port: number;
  readonly plugin?: SsPlugin;
}

/** Nesting Outline's endpoints may use before the document is refused (first-supported in dial). */
const MAX_ENDPOINT_DEPTH = 4;

/**
 * An Outline stream endpoint (Outline Config Reference, "EndpointConfig") as Ladder can dial it:
 * - `host:port`, or `{$type: dial, address: host:port}` without a dialer of its own;
 * - `{$type: websocket, url: wss://host/path, endpoint?: ...}`: the Shadowsocks stream in WebSocket
 *   binary messages, as outline-ss-server serves it, which is v2ray-plugin's WebSocket mode without
 *   Mux.Cool (`mux=0`); the inner endpoint, if given, is the address connected to instead of the
 *   URL's host (which stays the Host header and TLS server name);
 * - `{$type: first-supported, endpoints: [...]}`: the first of them Ladder can dial.
 * Anything else (a dial through another dialer, a multi-hop Shadowsocks, an unknown `$type`) is
 * refused with what it was.
 */
function streamEndpoint(e: unknown, depth = 0): SsEndpoint {
  if (typeof e === 'string') return splitEndpoint(e);
  if (!e || typeof e !== 'object' || Array.isArray(e) || depth >= MAX_ENDPOINT_DEPTH)
    throw bad('the endpoint must be host:port or an object with a $type');
  const o = e as Record<string, unknown>;
  switch (o.$type) {
    case 'dial':
      if (o.dialer !== undefined && o.dialer !== null)
        throw bad(
          'a dial endpoint through another dialer (a multi-hop) is not supported: Ladder connects to one server directly',
        );
      if (typeof o.address !== 'string') throw bad('a dial endpoint needs "address: host:port"');
      return splitEndpoint(o.address);
    case 'websocket': {
      if (typeof o.url !== 'string') throw bad('a websocket endpoint needs "url: wss://host/path"');
      let u: URL;
      try {
        u = new URL(o.url);
      } catch {
        throw bad(`the websocket url '${o.url.slice(0, 80)}' is not a URL`);
      }
      if (u.protocol !== 'wss:' && u.protocol !== 'ws:')
        throw bad(`the websocket url '${o.url.slice(0, 80)}' must start with wss:// or ws://`);
      if (u.username || u.password)
        throw bad('a user name or password in the websocket url is not supported');
      const tls = u.protocol === 'wss:';
      const name = u.hostname.replace(/^\[|\]$/g, '');
      const at =
        o.endpoint === undefined || o.endpoint === null
          ? { host: name, port: u.port ? Number(u.port) : tls ? 443 : 80 }
          : streamEndpoint(o.endpoint, depth + 1);
      if (at.plugin) throw bad('a websocket endpoint inside a websocket endpoint is not supported');
      const options: Record<string, string> = { path: `${u.pathname}${u.search}`, host: name };
      if (tls) options.tls = '';
      options.mux = '0';
      return { host: at.host, port: at.port, plugin: { name: 'v2ray-plugin', options } };
    }
    case 'first-supported': {
      const list = Array.isArray(o.endpoints) ? o.endpoints.slice(0, 16) : [];
      const why: string[] = [];
      for (const x of list) {
        try {
          return streamEndpoint(x, depth + 1);
        } catch (err) {
          why.push((err as Error).message.replace(/^online key: /, ''));
        }
      }
      throw bad(
        `no endpoint of first-supported can be used${why.length ? ` (${why.join('; ')})` : ': it lists none'}`,
      );
    }
    default:
      throw bad(
        `the endpoint type '${String(o.$type).slice(0, 40)}' is not supported (Ladder takes host:port, dial, websocket and first-supported)`,
      );
  }
}

function ssKey(o: {
  host: string;
  port: number;
  plugin?: SsPlugin | undefined;
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
    ...(o.plugin ? { plugin: o.plugin } : {}),
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
      throw bad(
        `only a Shadowsocks TCP transport is supported in the YAML form (this one is '${String(tcp && typeof tcp === 'object' ? tcp.$type : tcp).slice(0, 40)}')`,
      );
    const at = streamEndpoint(tcp.endpoint);
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
