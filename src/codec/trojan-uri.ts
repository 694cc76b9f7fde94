/**
 * `trojan://` access keys as the common GUIs write them (trojan-gfw, v2rayN, Shadowrocket):
 *
 * ```
 * trojan://<percent-encoded password>@<host>:<port>[?sni=<name>&pin=<sha256 hex>&allowInsecure=1][#<tag>]
 * ```
 * `sni` (alias `peer`) is the TLS server name; `pin` is Ladder's addition: the SHA-256 fingerprint of a
 * self-signed server certificate, which the client then verifies instead of a CA.
 * @module
 */
import { isIPv6 } from 'node:net';
import { ConfigError } from '../errors.js';

export interface TrojanAccessKey {
  password: string;
  host: string;
  port: number;
  sni?: string;
  pinSha256?: string;
  tag?: string;
}

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
  if (u.hash.length > 1) key.tag = decodeURIComponent(u.hash.slice(1));
  return key;
}

export function formatTrojanUri(k: TrojanAccessKey): string {
  const host = isIPv6(k.host) ? `[${k.host}]` : k.host;
  const q = new URLSearchParams();
  if (k.sni) q.set('sni', k.sni);
  if (k.pinSha256) q.set('pin', k.pinSha256.replace(/:/g, '').toLowerCase());
  const query = [...q].length > 0 ? `?${q.toString()}` : '';
  return `trojan://${encodeURIComponent(k.password)}@${host}:${k.port}${query}${k.tag ? `#${encodeURIComponent(k.tag)}` : ''}`;
}
