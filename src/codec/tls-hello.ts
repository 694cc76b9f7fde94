/**
 * Telling a TLS ClientHello from raw Shadowsocks by the first bytes (RFC 8446 §5.1 record header,
 * §4.1.2 ClientHello), pure. A Shadowsocks salt is random and an Outline prefix may imitate the first
 * bytes of a TLS record, so the check is strict: record type 22, version 3.x, a record length that a
 * ClientHello can have, handshake type 1 whose length fits the record, and legacy_version 3.x. A random
 * salt passes by chance about once in 2^40 connections.
 *
 * ```
 * | 0x16 | 0x03 0x0x | u16 record length | 0x01 | u24 handshake length | 0x03 0x0x (legacy_version) | ...
 * ```
 * @module
 */

/** Bytes needed to decide. */
export const CLIENT_HELLO_PREFIX_LENGTH = 11;

/** 'tls', 'other', or null when fewer than {@link CLIENT_HELLO_PREFIX_LENGTH} bytes are available. */
export function classifyFirstBytes(b: Uint8Array): 'tls' | 'other' | null {
  if (b.length > 0 && b[0] !== 0x16) return 'other';
  if (b.length < CLIENT_HELLO_PREFIX_LENGTH) return null;
  const recordLength = (b[3]! << 8) | b[4]!;
  const handshakeLength = (b[6]! << 16) | (b[7]! << 8) | b[8]!;
  const ok =
    b[1] === 0x03 &&
    b[2]! <= 0x04 &&
    recordLength >= 40 &&
    recordLength <= 16384 + 256 &&
    b[5] === 0x01 &&
    handshakeLength + 4 <= Math.max(recordLength, 16384) &&
    handshakeLength >= 36 &&
    b[9] === 0x03 &&
    b[10]! <= 0x04;
  return ok ? 'tls' : 'other';
}
