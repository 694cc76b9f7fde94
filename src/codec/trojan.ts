/**
 * The Trojan protocol (trojan-gfw, "The Trojan Protocol" in its docs), carried inside TLS.
 *
 * ```
 * +-----------------------+---------+----------------+---------+----------+
 * | hex(SHA224(password)) |  CRLF   | Trojan Request |  CRLF   | Payload  |
 * +-----------------------+---------+----------------+---------+----------+
 * |          56           | X'0D0A' |    Variable    | X'0D0A' | Variable |
 * +-----------------------+---------+----------------+---------+----------+
 * Trojan Request: | CMD (1) | ATYP | DST.ADDR | DST.PORT |   (SOCKS5 address format, RFC 1928 §5)
 * CMD: 0x01 CONNECT, 0x03 UDP ASSOCIATE
 *
 * UDP ASSOCIATE: the payload is a sequence of packets
 * +------+----------+----------+--------+---------+----------+
 * | ATYP | DST.ADDR | DST.PORT | Length |  CRLF   | Payload  |
 * +------+----------+----------+--------+---------+----------+
 * |  1   | Variable |    2     |   2    | X'0D0A' | Variable |
 * ```
 * Anything that does not parse as a request with a known password must be handed, bytes intact, to
 * the fallback web server (trojan-gfw "Protocol": "the server ... should act as a normal web
 * server"), so decoding never consumes input: the caller keeps the bytes.
 * @module
 */
import { createHash } from 'node:crypto';
import { CodecError } from '../errors.js';
import { decodeSocksAddr, encodeSocksAddr, socksAddrLength, type Decoded } from './socks-addr.js';
import type { Target } from '../core/target.js';
import type { ByteQueue } from './ss-stream.js';

export const TROJAN_CMD = { CONNECT: 0x01, UDP_ASSOCIATE: 0x03 } as const;
export type TrojanCommand = (typeof TROJAN_CMD)[keyof typeof TROJAN_CMD];

/** hex(SHA-224) length. */
export const TROJAN_HASH_LENGTH = 56;
const CR = 0x0d;
const LF = 0x0a;
/** The largest UDP payload one Trojan packet carries (u16 length). */
export const TROJAN_MAX_UDP_PAYLOAD = 0xffff;

/** hex(SHA224(password)) as ASCII bytes: what a client sends and a server compares (in constant time). */
export function trojanPasswordHash(password: string): Buffer {
  return Buffer.from(createHash('sha224').update(password, 'utf8').digest('hex'), 'ascii');
}

export interface TrojanRequest {
  /** The 56 ASCII hex bytes the client sent. */
  readonly hash: Buffer;
  readonly command: TrojanCommand;
  readonly target: Target;
}

export function trojanRequestLength(target: Target): number {
  return TROJAN_HASH_LENGTH + 2 + 1 + socksAddrLength(target) + 2; // hash + CRLF + cmd + addr + CRLF
}

/** Writes the request header (not the payload) at `offset`; returns bytes written. */
export function encodeTrojanRequest(req: TrojanRequest, out: Uint8Array, offset: number): number {
  if (req.hash.length !== TROJAN_HASH_LENGTH)
    throw new CodecError('ERR_TROJAN', 'password hash must be 56 hex bytes');
  let p = offset;
  out.set(req.hash, p);
  p += TROJAN_HASH_LENGTH;
  out[p++] = CR;
  out[p++] = LF;
  out[p++] = req.command;
  p += encodeSocksAddr(req.target, out, p);
  out[p++] = CR;
  out[p++] = LF;
  return p - offset;
}

function isLowerHex(b: number): boolean {
  return (b >= 0x30 && b <= 0x39) || (b >= 0x61 && b <= 0x66);
}

/**
 * Reads a request header at `offset`. Returns null when more bytes are needed; throws CodecError
 * ('ERR_TROJAN') as soon as the bytes cannot be a Trojan request, which is the caller's cue to fall
 * back to the decoy web server. It checks the form only; the caller checks the hash against its keys.
 */
