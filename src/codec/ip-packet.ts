/**
 * IPv4, TCP and UDP headers as the TUN front rewrites and builds them: the fields a NAT reads, an
 * in-place address/port rewrite with incremental checksums, and whole IPv4/UDP packets for replies.
 * Pure: no I/O; packets are plain byte arrays.
 *
 * ```text
 * IPv4 (RFC 791 §3.1)  | VER(4) IHL(4) | TOS | TOTAL LENGTH (16) |
 *                      | IDENTIFICATION (16) | FLAGS(3) FRAGMENT OFFSET(13) |
 *                      | TTL | PROTOCOL | HEADER CHECKSUM (16) |
 *                      | SOURCE (32) | DESTINATION (32) | options (IHL*4 - 20) |
 * IPv6 (RFC 8200 §3)   | VER(4) TC(8) FLOW LABEL(20) | PAYLOAD LENGTH (16) | NEXT HEADER | HOP LIMIT |
 *                      | SOURCE (128) | DESTINATION (128) |         (40 bytes, no header checksum)
 * TCP (RFC 9293 §3.1)  | SRC PORT | DST PORT | SEQ (32) | ACK (32) | OFF(4) .. FLAGS(8) | WINDOW |
 *                      | CHECKSUM (16) @16 | URG (16) | options |
 * UDP (RFC 768)        | SRC PORT | DST PORT | LENGTH (16) | CHECKSUM (16) @6 |
 * ICMP (RFC 792), ICMPv6 (RFC 4443) | TYPE | CODE | CHECKSUM (16) | 4 bytes by type | body |
 * ```
 * Checksums are the one's-complement sum of RFC 1071; a rewrite adjusts them by the words it changes
 * (RFC 1624 eqn. 3) instead of summing the packet again. The TCP and UDP checksums cover a pseudo
 * header with both addresses (RFC 9293 §3.1, RFC 768; RFC 8200 §8.1 for IPv6), so an address
 * rewrite changes them too.
 * @module
 */
import { CodecError } from '../errors.js';

export const IPV4_HEADER_BYTES = 20;
export const IPV6_HEADER_BYTES = 40;
export const UDP_HEADER_BYTES = 8;
export const TCP_HEADER_BYTES = 20;
export const IP_PROTO = { ICMP: 1, TCP: 6, UDP: 17, ICMPV6: 58 } as const;
/** ICMP types the TUN front reads or writes (RFC 792, RFC 4443 §2.1). */
export const ICMP_TYPE = { ECHO_REQUEST: 8, UNREACHABLE: 3 } as const;
export const ICMPV6_TYPE = { ECHO_REQUEST: 128, UNREACHABLE: 1 } as const;
/** IPv6 next header of a fragment header (RFC 8200 §4.5). */
export const IPV6_FRAGMENT_HEADER = 44;
export const TCP_FLAG = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10 } as const;

/** The fields of an IPv4 packet carrying TCP or UDP that a NAT needs; addresses as u32. */
export interface Ipv4Flow {
  readonly protocol: number;
  readonly src: number;
  readonly dst: number;
  /** Offset of the TCP/UDP header (the IPv4 header length). */
  readonly l4: number;
  readonly srcPort: number;
  readonly dstPort: number;
  /** TCP flags byte (0 for UDP). */
  readonly tcpFlags: number;
  /** Total length from the IPv4 header (≤ the bytes given). */
  readonly length: number;
}

/** 4 for IPv4, 6 for IPv6, 0 for anything else or an empty packet. */
export function ipVersion(packet: Uint8Array): number {
  if (packet.length === 0) return 0;
  const v = packet[0]! >> 4;
  return v === 4 || v === 6 ? v : 0;
}

/**
 * Reads an IPv4 TCP or UDP packet's flow fields. Returns null for what a NAT passes over: another
 * protocol, a fragment after the first or one with more to come (no ports to read, or not all of
 * them), a TCP/UDP header cut short. Throws CodecError for a header that cannot be right.
 */
