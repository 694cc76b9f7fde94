/**
 * IPv4 (RFC 791) and IPv6 (RFC 8200) headers, as the censor sees them on its TUN device (no link
 * header, no packet-information prefix).
 *
 * ```text
 * IPv4:  0      4      8             16     19             31
 *        | ver  | IHL  |    DSCP/ECN  |       total length        |
 *        |        identification      |flags|  fragment offset    |
 *        |   TTL       |  protocol    |     header checksum       |
 *        |                  source address                        |
 *        |               destination address                      |
 *        |              options (IHL > 5) ...                     |
 * IPv6:  | ver | traffic class | flow label                       |
 *        |   payload length    | next header |  hop limit         |
 *        |             source address (16 bytes)                  |
 *        |           destination address (16 bytes)               |
 * ```
 * IPv6 extension headers are not walked: the lab's own stacks do not send them, and a packet whose
 * next header is not TCP or UDP is forwarded uninspected (the GFW is no better documented here).
 * @module
 */
import { CodecError } from '../../errors.js';
import { finish, sum16 } from './checksum.js';

export const IP_PROTO = { TCP: 6, UDP: 17, ICMP: 1, ICMPV6: 58 } as const;

export interface IpHeader {
  readonly version: 4 | 6;
  readonly src: string;
  readonly dst: string;
  readonly protocol: number;
  readonly ttl: number;
  /** IPv4 identification; 0 for IPv6. */
  readonly id: number;
  /** IPv4 don't-fragment bit; false for IPv6. */
  readonly df: boolean;
  /** True for a non-first fragment or one with more-fragments set (IPv4): not inspected. */
  readonly fragment: boolean;
  readonly headerLength: number;
  /** Bytes after the IP header, as the header declares them. */
  readonly payloadLength: number;
}

export const IPV4_HEADER_LENGTH = 20;
export const IPV6_HEADER_LENGTH = 40;

/** Dotted quad of `buf[o..o+4)`. */
export function ipv4String(buf: Uint8Array, o: number): string {
  return `${buf[o]}.${buf[o + 1]}.${buf[o + 2]}.${buf[o + 3]}`;
}

/** Compressed lower-case IPv6 text (RFC 5952) of `buf[o..o+16)`. */
export function ipv6String(buf: Uint8Array, o: number): string {
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push((buf[o + 2 * i]! << 8) | buf[o + 2 * i + 1]!);
  // RFC 5952 §4.2.3: compress the longest run of two or more zero words, the first if tied.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/** Parses an IPv4 literal into 4 bytes, or throws CodecError. */
export function ipv4Bytes(s: string): Uint8Array {
  const parts = s.split('.');
  if (parts.length !== 4) throw new CodecError('ERR_CODEC', `not an IPv4 address: ${s}`);
  return Uint8Array.from(
    parts.map((p) => {
      const n = Number(p);
      if (!/^\d{1,3}$/.test(p) || n > 255)
        throw new CodecError('ERR_CODEC', `not an IPv4 address: ${s}`);
      return n;
    }),
  );
}

/** Parses an IPv6 literal (with at most one `::`) into 16 bytes, or throws CodecError. */
export function ipv6Bytes(s: string): Uint8Array {
  const bad = () => new CodecError('ERR_CODEC', `not an IPv6 address: ${s}`);
  const halves = s.split('::');
  if (halves.length > 2) throw bad();
  const parse = (h: string) => (h === '' ? [] : h.split(':'));
  const head = parse(halves[0]!);
  const tail = halves.length === 2 ? parse(halves[1]!) : [];
  const missing = 8 - head.length - tail.length;
  if ((halves.length === 1 && missing !== 0) || (halves.length === 2 && missing < 1)) throw bad();
  const words = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...tail];
  const out = new Uint8Array(16);
  words.forEach((w, i) => {
    if (!/^[0-9a-fA-F]{1,4}$/.test(w)) throw bad();
    const n = parseInt(w, 16);
    out[2 * i] = n >> 8;
    out[2 * i + 1] = n & 0xff;
  });
  return out;
}

/**
 * Decodes the IP header at `buf[offset..]`. Returns null if the buffer is shorter than the header
 * (or the length it declares); throws CodecError for a version other than 4 or 6 or an IHL below 5.
 */