export function decodeTrojanRequest(
  buf: Uint8Array,
  offset: number,
): Decoded<TrojanRequest> | null {
  const have = buf.length - offset;
  // Fail early on the first byte that cannot belong to a request, so that ordinary HTTP and TLS
  // go to the fallback without waiting for 58 bytes.
  for (let i = 0; i < Math.min(have, TROJAN_HASH_LENGTH); i++) {
    if (!isLowerHex(buf[offset + i]!))
      throw new CodecError('ERR_TROJAN', 'not a Trojan password hash');
  }
  if (have < TROJAN_HASH_LENGTH + 3) return null;
  if (buf[offset + 56] !== CR || buf[offset + 57] !== LF)
    throw new CodecError('ERR_TROJAN', 'no CRLF after the hash');
  const command = buf[offset + 58]!;
  if (command !== TROJAN_CMD.CONNECT && command !== TROJAN_CMD.UDP_ASSOCIATE) {
    throw new CodecError('ERR_TROJAN', `unknown Trojan command 0x${command.toString(16)}`);
  }
  const addr = decodeSocksAddr(buf, offset + 59);
  if (addr === null) return null;
  const end = offset + 59 + addr.bytesRead;
  if (buf.length < end + 2) return null;
  if (buf[end] !== CR || buf[end + 1] !== LF)
    throw new CodecError('ERR_TROJAN', 'no CRLF after the request');
  const hash = Buffer.from(buf.subarray(offset, offset + TROJAN_HASH_LENGTH));
  return {
    value: { hash, command: command as TrojanCommand, target: addr.value },
    bytesRead: end + 2 - offset,
  };
}

export interface TrojanUdpPacket {
  readonly target: Target;
  readonly payload: Uint8Array;
}

export function trojanUdpPacketLength(p: TrojanUdpPacket): number {
  return socksAddrLength(p.target) + 2 + 2 + p.payload.length; // addr + length + CRLF + payload
}

export function encodeTrojanUdpPacket(p: TrojanUdpPacket, out: Uint8Array, offset: number): number {
  if (p.payload.length > TROJAN_MAX_UDP_PAYLOAD)
    throw new CodecError('ERR_TROJAN', `UDP payload of ${p.payload.length} bytes is over 65535`);
  let q = offset + encodeSocksAddr(p.target, out, offset);
  out[q++] = p.payload.length >>> 8;
  out[q++] = p.payload.length & 0xff;
  out[q++] = CR;
  out[q++] = LF;
  out.set(p.payload, q);
  return q + p.payload.length - offset;
}

/** Reads one UDP packet; null when more bytes are needed. The payload is a view into `buf`. */
export function decodeTrojanUdpPacket(
  buf: Uint8Array,
  offset: number,
): Decoded<TrojanUdpPacket> | null {
  const addr = decodeSocksAddr(buf, offset);
  if (addr === null) return null;
  let p = offset + addr.bytesRead;
  if (buf.length < p + 4) return null;
  const len = (buf[p]! << 8) | buf[p + 1]!;
  if (buf[p + 2] !== CR || buf[p + 3] !== LF)
    throw new CodecError('ERR_TROJAN', 'no CRLF in the UDP packet header');
  p += 4;
  if (buf.length < p + len) return null;
  return {
    value: { target: addr.value, payload: buf.subarray(p, p + len) },
    bytesRead: p + len - offset,
  };
}

/**
 * Takes the first whole UDP packet off a stream's queue; null (leaving a partial packet queued)
 * when more bytes are needed. The payload is a view valid until the queue is pushed to again.
 * Throws CodecError on a malformed packet.
 */
export function takeTrojanUdpPacket(q: ByteQueue): TrojanUdpPacket | null {
  if (q.length === 0) return null;
  const d = decodeTrojanUdpPacket(q.peek(q.length), 0);
  if (d === null) return null;
  q.take(d.bytesRead);
  return d.value;
}