export function decodeIpv4Flow(packet: Uint8Array): Ipv4Flow | null {
  if (packet.length < IPV4_HEADER_BYTES)
    throw new CodecError('ERR_CODEC', `IPv4: ${packet.length} bytes is shorter than a header`);
  const b0 = packet[0]!;
  if (b0 >> 4 !== 4) throw new CodecError('ERR_CODEC', `IPv4: version ${b0 >> 4}, not 4`);
  const ihl = (b0 & 0x0f) * 4;
  // RFC 791 §3.1: IHL is at least 5 words.
  if (ihl < IPV4_HEADER_BYTES) throw new CodecError('ERR_CODEC', `IPv4: header length ${ihl}`);
  const length = u16(packet, 2);
  if (length < ihl || length > packet.length)
    throw new CodecError('ERR_CODEC', `IPv4: total length ${length} for ${packet.length} bytes`);
  const protocol = packet[9]!;
  if (protocol !== IP_PROTO.TCP && protocol !== IP_PROTO.UDP) return null;
  // MF set or a non-zero offset: a fragment; ports are only in the first, and a NAT here does not
  // reassemble (docs/tun.md, limits).
  if ((u16(packet, 6) & 0x3fff) !== 0) return null;
  const minL4 = protocol === IP_PROTO.TCP ? TCP_HEADER_BYTES : UDP_HEADER_BYTES;
  if (length - ihl < minL4) return null;
  return {
    protocol,
    src: u32(packet, 12),
    dst: u32(packet, 16),
    l4: ihl,
    srcPort: u16(packet, ihl),
    dstPort: u16(packet, ihl + 2),
    tcpFlags: protocol === IP_PROTO.TCP ? packet[ihl + 13]! : 0,
    length,
  };
}

/**
 * Writes a TCP or UDP header's new ports at `f.l4` and adjusts its checksum by the changed address
 * words (`addrOld` → `addrNew`, one's-complement sums) and ports (RFC 1624). A UDP checksum of 0
 * (none) stays 0.
 */
function rewritePorts(
  packet: Uint8Array,
  f: { protocol: number; l4: number; srcPort: number; dstPort: number },
  addrOld: number,
  addrNew: number,
  srcPort: number,
  dstPort: number,
): void {
  const at = f.l4 + (f.protocol === IP_PROTO.TCP ? 16 : 6);
  const old = u16(packet, at);
  put16(packet, f.l4, srcPort);
  put16(packet, f.l4 + 2, dstPort);
  if (f.protocol === IP_PROTO.UDP && old === 0) return;
  let c = adjust(old, addrOld + f.srcPort + f.dstPort, addrNew + srcPort + dstPort);
  // RFC 768: a computed UDP checksum of 0 is sent as all ones.
  if (f.protocol === IP_PROTO.UDP && c === 0) c = 0xffff;
  put16(packet, at, c);
}

/**
 * Rewrites an IPv4 TCP or UDP packet's addresses and ports in place, adjusting the IPv4 header
 * checksum and the TCP/UDP checksum by the changed words (RFC 1624). `f` is the packet's own
 * {@link decodeIpv4Flow}. A UDP checksum of 0 (none, RFC 768) stays 0.
 */
export function rewriteIpv4Flow(
  packet: Uint8Array,
  f: Ipv4Flow,
  src: number,
  srcPort: number,
  dst: number,
  dstPort: number,
): void {
  const addrOld = (f.src >>> 16) + (f.src & 0xffff) + (f.dst >>> 16) + (f.dst & 0xffff);
  const addrNew = (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff);
  put32(packet, 12, src);
  put32(packet, 16, dst);
  put16(packet, 10, adjust(u16(packet, 10), addrOld, addrNew));
  rewritePorts(packet, f, addrOld, addrNew, srcPort, dstPort);
}

/** The bytes of an IPv4/UDP packet around `payload` (TTL 64, DF clear, both checksums set). */
export function encodeIpv4Udp(
  src: number,
  srcPort: number,
  dst: number,
  dstPort: number,
  payload: Uint8Array,
): Buffer {
  const total = IPV4_HEADER_BYTES + UDP_HEADER_BYTES + payload.length;
  if (total > 0xffff)
    throw new CodecError('ERR_CODEC', `IPv4/UDP: a ${payload.length}-byte payload does not fit`);
  const p = Buffer.alloc(total);
  p[0] = 0x45;
  put16(p, 2, total);
  p[8] = 64;
  p[9] = IP_PROTO.UDP;
  put32(p, 12, src);
  put32(p, 16, dst);
  put16(p, 10, ~sum16(p, 0, IPV4_HEADER_BYTES, 0) & 0xffff);
  const u = IPV4_HEADER_BYTES;
  put16(p, u, srcPort);
  put16(p, u + 2, dstPort);
  put16(p, u + 4, UDP_HEADER_BYTES + payload.length);
  p.set(payload, u + UDP_HEADER_BYTES);
  const pseudo =
    (src >>> 16) +
    (src & 0xffff) +
    (dst >>> 16) +
    (dst & 0xffff) +
    IP_PROTO.UDP +
    UDP_HEADER_BYTES +
    payload.length;
  let c = ~sum16(p, u, total, pseudo) & 0xffff;
  if (c === 0) c = 0xffff;
  put16(p, u + 6, c);
  return p;
}