export function decodeIpHeader(
  buf: Uint8Array,
  offset: number,
): { value: IpHeader; bytesRead: number } | null {
  if (buf.length - offset < 1) return null;
  const version = buf[offset]! >> 4;
  if (version === 4) {
    if (buf.length - offset < IPV4_HEADER_LENGTH) return null;
    const ihl = (buf[offset]! & 0x0f) * 4;
    if (ihl < IPV4_HEADER_LENGTH) throw new CodecError('ERR_CODEC', `IPv4 IHL ${ihl / 4} < 5`);
    const total = (buf[offset + 2]! << 8) | buf[offset + 3]!;
    if (total < ihl) throw new CodecError('ERR_CODEC', 'IPv4 total length below header length');
    if (buf.length - offset < total) return null;
    const flagsFrag = (buf[offset + 6]! << 8) | buf[offset + 7]!;
    return {
      value: {
        version: 4,
        src: ipv4String(buf, offset + 12),
        dst: ipv4String(buf, offset + 16),
        protocol: buf[offset + 9]!,
        ttl: buf[offset + 8]!,
        id: (buf[offset + 4]! << 8) | buf[offset + 5]!,
        df: (flagsFrag & 0x4000) !== 0,
        fragment: (flagsFrag & 0x2000) !== 0 || (flagsFrag & 0x1fff) !== 0,
        headerLength: ihl,
        payloadLength: total - ihl,
      },
      bytesRead: ihl,
    };
  }
  if (version === 6) {
    if (buf.length - offset < IPV6_HEADER_LENGTH) return null;
    const payloadLength = (buf[offset + 4]! << 8) | buf[offset + 5]!;
    if (buf.length - offset < IPV6_HEADER_LENGTH + payloadLength) return null;
    return {
      value: {
        version: 6,
        src: ipv6String(buf, offset + 8),
        dst: ipv6String(buf, offset + 24),
        protocol: buf[offset + 6]!,
        ttl: buf[offset + 7]!,
        id: 0,
        df: false,
        fragment: buf[offset + 6] === 44,
        headerLength: IPV6_HEADER_LENGTH,
        payloadLength,
      },
      bytesRead: IPV6_HEADER_LENGTH,
    };
  }
  throw new CodecError('ERR_CODEC', `IP version ${version}`);
}

/** What an injected packet's IP header carries: the GFW's injectors differ exactly here (§0). */
export interface IpHeaderFields {
  readonly src: string;
  readonly dst: string;
  readonly protocol: number;
  readonly ttl: number;
  /** IPv4 only. */
  readonly id?: number;
  /** IPv4 only. */
  readonly df?: boolean;
}

/** Header length for an address family, picked from the source literal. */
export function ipHeaderLength(src: string): number {
  return src.includes(':') ? IPV6_HEADER_LENGTH : IPV4_HEADER_LENGTH;
}

/** Writes an IP header for `payloadLength` bytes of L4 data; returns bytes written. */
export function encodeIpHeader(
  h: IpHeaderFields,
  payloadLength: number,
  out: Uint8Array,
  offset: number,
): number {
  if (h.src.includes(':')) {
    out[offset] = 0x60;
    out[offset + 1] = 0;
    out[offset + 2] = 0;
    out[offset + 3] = 0;
    out[offset + 4] = payloadLength >> 8;
    out[offset + 5] = payloadLength & 0xff;
    out[offset + 6] = h.protocol;
    out[offset + 7] = h.ttl;
    out.set(ipv6Bytes(h.src), offset + 8);
    out.set(ipv6Bytes(h.dst), offset + 24);
    return IPV6_HEADER_LENGTH;
  }
  const total = IPV4_HEADER_LENGTH + payloadLength;
  const id = h.id ?? 0;
  out[offset] = 0x45;
  out[offset + 1] = 0;
  out[offset + 2] = total >> 8;
  out[offset + 3] = total & 0xff;
  out[offset + 4] = id >> 8;
  out[offset + 5] = id & 0xff;
  out[offset + 6] = h.df ? 0x40 : 0;
  out[offset + 7] = 0;
  out[offset + 8] = h.ttl;
  out[offset + 9] = h.protocol;
  out[offset + 10] = 0;
  out[offset + 11] = 0;
  out.set(ipv4Bytes(h.src), offset + 12);
  out.set(ipv4Bytes(h.dst), offset + 16);
  const c = finish(sum16(out, offset, offset + IPV4_HEADER_LENGTH));
  out[offset + 10] = c >> 8;
  out[offset + 11] = c & 0xff;
  return IPV4_HEADER_LENGTH;
}
