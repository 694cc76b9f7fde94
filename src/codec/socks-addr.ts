/**
 * The SOCKS5 address format (RFC 1928 §5), also used by Shadowsocks and Trojan for targets.
 *
 * ```
 * +------+----------+----------+
 * | ATYP | DST.ADDR | DST.PORT |
 * +------+----------+----------+
 * |  1   | Variable |    2     |
 * +------+----------+----------+
 * ATYP 0x01: 4-byte IPv4; 0x03: 1-byte length then that many bytes of domain; 0x04: 16-byte IPv6.
 * ```
 * @module
 */
import { isIPv4, isIPv6 } from 'node:net';
import { CodecError } from '../errors.js';
import type { Target } from '../core/target.js';

export const ATYP = { IPV4: 0x01, DOMAIN: 0x03, IPV6: 0x04 } as const;

export interface Decoded<T> {
  value: T;
  bytesRead: number;
}

/**
 * The bytes of a domain name on the wire. Decoding reads names as latin1 (one character per byte),
 * so a name that came off the wire goes back out with exactly the same bytes; a name typed with
 * characters above U+00FF is sent as UTF-8.
 */
function nameBytes(host: string): Buffer {
  for (let i = 0; i < host.length; i++) {
    if (host.charCodeAt(i) > 0xff) return Buffer.from(host, 'utf8');
  }
  return Buffer.from(host, 'latin1');
}

/** Bytes that `target` takes in SOCKS address format. */
export function socksAddrLength(target: Target): number {
  if (isIPv4(target.host)) return 1 + 4 + 2; // atyp + ipv4 + port
  if (isIPv6(target.host)) return 1 + 16 + 2; // atyp + ipv6 + port
  return 1 + 1 + nameBytes(target.host).length + 2; // atyp + len + name + port
}

/** Writes `target` at `offset`; returns bytes written. Throws CodecError for a name over 255 bytes or a bad port. */
export function encodeSocksAddr(target: Target, out: Uint8Array, offset: number): number {
  const { host, port } = target;
  if (!Number.isInteger(port) || port < 0 || port > 0xffff) {
    throw new CodecError('ERR_SOCKS_ADDR', `port ${port} is not in 0..65535`);
  }
  let p = offset;
  if (isIPv4(host)) {
    out[p++] = ATYP.IPV4;
    for (const part of host.split('.')) out[p++] = Number(part);
  } else if (isIPv6(host)) {
    out[p++] = ATYP.IPV6;
    out.set(ipv6ToBytes(host), p);
    p += 16;
  } else {
    const name = nameBytes(host);
    if (name.length === 0 || name.length > 255) {
      throw new CodecError(
        'ERR_SOCKS_ADDR',
        `domain name must be 1..255 bytes, got ${name.length}`,
      );
    }
    out[p++] = ATYP.DOMAIN;
    out[p++] = name.length;
    out.set(name, p);
    p += name.length;
  }
  out[p++] = port >>> 8;
  out[p++] = port & 0xff;
  return p - offset;
}

/** Reads a SOCKS address at `offset`. Returns null when more bytes are needed; throws CodecError for an unknown ATYP or an empty name. */
export function decodeSocksAddr(buf: Uint8Array, offset: number): Decoded<Target> | null {
  if (buf.length < offset + 1) return null;
  const atyp = buf[offset];
  let host: string;
  let p = offset + 1;
  switch (atyp) {
    case ATYP.IPV4:
      if (buf.length < p + 4 + 2) return null;
      host = `${buf[p]}.${buf[p + 1]}.${buf[p + 2]}.${buf[p + 3]}`;
      p += 4;
      break;
    case ATYP.IPV6:
      if (buf.length < p + 16 + 2) return null;
      host = bytesToIPv6(buf.subarray(p, p + 16));
      p += 16;
      break;
    case ATYP.DOMAIN: {
      if (buf.length < p + 1) return null;
      const n = buf[p++]!;
      if (n === 0) throw new CodecError('ERR_SOCKS_ADDR', 'empty domain name in SOCKS address');
      if (buf.length < p + n + 2) return null;
      host = Buffer.from(buf.buffer, buf.byteOffset + p, n).toString('latin1');
      p += n;
      break;
    }
    default:
      throw new CodecError(
        'ERR_SOCKS_ADDR',
        `unknown SOCKS address type 0x${(atyp ?? 0).toString(16)}`,
      );
  }
  const port = (buf[p]! << 8) | buf[p + 1]!;
  return { value: { host, port }, bytesRead: p + 2 - offset };
}

/** 16 bytes of an IPv6 literal (with `::` and embedded IPv4 accepted). */
export function ipv6ToBytes(host: string): Uint8Array {
  const out = new Uint8Array(16);
  let text = host;
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  let tail: number[] = [];
  const lastColon = text.lastIndexOf(':');
  const maybeV4 = text.slice(lastColon + 1);
  if (maybeV4.includes('.')) {
    const q = maybeV4.split('.').map(Number);
    tail = [((q[0]! << 8) | q[1]!) >>> 0, ((q[2]! << 8) | q[3]!) >>> 0];
    text = text.slice(0, lastColon + 1) + '0:0'; // two groups stand for the four IPv4 bytes
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const hs = head ? head.split(':') : [];
  const rs = rest !== undefined && rest !== '' ? rest.split(':') : [];
  let groups: number[];
  if (rest === undefined) groups = hs.map((g) => parseInt(g, 16));
  else {
    const fill = 8 - hs.length - rs.length;
    groups = [
      ...hs.map((g) => parseInt(g, 16)),
      ...Array(fill).fill(0),
      ...rs.map((g) => parseInt(g, 16)),
    ];
  }
  if (tail.length) groups.splice(6, 2, ...tail);
  for (let i = 0; i < 8; i++) {
    out[i * 2] = (groups[i]! >>> 8) & 0xff;
    out[i * 2 + 1] = groups[i]! & 0xff;
  }
  return out;
}

/** The canonical (RFC 5952) text of 16 IPv6 bytes. */
export function bytesToIPv6(b: Uint8Array): string {
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push((b[i]! << 8) | b[i + 1]!);
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen && j - i > 1) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (bestStart < 0) return hex.join(':');
  const left = hex.slice(0, bestStart).join(':');
  const right = hex.slice(bestStart + bestLen).join(':');
  return `${left}::${right}`;
}
