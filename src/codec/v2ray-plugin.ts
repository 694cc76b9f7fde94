/**
 * The options of the SIP003 plugin `v2ray-plugin` (shadowsocks/v2ray-plugin `main.go`; Debian ships
 * it as `ss-v2ray-plugin`), as an `ss://` key carries them in `plugin=`:
 *
 * ```
 * plugin=v2ray-plugin;path=/secret;host=example.com;tls;mux=0
 * ```
 * | option | default          | meaning                                                               |
 * | ------ | ---------------- | --------------------------------------------------------------------- |
 * | mode   | websocket        | `quic` is refused: Ladder speaks the WebSocket mode only              |
 * | path   | /                | the WebSocket path (the secret)                                       |
 * | host   | cloudfront.com   | the Host header, and the TLS server name                              |
 * | tls    | off              | a flag: WebSocket over TLS                                            |
 * | mux    | 1                | 0: one WebSocket per connection; else Mux.Cool inside each WebSocket  |
 * | cert   |                  | client: a CA certificate file to trust (server: its certificate)      |
 * | pin    |                  | Ladder's addition: SHA-256 of a self-signed server certificate        |
 * | fp     | chrome           | Ladder's addition: the TLS client, chrome or node                     |
 *
 * The same key configures the server (which serves `path`) and the client. Pure.
 * @module
 */
import { ConfigError } from '../errors.js';
import type { SsPlugin } from './access-key-uri.js';
import {
  parseTlsFingerprint,
  unknownFingerprint,
  type TlsFingerprint,
} from './tls-fingerprint-param.js';

/** Names the plugin goes by: upstream's, and Debian's binary. */
export const V2RAY_PLUGIN_NAMES = ['v2ray-plugin', 'ss-v2ray-plugin'] as const;

export interface V2rayPluginOptions {
  path: string;
  host: string;
  tls: boolean;
  /** Mux.Cool on (v2ray-plugin's default). */
  mux: boolean;
  /** With mux: sessions one WebSocket carries at once (the option's value; default 1). */
  muxConcurrency?: number;
  /** A CA certificate file (client side). */
  cert?: string;
  pinSha256?: string;
  /** `fp`: the TLS client (absent: chrome). */
  fp?: TlsFingerprint;
}

function bad(part: string, why: string): ConfigError {
  return new ConfigError('ERR_KEY_URI', `ss:// key: the v2ray-plugin option ${part} ${why}`);
}

/** The WebSocket settings of a v2ray-plugin key; null when the plugin is another one. */
export function v2rayPluginOptions(plugin: SsPlugin | undefined): V2rayPluginOptions | null {
  if (!plugin || !(V2RAY_PLUGIN_NAMES as readonly string[]).includes(plugin.name)) return null;
  const o = plugin.options;
  const get = (k: string): string | undefined => (Object.hasOwn(o, k) ? o[k] : undefined);
  const mode = get('mode') ?? 'websocket';
  if (mode !== 'websocket')
    throw bad(`mode=${mode.slice(0, 20)}`, 'is not supported: Ladder speaks mode=websocket only');
  const path = get('path') || '/';
  if (!path.startsWith('/') || /\s/.test(path))
    throw bad(`path=${path.slice(0, 60)}`, "must start with '/' and have no spaces");
  const host = get('host') || 'cloudfront.com';
  if (/[\s/]/.test(host)) throw bad(`host=${host.slice(0, 60)}`, 'must be a host name');
  const muxText = get('mux') ?? '1';
  if (!/^-?\d+$/.test(muxText))
    throw bad(`mux=${muxText.slice(0, 20)}`, 'must be a number (0: off)');
  const out: V2rayPluginOptions = {
    path,
    host,
    tls: get('tls') !== undefined,
    mux: Number(muxText) !== 0,
  };
  const cert = get('cert');
  if (cert) out.cert = cert;
  const pin = get('pin');
  if (pin) {
    if (!/^([0-9A-Fa-f]{2}:?){31}[0-9A-Fa-f]{2}$/.test(pin))
      throw bad('pin', 'must be the 64 hex digits of a SHA-256 certificate fingerprint');
    out.pinSha256 = pin;
  }
  const fp = get('fp');
  if (fp) {
    const f = parseTlsFingerprint(fp);
    if (!f) throw bad(`fp=${fp.slice(0, 20)}`, unknownFingerprint(fp));
    out.fp = f;
  }
  return out;
}

/** The plugin text for a key (`formatSsUri` escapes it): `mux` is written only when off. */
export function v2rayPlugin(o: V2rayPluginOptions): SsPlugin {
  const options: Record<string, string> = { path: o.path, host: o.host };
  if (o.tls) options.tls = '';
  if (!o.mux) options.mux = '0';
  else if (o.muxConcurrency && o.muxConcurrency > 1) options.mux = String(o.muxConcurrency);
  if (o.pinSha256) options.pin = o.pinSha256.replace(/:/g, '').toLowerCase();
  if (o.cert) options.cert = o.cert;
  if (o.fp) options.fp = o.fp;
  return { name: 'v2ray-plugin', options };
}