/** The UDP payload of a packet {@link decodeIpv4Flow} or {@link decodeIpv6Flow} read (a view). */
export function udpPayload(
  packet: Uint8Array,
  f: { readonly l4: number; readonly length: number },
): Uint8Array {
  const len = u16(packet, f.l4 + 4);
  const end = Math.min(f.length, f.l4 + Math.max(UDP_HEADER_BYTES, len));
  return packet.subarray(f.l4 + UDP_HEADER_BYTES, end);
}

/** True if the IPv4 header checksum and the TCP/UDP checksum of `packet` verify (for tests). */
export function ipv4ChecksumsValid(packet: Uint8Array): boolean {
  const f = decodeIpv4Flow(packet);
  const ihl = (packet[0]! & 0x0f) * 4;
  if (fold(sum16(packet, 0, ihl, 0)) !== 0xffff) return false;
  if (!f) return true;
  if (f.protocol === IP_PROTO.UDP && u16(packet, f.l4 + 6) === 0) return true;
  const pseudo = (f.src >>> 16) + (f.src & 0xffff) + (f.dst >>> 16) + (f.dst & 0xffff) + f.protocol;
  return fold(sum16(packet, f.l4, f.length, pseudo + f.length - f.l4)) === 0xffff;
}

/** The fields of an IPv6 packet carrying TCP or UDP that a NAT needs; addresses are views. */
export interface Ipv6Flow {
  readonly protocol: number;
  /** 16 bytes each: views into the packet (copy them to keep them past a rewrite). */
  readonly src: Uint8Array;
  readonly dst: Uint8Array;
  /** Offset of the TCP/UDP header: always {@link IPV6_HEADER_BYTES} (no extension headers). */
  readonly l4: number;
  readonly srcPort: number;
  readonly dstPort: number;
  readonly tcpFlags: number;
  /** 40 + the payload length from the header (≤ the bytes given). */
  readonly length: number;
}

/**
 * Reads an IPv6 TCP or UDP packet's flow fields. Returns null for what a NAT passes over: another
 * next header (ICMPv6, and every extension header, a fragment header among them: this NAT does not
 * walk them, docs/tun.md), a jumbogram, a TCP/UDP header cut short. Throws CodecError for a header
 * that cannot be right.
 */
export function decodeIpv6Flow(packet: Uint8Array): Ipv6Flow | null {
  if (packet.length < IPV6_HEADER_BYTES)
    throw new CodecError('ERR_CODEC', `IPv6: ${packet.length} bytes is shorter than a header`);
  if (packet[0]! >> 4 !== 6) throw new CodecError('ERR_CODEC', `IPv6: version ${packet[0]! >> 4}`);
  const payload = u16(packet, 4);
  const length = IPV6_HEADER_BYTES + payload;
  if (length > packet.length)
    throw new CodecError('ERR_CODEC', `IPv6: payload length ${payload} for ${packet.length} bytes`);
  const protocol = packet[6]!;
  if (protocol !== IP_PROTO.TCP && protocol !== IP_PROTO.UDP) return null;
  // RFC 2675: a payload length of 0 with a hop-by-hop header is a jumbogram; without one, nothing.
  if (payload < (protocol === IP_PROTO.TCP ? TCP_HEADER_BYTES : UDP_HEADER_BYTES)) return null;
  const l4 = IPV6_HEADER_BYTES;
  return {
    protocol,
    src: packet.subarray(8, 24),
    dst: packet.subarray(24, 40),
    l4,
    srcPort: u16(packet, l4),
    dstPort: u16(packet, l4 + 2),
    tcpFlags: protocol === IP_PROTO.TCP ? packet[l4 + 13]! : 0,
    length,
  };
}

