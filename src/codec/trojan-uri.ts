/**
 * `trojan://` access keys as the common GUIs write them (trojan-gfw, v2rayN, Shadowrocket, Clash):
 *
 * ```
 * trojan://<percent-encoded password>@<host>:<port>[?sni=<name>&pin=<sha256 hex>&allowInsecure=1][#<tag>]
 * trojan://...@<host>:<port>?security=tls&sni=<name>&type=ws&host=<Host header>&path=<%2Fsecret>#tag
 * ```
 * `sni` (alias `peer`) is the TLS server name; `pin` is Ladder's addition: the SHA-256 fingerprint of a
 * self-signed server certificate, which the client then verifies instead of a CA. `type=ws` carries
 * Trojan in a WebSocket on `path` (default `/`) with the Host header `host`, as v2ray's
 * `streamSettings.network: ws` does (v2rayN's share links); `security=none` drops TLS, for a WebSocket
 * that a CDN or reverse proxy in front of the server wraps in TLS (only with `type=ws`).
 * `mux=<n>` (Ladder's addition, 1..1024) carries connections as Mux.Cool sessions, at most n at once
 * on one TLS connection, as v2ray's trojan outbound with `mux: {enabled: true, concurrency: n}`;
 * only Ladder and v2ray servers take it (trojan-gfw does not), so keys for trojan-gfw leave it out.
 * With `mux`, each session's first frames are padded (KeepAlive frames of random length, which
 * v2ray and Ladder servers discard; docs/lab.md "TLS in TLS"); `pad=0` (Ladder's addition) turns
 * that off, for a Mux.Cool server that does not discard KeepAlive data.
 * `fp=chrome|node` (Ladder's addition; default chrome) picks the TLS client (tls-fingerprint-param.ts).
 * `split=1` (Ladder's addition, plain Trojan over TLS only) sends the request with a random slice of
 * the first payload and the rest after the server's session tickets, at about one round trip's
 * cost per connection (trojan-dialer.ts `split`).
 * `carrier=<size>` (Ladder's addition; e.g. `8k`, `12KiB`; 1024 bytes to 16 MiB; not with `mux`)
 * carries each stream over a sequence of short connections, the server ending each after that many
 * bytes to the client (codec/trojan-carrier.ts): the answer to a per-connection byte budget such
 * as Russia's TSPU freezing flows after about 14–32 KB. Only Ladder servers take it.
 * @module
 */
import { isIPv6 } from 'node:net';
import { ConfigError } from '../errors.js';
import { CARRIER_MAX_BYTES, CARRIER_MIN_BYTES } from './trojan-carrier.js';
import {
  parseTlsFingerprint,
  unknownFingerprint,
  type TlsFingerprint,
} from './tls-fingerprint-param.js';

export interface TrojanAccessKey {
  password: string;
  host: string;
  port: number;
  sni?: string;
  pinSha256?: string;
  tag?: string;
  /** 'ws': Trojan inside a WebSocket; absent: directly in TLS. */
  type?: 'ws';
  /** The WebSocket path (type=ws), starting with '/'. */
  path?: string;
  /** The WebSocket Host header (type=ws). */
  wsHost?: string;
  /** 'none': no TLS (type=ws only, behind a CDN or proxy that adds it). */
  security?: 'none';
  /** Mux.Cool sessions at once on one connection (absent: no Mux.Cool). */
  mux?: number;
  /** false (`pad=0`): no KeepAlive padding of the first Mux.Cool frames (absent: padded). */
  muxPadding?: false;
  /** `split=1`: the first payload split around the server's session tickets (Trojan over TLS only). */
  split?: true;
  /** `fp`: the TLS client (absent: chrome, tls-fingerprint-param.ts). */
  fp?: TlsFingerprint;
  /** `carrier`: bytes the server writes per carrier connection (absent: one connection per stream). */
  carrierBytes?: number;
}

const CARRIER_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1000,
  kb: 1000,
  kib: 1024,
  m: 1e6,
  mb: 1e6,
  mib: 1024 ** 2,
};

/** `8k`, `12KiB`, `8192` → bytes; null when it is not such a size. */
export function parseCarrierSize(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)([a-z]*)$/i.exec(text.trim());
  const unit = m ? CARRIER_UNITS[m[2]!.toLowerCase()] : undefined;
  return m && unit !== undefined ? Math.round(Number(m[1]) * unit) : null;
}

/** v2ray-core refuses a mux concurrency outside 1..1024 (app/proxyman/outbound/handler.go). */
export const MAX_MUX_CONCURRENCY = 1024;

function bad(part: string, why: string): ConfigError {
  return new ConfigError('ERR_KEY_URI', `trojan:// key: ${part} ${why}`);
}

