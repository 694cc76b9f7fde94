/**
 * WebSocket framing (RFC 6455 §5.2) and the opening-handshake key (§4.2.2), pure.
 *
 * ```
 *  0                   1                   2                   3
 * +-+-+-+-+-------+-+-------------+-------------------------------+
 * |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
 * |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
 * |N|V|V|V|       |S|             |   (if payload len==126/127)   |
 * +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
 * |     Extended payload length continued, if payload len == 127  |
 * + - - - - - - - - - - - - - - - +-------------------------------+
 * |                               | Masking-key, if MASK set to 1 |
 * +-------------------------------+-------------------------------+
 * | Masking-key (continued)       |          Payload Data         |
 * +-------------------------------- - - - - - - - - - - - - - - - +
 * ```
 * The transports carry binary messages only; control frames (ping, pong, close) are decoded so the
 * stream layer can answer them.
 * @module
 */
import { createHash } from 'node:crypto';
import { CodecError } from '../errors.js';
import type { Decoded } from './socks-addr.js';

export const WS_OPCODE = {
  CONTINUATION: 0x0,
  TEXT: 0x1,
  BINARY: 0x2,
  CLOSE: 0x8,
  PING: 0x9,
  PONG: 0xa,
} as const;
const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/** The largest frame payload we accept (the peers send at most a few hundred KiB). */
export const WS_MAX_FRAME_PAYLOAD = 4 * 1024 * 1024;

/** RFC 6455 §4.2.2: Sec-WebSocket-Accept = base64(SHA-1(key + GUID)). */
export function websocketAccept(key: string): string {
  return createHash('sha1')
    .update(key + WS_GUID)
    .digest('base64');
}

export interface WsFrameHeader {
  readonly fin: boolean;
  readonly opcode: number;
  /** Present on client-to-server frames (§5.3). */
  readonly mask?: Uint8Array;
  readonly payloadLength: number;
}

/** Header bytes for a frame of `payloadLength` bytes. */
export function wsHeaderLength(payloadLength: number, masked: boolean): number {
  const base = payloadLength < 126 ? 2 : payloadLength <= 0xffff ? 4 : 10;
  return base + (masked ? 4 : 0);
}

export function encodeWsHeader(h: WsFrameHeader, out: Uint8Array, offset: number): number {
  let p = offset;
  out[p++] = (h.fin ? 0x80 : 0) | (h.opcode & 0x0f);
  const m = h.mask ? 0x80 : 0;
  const n = h.payloadLength;
  if (n < 126) out[p++] = m | n;
  else if (n <= 0xffff) {
    out[p++] = m | 126;
    out[p++] = n >>> 8;
    out[p++] = n & 0xff;
  } else {
    out[p++] = m | 127;
    const hi = Math.floor(n / 2 ** 32);
    out[p++] = 0;
    out[p++] = 0;
    out[p++] = (hi >>> 8) & 0xff;
    out[p++] = hi & 0xff;
    out[p++] = (n >>> 24) & 0xff;
    out[p++] = (n >>> 16) & 0xff;
    out[p++] = (n >>> 8) & 0xff;
    out[p++] = n & 0xff;
  }
  if (h.mask) {
    out.set(h.mask.subarray(0, 4), p);
    p += 4;
  }
  return p - offset;
}

/** Decodes a frame header; null when more bytes are needed. Throws CodecError on RSV bits, bad lengths, or fragmented control frames. */
export function decodeWsHeader(buf: Uint8Array, offset: number): Decoded<WsFrameHeader> | null {
  if (buf.length < offset + 2) return null;
  const b0 = buf[offset]!;
  const b1 = buf[offset + 1]!;
  if (b0 & 0x70) throw new CodecError('ERR_CODEC', 'WebSocket RSV bits set without an extension'); // §5.2
  const fin = (b0 & 0x80) !== 0;
  const opcode = b0 & 0x0f;
  if ((opcode > 0x2 && opcode < 0x8) || opcode > 0xa)
    throw new CodecError('ERR_CODEC', `reserved WebSocket opcode ${opcode}`);
  if (opcode >= 0x8 && (!fin || (b1 & 0x7f) > 125))
    throw new CodecError('ERR_CODEC', 'control frames must be whole and at most 125 bytes'); // §5.5
  const masked = (b1 & 0x80) !== 0;
  let n = b1 & 0x7f;
  let p = offset + 2;
  if (n === 126) {
    if (buf.length < p + 2) return null;
    n = (buf[p]! << 8) | buf[p + 1]!;
    p += 2;
  } else if (n === 127) {
    if (buf.length < p + 8) return null;
    if (buf[p] !== 0 || buf[p + 1] !== 0 || buf[p + 2] !== 0 || buf[p + 3] !== 0) {
      throw new CodecError('ERR_CODEC', 'WebSocket frame too large');
    }
    n = ((buf[p + 4]! << 24) >>> 0) + (buf[p + 5]! << 16) + (buf[p + 6]! << 8) + buf[p + 7]!;
    p += 8;
  }
  if (n > WS_MAX_FRAME_PAYLOAD)
    throw new CodecError('ERR_CODEC', `WebSocket frame of ${n} bytes is over the limit`);
  let mask: Uint8Array | undefined;
  if (masked) {
    if (buf.length < p + 4) return null;
    mask = Uint8Array.from(buf.subarray(p, p + 4));
    p += 4;
  }
  return {
    value: mask ? { fin, opcode, mask, payloadLength: n } : { fin, opcode, payloadLength: n },
    bytesRead: p - offset,
  };
}

/** XORs `data` in place with `mask`, starting at mask position `start` (§5.3). */
export function applyWsMask(data: Uint8Array, mask: Uint8Array, start = 0): void {
  const m0 = mask[0]!;
  const m1 = mask[1]!;
  const m2 = mask[2]!;
  const m3 = mask[3]!;
  const ms = [m0, m1, m2, m3];
  let i = 0;
  // align to the mask phase, then go four bytes at a time
  for (; i < data.length && (start + i) % 4 !== 0; i++) data[i]! ^= ms[(start + i) % 4]!;
  for (; i + 4 <= data.length; i += 4) {
    data[i]! ^= m0;
    data[i + 1]! ^= m1;
    data[i + 2]! ^= m2;
    data[i + 3]! ^= m3;
  }
  for (; i < data.length; i++) data[i]! ^= ms[(start + i) % 4]!;
}