/**
 * Rewrites an IPv6 TCP or UDP packet's addresses and ports in place, adjusting the TCP/UDP checksum
 * by the changed words (RFC 1624). `src` and `dst` must not be views into `packet`. A UDP checksum of
 * 0, which IPv6 forbids (RFC 8200 §8.1), is left as it is: the stack drops such a packet anyway.
 */
export function rewriteIpv6Flow(
  packet: Uint8Array,
  f: Ipv6Flow,
  src: Uint8Array,
  srcPort: number,
  dst: Uint8Array,
  dstPort: number,
): void {
  const addrOld = sumWords(packet, 8, 40);
  packet.set(src, 8);
  packet.set(dst, 24);
  const addrNew = sumWords(packet, 8, 40);
  rewritePorts(packet, f, addrOld, addrNew, srcPort, dstPort);
}

/** The bytes of an IPv6/UDP packet around `payload` (hop limit 64, the UDP checksum set). */
export function encodeIpv6Udp(
  src: Uint8Array,
  srcPort: number,
  dst: Uint8Array,
  dstPort: number,
  payload: Uint8Array,
): Buffer {
  const udpLength = UDP_HEADER_BYTES + payload.length;
  if (udpLength > 0xffff)
    throw new CodecError('ERR_CODEC', `IPv6/UDP: a ${payload.length}-byte payload does not fit`);
  const p = Buffer.alloc(IPV6_HEADER_BYTES + udpLength);
  p[0] = 0x60;
  put16(p, 4, udpLength);
  p[6] = IP_PROTO.UDP;
  p[7] = 64;
  p.set(src, 8);
  p.set(dst, 24);
  const u = IPV6_HEADER_BYTES;
  put16(p, u, srcPort);
  put16(p, u + 2, dstPort);
  put16(p, u + 4, udpLength);
  p.set(payload, u + UDP_HEADER_BYTES);
  // RFC 8200 §8.1: the pseudo-header is both addresses, the upper-layer length and next header.
  let c = ~sum16(p, u, p.length, sumWords(p, 8, 40) + udpLength + IP_PROTO.UDP) & 0xffff;
  if (c === 0) c = 0xffff;
  put16(p, u + 6, c);
  return p;
}

/** True if the TCP/UDP checksum of an IPv6 `packet` verifies (for tests). */
export function ipv6ChecksumsValid(packet: Uint8Array): boolean {
  const f = decodeIpv6Flow(packet);
  if (!f) return true;
  const len = f.length - f.l4;
  return fold(sum16(packet, f.l4, f.length, sumWords(packet, 8, 40) + len + f.protocol)) === 0xffff;
}

/**
 * The ICMP type of an IPv4 packet that is ICMP, unfragmented and long enough for an ICMP header;
 * -1 for anything else. Never throws.
 */
export function ipv4IcmpType(packet: Uint8Array): number {
  if (packet.length < IPV4_HEADER_BYTES || packet[0]! >> 4 !== 4) return -1;
  const ihl = (packet[0]! & 0x0f) * 4;
  if (ihl < IPV4_HEADER_BYTES || packet[9] !== IP_PROTO.ICMP || ipv4Fragmented(packet)) return -1;
  return packet.length >= ihl + 8 && u16(packet, 2) >= ihl + 8 ? packet[ihl]! : -1;
}

/** True if an IPv4 packet is a fragment (MF set, or an offset): the header alone says so. */
export function ipv4Fragmented(packet: Uint8Array): boolean {
  return packet.length >= IPV4_HEADER_BYTES && (u16(packet, 6) & 0x3fff) !== 0;
}

/** True if an IPv6 packet's first next header is a fragment header (RFC 8200 §4.5). */
export function ipv6Fragmented(packet: Uint8Array): boolean {
  return packet.length >= IPV6_HEADER_BYTES && packet[6] === IPV6_FRAGMENT_HEADER;
}

/** The ICMPv6 type of an IPv6 packet whose next header is ICMPv6; -1 otherwise. Never throws. */
export function ipv6IcmpType(packet: Uint8Array): number {
  if (packet.length < IPV6_HEADER_BYTES + 8 || packet[0]! >> 4 !== 6) return -1;
  return packet[6] === IP_PROTO.ICMPV6 ? packet[IPV6_HEADER_BYTES]! : -1;
}

