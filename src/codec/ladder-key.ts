/**
 * Ladder's own access key: several transports of one server (or of several servers) in one key,
 * tried in order by the client, which stays with the first that works and moves on when it fails
 * (docs/access-keys.md, "ladder:// keys"). Outline's dynamic keys (ssconf://) are the model: one
 * thing to hand to a user, however many ways the server can be reached.
 *
 * ```
 * ladder://<base64url(JSON), no padding>[#<percent-encoded name>]
 * JSON: {"v": 1, "transports": ["ss://...", "trojan://...", ...], "name"?: "...", "fp"?: "chrome"}
 * ```
 * Each transport is a key URI the client also takes alone. `fp` (chrome or node) is the TLS client
 * of every TLS transport that names none itself (tls-fingerprint-param.ts). Unknown fields are ignored and
 * transports of unknown schemes are kept (a newer server may offer what an older client skips), so
 * the format can grow without breaking old clients. Pure: no I/O.
 * @module
 */
import { ConfigError } from '../errors.js';
import {
  parseTlsFingerprint,
  unknownFingerprint,
  type TlsFingerprint,
} from './tls-fingerprint-param.js';

export const LADDER_KEY_VERSION = 1;
/** A key must still fit a QR code a phone can scan from a screen. */
export const MAX_LADDER_KEY_LENGTH = 4096;
export const MAX_TRANSPORTS = 16;

export interface LadderKey {
  /** Key URIs (ss://, trojan://, ...), in the order the client tries them. */
  transports: string[];
  name?: string;
  /** The TLS client for transports that do not name one (absent: chrome). */
  fp?: TlsFingerprint;
}

function bad(why: string): ConfigError {
  return new ConfigError('ERR_KEY_URI', `ladder:// key: ${why}`);
}

export function parseLadderKey(uri: string): LadderKey {
  const text = uri.trim();
  if (!/^ladder:\/\//i.test(text)) throw bad("it must start with 'ladder://'");
  if (text.length > MAX_LADDER_KEY_LENGTH)
    throw bad(`it is ${text.length} characters; at most ${MAX_LADDER_KEY_LENGTH}`);
  const hash = text.indexOf('#');
  const body = text.slice('ladder://'.length, hash < 0 ? undefined : hash);
  if (!/^[A-Za-z0-9_-]+$/.test(body))
    throw bad(
      'the part after ladder:// must be base64url (A-Z a-z 0-9 - _), as ladder keys new writes it',
    );
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
  } catch {
    throw bad('its body is not base64url of JSON; was it cut short when copied?');
  }
  const d = doc as { v?: unknown; transports?: unknown; name?: unknown; fp?: unknown };
  if (!d || typeof d !== 'object' || Array.isArray(d)) throw bad('its body must be a JSON object');
  if (d.v !== LADDER_KEY_VERSION)
    throw bad(
      `version ${JSON.stringify(d.v)} is not one this Ladder reads (${LADDER_KEY_VERSION}); update Ladder`,
    );
  if (!Array.isArray(d.transports) || d.transports.length === 0)
    throw bad('it names no transports');
  if (d.transports.length > MAX_TRANSPORTS)
    throw bad(`it names ${d.transports.length} transports; at most ${MAX_TRANSPORTS}`);
  d.transports.forEach((t, i) => {
    if (typeof t !== 'string' || !/^[a-z][a-z0-9+.-]*:\/\/\S+$/i.test(t))
      throw bad(`transport ${i + 1} is not a key URI such as ss://... or trojan://...`);
  });
  const key: LadderKey = { transports: d.transports as string[] };
  let name = typeof d.name === 'string' ? d.name : undefined;
  if (hash >= 0) {
    try {
      name = decodeURIComponent(text.slice(hash + 1));
    } catch {
      throw bad('its #name is not valid percent-encoding');
    }
  }
  if (name) key.name = name;
  if (d.fp !== undefined) {
    const f = typeof d.fp === 'string' ? parseTlsFingerprint(d.fp) : null;
    if (!f) throw bad(`its fp: ${unknownFingerprint(String(d.fp))}`);
    key.fp = f;
  }
  return key;
}

export function formatLadderKey(k: LadderKey): string {
  if (k.transports.length === 0) throw bad('it names no transports');
  const doc = { v: LADDER_KEY_VERSION, transports: k.transports, ...(k.fp ? { fp: k.fp } : {}) };
  const out = `ladder://${Buffer.from(JSON.stringify(doc), 'utf8').toString('base64url')}${k.name ? `#${encodeURIComponent(k.name)}` : ''}`;
  if (out.length > MAX_LADDER_KEY_LENGTH)
    throw bad(`it would be ${out.length} characters; at most ${MAX_LADDER_KEY_LENGTH}`);
  return out;
}
