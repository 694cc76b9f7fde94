/**
 * Prefix disguise presets for raw Shadowsocks (Outline's `prefix` key parameter): bytes that replace
 * the first bytes of the client's TCP salt, so that the connection's first packet meets one of the
 * published exemptions of the GFW's fully-encrypted-traffic detector (docs/censorship-techniques.md §1,
 * Algorithm 1 of Wu et al., USENIX Security 2023):
 *
 * ```
 * Ex2  the first 6 bytes are printable (0x20-0x7e)            "HTTP/1.1 ", "SSH-2.0\r\n"
 * Ex5  TLS record header 16|17 03 00..09, or "GET "/"PUT "/"POST "/"HEAD " at the start
 *                                                            16 03 01 .., 16 03 03 .., "POST "
 * ```
 * Each preset's exemption depends only on the prefix, so every connection is exempt, whatever the
 * random rest of the salt. Outline's guide also lists a DNS-over-TCP prefix (05 dc 5f e0 01 20) and a
 * "TLS Application Data" one starting 0x13: neither meets Ex1-Ex5 by itself, so neither is a preset
 * (they pass the FET detector only by chance). None of the TLS-looking presets is a complete
 * ClientHello header, so Ladder's one-port server still routes them to Shadowsocks
 * (src/codec/tls-hello.ts; a test checks it).
 *
 * The salt bytes a prefix replaces are no longer random: salts collide after about 2^(4·r)
 * connections with r random bytes left. The key parser refuses r < 8; {@link prefixWeakness} warns
 * below {@link PREFIX_WARN_RANDOM_BYTES}.
 * @module
 */
import { SS_METHODS, type SsMethod } from '../crypto/methods.js';

export interface PrefixPreset {
  readonly name: string;
  readonly bytes: Uint8Array;
  /** What the first packet looks like. */
  readonly looksLike: string;
  /** The FET exemption rule (§1 Algorithm 1) the prefix meets by itself. */
  readonly exemption: 'Ex2' | 'Ex5';
  /** The port the disguise fits best (Outline's guide). */
  readonly port: number;
}

const ascii = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));

/** The presets, in the order `ladder keys new --help` lists them. */
export const PREFIX_PRESETS: readonly PrefixPreset[] = [
  { name: 'http', bytes: ascii('POST '), looksLike: 'an HTTP request', exemption: 'Ex5', port: 80 },
  {
    name: 'http-response',
    bytes: ascii('HTTP/1.1 '),
    looksLike: 'an HTTP response',
    exemption: 'Ex2',
    port: 80,
  },
  {
    name: 'tls',
    bytes: Uint8Array.of(0x16, 0x03, 0x01, 0x00, 0xa8, 0x01, 0x01),
    looksLike: 'a TLS ClientHello record',
    exemption: 'Ex5',
    port: 443,
  },
  {
    name: 'tls-server',
    bytes: Uint8Array.of(0x16, 0x03, 0x03, 0x40, 0x00, 0x02),
    looksLike: 'a TLS ServerHello record',
    exemption: 'Ex5',
    port: 443,
  },
  {
    name: 'ssh',
    bytes: ascii('SSH-2.0\r\n'),
    looksLike: 'an SSH banner',
    exemption: 'Ex2',
    port: 22,
  },
];

export const PREFIX_PRESET_NAMES = PREFIX_PRESETS.map((p) => p.name);

/** The preset called `name`, or undefined. */
export function prefixPreset(name: string): PrefixPreset | undefined {
  return PREFIX_PRESETS.find((p) => p.name === name);
}

/** Fewer random salt bytes than this draws a warning (16 random bytes: collisions after ~2^64). */
export const PREFIX_WARN_RANDOM_BYTES = 12;

/**
 * A warning when `prefix` leaves fewer than {@link PREFIX_WARN_RANDOM_BYTES} salt bytes random, or
 * undefined. Salts that repeat repeat the session key and its nonces.
 */
export function prefixWeakness(method: SsMethod, prefix: Uint8Array): string | undefined {
  const salt = SS_METHODS[method].saltSize;
  const left = salt - prefix.length;
  if (prefix.length === 0 || left >= PREFIX_WARN_RANDOM_BYTES) return undefined;
  return `the ${prefix.length}-byte prefix leaves ${left} of ${method}'s ${salt} salt bytes random: salts (and so session keys and nonces) repeat after about 2^${left * 4} connections instead of 2^${salt * 4}; use a method with a 32-byte salt (aes-256-gcm, chacha20-ietf-poly1305, 2022-blake3-aes-256-gcm) or a shorter prefix`;
}

/** A salt of `saltSize` random bytes with its start replaced by `prefix` (Outline's prefix rule). */
export function prefixedSalt(random: Uint8Array, prefix: Uint8Array | undefined): Uint8Array {
  if (prefix && prefix.length > 0) random.set(prefix.subarray(0, random.length), 0);
  return random;
}