export function parseTrojanUri(uri: string): TrojanAccessKey {
  let u: URL;
  try {
    u = new URL(uri.trim());
  } catch {
    throw bad('the key', 'is not a URL; it looks like trojan://password@host:443?sni=name#tag');
  }
  if (u.protocol !== 'trojan:') throw bad('the scheme', `is '${u.protocol}', not trojan:`);
  let password: string;
  try {
    password = decodeURIComponent(u.username);
  } catch {
    throw bad('the password', 'is not valid percent-encoding');
  }
  if (!password) throw bad('the password', 'is empty');
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  if (!host) throw bad('the host', 'is missing');
  const port = u.port ? Number(u.port) : 443;
  const key: TrojanAccessKey = { password, host, port };
  const sni = u.searchParams.get('sni') ?? u.searchParams.get('peer');
  if (sni) key.sni = sni;
  const pin = u.searchParams.get('pin');
  if (pin) {
    if (!/^([0-9A-Fa-f]{2}:?){31}[0-9A-Fa-f]{2}$/.test(pin))
      throw bad('the pin', 'must be the 64 hex digits of a SHA-256 certificate fingerprint');
    key.pinSha256 = pin;
  }
  if (u.hash.length > 1) {
    try {
      key.tag = decodeURIComponent(u.hash.slice(1));
    } catch {
      throw bad('the #tag', 'is not valid percent-encoding');
    }
  }
  const type = (u.searchParams.get('type') ?? 'tcp').toLowerCase();
  if (type === 'ws') {
    key.type = 'ws';
    const path = u.searchParams.get('path') ?? '/';
    if (!path.startsWith('/') || /\s/.test(path))
      throw bad('the path', `'${path.slice(0, 60)}' must start with '/' and have no spaces`);
    key.path = path;
    const wsHost = u.searchParams.get('host');
    if (wsHost) key.wsHost = wsHost;
  } else if (type !== 'tcp' && type !== '') {
    throw bad(
      'the type',
      `'${type.slice(0, 20)}' is not supported: use tcp (Trojan over TLS) or ws`,
    );
  }
  const mux = u.searchParams.get('mux');
  if (mux !== null && mux !== '' && mux !== '0') {
    const n = Number(mux);
    if (!/^[0-9]+$/.test(mux) || n < 1 || n > MAX_MUX_CONCURRENCY)
      throw bad(
        'mux',
        `'${mux.slice(0, 20)}' must be the Mux.Cool sessions per connection, 1..${MAX_MUX_CONCURRENCY} (0 or absent: none)`,
      );
    key.mux = n;
  }
  const pad = u.searchParams.get('pad');
  if (pad !== null) {
    if (pad !== '0' && pad !== '1')
      throw bad('pad', `'${pad.slice(0, 20)}' must be 0 (no Mux.Cool padding) or 1 (the default)`);
    if (pad === '0' && key.mux) key.muxPadding = false; // without Mux.Cool there is nothing to pad
  }
  const split = u.searchParams.get('split');
  if (split !== null && split !== '' && split !== '0') {
    if (split !== '1')
      throw bad('split', `'${split.slice(0, 20)}' must be 1 (or 0: off, the default)`);
    if (key.type === 'ws' || key.mux)
      throw bad(
        'split=1',
        'is for plain Trojan over TLS: a WebSocket or Mux.Cool key already changes the first records (remove type=ws and mux, or split)',
      );
    key.split = true;
  }
  const fp = u.searchParams.get('fp');
  if (fp !== null && fp !== '') {
    const f = parseTlsFingerprint(fp);
    if (!f) throw bad('fp', unknownFingerprint(fp));
    key.fp = f;
  }
  const carrier = u.searchParams.get('carrier');
  if (carrier !== null && carrier !== '' && carrier !== '0') {
    const n = parseCarrierSize(carrier);
    if (n === null || n < CARRIER_MIN_BYTES || n > CARRIER_MAX_BYTES)
      throw bad(
        'carrier',
        `'${carrier.slice(0, 20)}' must be the bytes per carrier connection, ${CARRIER_MIN_BYTES} to ${CARRIER_MAX_BYTES} (e.g. 8k; 0 or absent: off)`,
      );
    if (key.mux)
      throw bad(
        'carrier',
        'and mux cannot be combined: remove one (carriers are short connections, Mux.Cool shares long ones)',
      );
    key.carrierBytes = n;
  }
  const security = (u.searchParams.get('security') ?? 'tls').toLowerCase();
  if (security === 'none' || security === '') {
    if (key.type !== 'ws')
      throw bad('security=none', 'is only for type=ws (Trojan itself needs TLS around it)');
    key.security = 'none';
  } else if (security !== 'tls') {
    throw bad(
      'the security',
      `'${security.slice(0, 20)}' is not supported: use tls (or none with type=ws)`,
    );
  }
  return key;
}

export function formatTrojanUri(k: TrojanAccessKey): string {
  const host = isIPv6(k.host) ? `[${k.host}]` : k.host;
  const q = new URLSearchParams();
  if (k.type === 'ws') q.set('security', k.security ?? 'tls');
  if (k.sni) q.set('sni', k.sni);
  if (k.pinSha256) q.set('pin', k.pinSha256.replace(/:/g, '').toLowerCase());
  if (k.type === 'ws') {
    q.set('type', 'ws');
    if (k.wsHost) q.set('host', k.wsHost);
    q.set('path', k.path ?? '/');
  }
  if (k.mux) q.set('mux', String(k.mux));
  if (k.mux && k.muxPadding === false) q.set('pad', '0');
  if (k.split) q.set('split', '1');
  if (k.fp) q.set('fp', k.fp);
  if (k.carrierBytes) q.set('carrier', String(k.carrierBytes));
  const query = [...q].length > 0 ? `?${q.toString()}` : '';
  return `trojan://${encodeURIComponent(k.password)}@${host}:${k.port}${query}${k.tag ? `#${encodeURIComponent(k.tag)}` : ''}`;
}
