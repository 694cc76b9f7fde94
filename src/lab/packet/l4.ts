/**
 * TCP (RFC 9293 §3.1) and UDP (RFC 768) headers, and whole-packet builders for what the censor
 * injects: RSTs toward either side and forged DNS answers.
 *
 * ```text
 * TCP:  | source port           | destination port        |
 *       |                sequence number                  |
 *       |             acknowledgment number               |
 *       | off | rsv | flags     | window                  |
 *       | checksum              | urgent pointer          |
 *       | options (off > 5) ...                           |
 * UDP:  | source port | destination port | length | checksum |
 * ```
 * @module
 */
import { CodecError } from '../../errors.js';
import { finish, pseudoHeaderSum, sum16 } from './checksum.js';
import { encodeIpHeader, ipHeaderLength, IP_PROTO, type IpHeaderFields } from './ip.js';

export const TCP_FLAG = {
  FIN: 0x01,
  SYN: 0x02,
  RST: 0x04,
  PSH: 0x08,
  ACK: 0x10,
  URG: 0x20,
} as const;

export const TCP_HEADER_LENGTH = 20;
export const UDP_HEADER_LENGTH = 8;

export interface TcpHeader {
  readonly srcPort: number;
  readonly dstPort: number;
  readonly seq: number;
  readonly ack: number;
  /** Header length in bytes (data offset × 4); the GFW accepts any value (§0). */
  readonly headerLength: number;
  readonly flags: number;
  readonly window: number;
}

export interface UdpHeader {
  readonly srcPort: number;
  readonly dstPort: number;
  readonly length: number;
}

/** Decodes a TCP header; null if fewer bytes than it declares; CodecError for data offset < 5. */
export function decodeTcpHeader(
  buf: Uint8Array,
  offset: number,
  end = buf.length,
): { value: TcpHeader; bytesRead: number } | null {
  if (end - offset < TCP_HEADER_LENGTH) return null;
  const headerLength = (buf[offset + 12]! >> 4) * 4;
  if (headerLength < TCP_HEADER_LENGTH)
    throw new CodecError('ERR_CODEC', `TCP data offset ${headerLength / 4} < 5`);
  if (end - offset < headerLength) return null;
  return {
    value: {
      srcPort: (buf[offset]! << 8) | buf[offset + 1]!,
      dstPort: (buf[offset + 2]! << 8) | buf[offset + 3]!,
      seq: readU32(buf, offset + 4),
      ack: readU32(buf, offset + 8),
      headerLength,
      flags: buf[offset + 13]!,
      window: (buf[offset + 14]! << 8) | buf[offset + 15]!,
    },
    bytesRead: headerLength,
  };
}

/** Decodes a UDP header; null if fewer than 8 bytes; CodecError if its length field is below 8. */
export function decodeUdpHeader(
  buf: Uint8Array,
  offset: number,
  end = buf.length,
): { value: UdpHeader; bytesRead: number } | null {
  if (end - offset < UDP_HEADER_LENGTH) return null;
  const length = (buf[offset + 4]! << 8) | buf[offset + 5]!;
  if (length < UDP_HEADER_LENGTH) throw new CodecError('ERR_CODEC', `UDP length ${length} < 8`);
  return {
    value: {
      srcPort: (buf[offset]! << 8) | buf[offset + 1]!,
      dstPort: (buf[offset + 2]! << 8) | buf[offset + 3]!,
      length,
    },
    bytesRead: UDP_HEADER_LENGTH,
  };
}

/**
 * True if the TCP or UDP checksum of the IP packet `pkt` is right. The Geneva censor models ignore
 * packets with bad checksums (§18), and so does this censor. A UDP checksum of 0 (IPv4) means none.
 */
export function l4ChecksumOk(
  pkt: Uint8Array,
  version: 4 | 6,
  protocol: number,
  l4Offset: number,
  l4Length: number,
): boolean {
  if (
    protocol === IP_PROTO.UDP &&
    version === 4 &&
    pkt[l4Offset + 6] === 0 &&
    pkt[l4Offset + 7] === 0
  )
    return true;
  const sum = sum16(
    pkt,
    l4Offset,
    l4Offset + l4Length,
    pseudoHeaderSum(pkt, version, protocol, l4Length),
  );
  return finish(sum) === 0;
}

export interface TcpSegment {
  readonly ip: IpHeaderFields;
  readonly srcPort: number;
  readonly dstPort: number;
  readonly seq: number;
  readonly ack: number;
  readonly flags: number;
  readonly window?: number;
  readonly payload?: Uint8Array;
}

/** Builds a whole IP packet holding one TCP segment (no options), checksums filled in. */
export function buildTcpPacket(s: TcpSegment): Buffer {
  const payload = s.payload ?? new Uint8Array(0);
  const ipLen = ipHeaderLength(s.ip.src);
  const l4Len = TCP_HEADER_LENGTH + payload.length;
  const out = Buffer.alloc(ipLen + l4Len);
  encodeIpHeader({ ...s.ip, protocol: IP_PROTO.TCP }, l4Len, out, 0);
  const o = ipLen;
  out.writeUInt16BE(s.srcPort, o);
  out.writeUInt16BE(s.dstPort, o + 2);
  out.writeUInt32BE(s.seq >>> 0, o + 4);
  out.writeUInt32BE(s.ack >>> 0, o + 8);
  out[o + 12] = (TCP_HEADER_LENGTH / 4) << 4;
  out[o + 13] = s.flags;
  out.writeUInt16BE(s.window ?? 0, o + 14);
  out.set(payload, o + TCP_HEADER_LENGTH);
  const version = ipLen === 20 ? 4 : 6;
  const c = finish(sum16(out, o, o + l4Len, pseudoHeaderSum(out, version, IP_PROTO.TCP, l4Len)));
  out.writeUInt16BE(c, o + 16);
  return out;
}

export interface UdpDatagram {
  readonly ip: IpHeaderFields;
  readonly srcPort: number;
  readonly dstPort: number;
  readonly payload: Uint8Array;
}

/** Builds a whole IP packet holding one UDP datagram, checksums filled in. */
export function buildUdpPacket(d: UdpDatagram): Buffer {
  const ipLen = ipHeaderLength(d.ip.src);
  const l4Len = UDP_HEADER_LENGTH + d.payload.length;
  const out = Buffer.alloc(ipLen + l4Len);
  encodeIpHeader({ ...d.ip, protocol: IP_PROTO.UDP }, l4Len, out, 0);
  const o = ipLen;
  out.writeUInt16BE(d.srcPort, o);
  out.writeUInt16BE(d.dstPort, o + 2);
  out.writeUInt16BE(l4Len, o + 4);
  out.set(d.payload, o + UDP_HEADER_LENGTH);
  const version = ipLen === 20 ? 4 : 6;
  let c = finish(sum16(out, o, o + l4Len, pseudoHeaderSum(out, version, IP_PROTO.UDP, l4Len)));
  if (c === 0) c = 0xffff; // RFC 768: a computed 0 is sent as all ones
  out.writeUInt16BE(c, o + 6);
  return out;
}

function readU32(buf: Uint8Array, o: number): number {
  return ((buf[o]! << 24) | (buf[o + 1]! << 16) | (buf[o + 2]! << 8) | buf[o + 3]!) >>> 0;
}