/**
 * The ICMP "destination unreachable" (type 3) answering the IPv4 packet `original`, from its
 * destination to its source: the original IP header and the first 8 bytes of its data, as RFC 792
 * says. `original` must hold a whole IPv4 header.
 */
export function encodeIpv4Unreachable(original: Uint8Array, code: number): Buffer {
  const ihl = (original[0]! & 0x0f) * 4;
  const quoted = original.subarray(0, Math.min(original.length, ihl + 8));
  const total = IPV4_HEADER_BYTES + 8 + quoted.length;
  const p = Buffer.alloc(total);
  p[0] = 0x45;
  put16(p, 2, total);
  p[8] = 64;
  p[9] = IP_PROTO.ICMP;
  p.set(original.subarray(16, 20), 12);
  p.set(original.subarray(12, 16), 16);
  put16(p, 10, ~sum16(p, 0, IPV4_HEADER_BYTES, 0) & 0xffff);
  const i = IPV4_HEADER_BYTES;
  p[i] = ICMP_TYPE.UNREACHABLE;
  p[i + 1] = code;
  p.set(quoted, i + 8);
  put16(p, i + 2, ~sum16(p, i, total, 0) & 0xffff);
  return p;
}

/**
 * The ICMPv6 "destination unreachable" (type 1) answering the IPv6 packet `original`, from its
 * destination to its source: as much of the original as fits in 1280 bytes (RFC 4443 §3.1).
 */
export function encodeIpv6Unreachable(original: Uint8Array, code: number): Buffer {
  const quoted = original.subarray(0, Math.min(original.length, 1280 - IPV6_HEADER_BYTES - 8));
  const icmpLength = 8 + quoted.length;
  const p = Buffer.alloc(IPV6_HEADER_BYTES + icmpLength);
  p[0] = 0x60;
  put16(p, 4, icmpLength);
  p[6] = IP_PROTO.ICMPV6;
  p[7] = 64;
  p.set(original.subarray(24, 40), 8);
  p.set(original.subarray(8, 24), 24);
  const i = IPV6_HEADER_BYTES;
  p[i] = ICMPV6_TYPE.UNREACHABLE;
  p[i + 1] = code;
  p.set(quoted, i + 8);
  // RFC 4443 §2.3: the checksum covers the IPv6 pseudo-header too.
  put16(
    p,
    i + 2,
    ~sum16(p, i, p.length, sumWords(p, 8, 40) + icmpLength + IP_PROTO.ICMPV6) & 0xffff,
  );
  return p;
}

/** IPv4 text to u32 ('100.96.0.1' → 0x64600001); throws CodecError for anything else. */
export function ipv4ToU32(text: string): number {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  const parts = m ? m.slice(1).map(Number) : [];
  if (parts.length !== 4 || parts.some((n) => n > 255))
    throw new CodecError('ERR_CODEC', `'${text.slice(0, 40)}' is not an IPv4 address`);
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

export function u32ToIpv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 0xff}.${(n >>> 8) & 0xff}.${n & 0xff}`;
}

/** RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), with m and m' given as unfolded word sums. */
function adjust(checksum: number, oldWords: number, newWords: number): number {
  const s = (~checksum & 0xffff) + (~fold(oldWords) & 0xffff) + fold(newWords);
  return ~fold(s) & 0xffff;
}

/** The unfolded sum of the 16-bit words in [start, end) (an even span). */
function sumWords(b: Uint8Array, start: number, end: number): number {
  let s = 0;
  for (let i = start; i < end; i += 2) s += (b[i]! << 8) | b[i + 1]!;
  return s;
}

function fold(s: number): number {
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}

/** One's-complement sum (unfolded past 16 bits, folded at the end) of bytes [start, end). */
function sum16(b: Uint8Array, start: number, end: number, initial: number): number {
  let s = initial;
  let i = start;
  for (; i + 1 < end; i += 2) s += (b[i]! << 8) | b[i + 1]!;
  if (i < end) s += b[i]! << 8;
  return fold(s);
}

function u16(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}
function u32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}
function put16(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 8) & 0xff;
  b[o + 1] = v & 0xff;
}
function put32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
}
