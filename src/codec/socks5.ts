/**
 * SOCKS5 (RFC 1928) and its username/password sub-negotiation (RFC 1929), pure.
 *
 * ```
 * greeting:  | VER=5 | NMETHODS | METHODS (NMETHODS bytes) |           (RFC 1928 §3)
 * selection: | VER=5 | METHOD |
 * auth:      | VER=1 | ULEN | UNAME | PLEN | PASSWD |                 (RFC 1929 §2)
 * auth reply:| VER=1 | STATUS |
 * request:   | VER=5 | CMD | RSV=0 | ATYP | DST.ADDR | DST.PORT |      (RFC 1928 §4)
 * reply:     | VER=5 | REP | RSV=0 | ATYP | BND.ADDR | BND.PORT |      (RFC 1928 §6)
 * UDP:       | RSV=0 (2) | FRAG | ATYP | DST.ADDR | DST.PORT | DATA |  (RFC 1928 §7)
 * ```
 * @module
 */
import { CodecError } from '../errors.js';
import { decodeSocksAddr, encodeSocksAddr, socksAddrLength, type Decoded } from './socks-addr.js';
import type { Target } from '../transport/types.js';

export const SOCKS_VERSION = 0x05;
export const SOCKS_AUTH_VERSION = 0x01;
export const SOCKS_METHOD = {
  NO_AUTH: 0x00,
  GSSAPI: 0x01,
  USERNAME_PASSWORD: 0x02,
  NO_ACCEPTABLE: 0xff,
} as const;
export const SOCKS_CMD = { CONNECT: 0x01, BIND: 0x02, UDP_ASSOCIATE: 0x03 } as const;
export const SOCKS_REPLY = {
  SUCCEEDED: 0x00,
  GENERAL_FAILURE: 0x01,
  NOT_ALLOWED: 0x02,
  NETWORK_UNREACHABLE: 0x03,
  HOST_UNREACHABLE: 0x04,
  CONNECTION_REFUSED: 0x05,
  TTL_EXPIRED: 0x06,
  COMMAND_NOT_SUPPORTED: 0x07,
  ADDRESS_TYPE_NOT_SUPPORTED: 0x08,
} as const;

/** RFC 1928 §3: the methods a client offers. */
export function decodeGreeting(buf: Uint8Array, offset: number): Decoded<number[]> | null {
  if (buf.length < offset + 2) return null;
  if (buf[offset] !== SOCKS_VERSION)
    throw new CodecError('ERR_SOCKS_VERSION', `SOCKS version ${buf[offset]} is not 5`);
  const n = buf[offset + 1]!;
  if (n === 0) throw new CodecError('ERR_SOCKS_VERSION', 'SOCKS greeting offers no methods');
  if (buf.length < offset + 2 + n) return null;
  return { value: Array.from(buf.subarray(offset + 2, offset + 2 + n)), bytesRead: 2 + n };
}

export function encodeGreeting(
  methods: readonly number[],
  out: Uint8Array,
  offset: number,
): number {
  out[offset] = SOCKS_VERSION;
  out[offset + 1] = methods.length;
  out.set(methods, offset + 2);
  return 2 + methods.length;
}

export function methodSelection(method: number): Buffer {
  return Buffer.from([SOCKS_VERSION, method]);
}

export interface UserPass {
  readonly username: string;
  readonly password: string;
}

/** RFC 1929 §2. */
export function decodeUserPass(buf: Uint8Array, offset: number): Decoded<UserPass> | null {
  if (buf.length < offset + 2) return null;
  if (buf[offset] !== SOCKS_AUTH_VERSION)
    throw new CodecError('ERR_SOCKS_AUTH', `auth sub-negotiation version ${buf[offset]} is not 1`);
  const ulen = buf[offset + 1]!;
  if (buf.length < offset + 2 + ulen + 1) return null;
  const plen = buf[offset + 2 + ulen]!;
  const end = offset + 3 + ulen + plen;
  if (buf.length < end) return null;
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.length);
  return {
    value: {
      username: b.toString('utf8', offset + 2, offset + 2 + ulen),
      password: b.toString('utf8', offset + 3 + ulen, end),
    },
    bytesRead: end - offset,
  };
}

export function encodeUserPass(up: UserPass, out: Uint8Array, offset: number): number {
  const u = Buffer.from(up.username, 'utf8');
  const p = Buffer.from(up.password, 'utf8');
  if (u.length > 255 || p.length > 255)
    throw new CodecError('ERR_SOCKS_AUTH', 'username and password are at most 255 bytes each');
  let q = offset;
  out[q++] = SOCKS_AUTH_VERSION;
  out[q++] = u.length;
  out.set(u, q);
  q += u.length;
  out[q++] = p.length;
  out.set(p, q);
  return q + p.length - offset;
}

export function userPassReply(ok: boolean): Buffer {
  return Buffer.from([SOCKS_AUTH_VERSION, ok ? 0x00 : 0x01]);
}

export interface SocksRequest {
  readonly command: number;
  readonly target: Target;
}

/** RFC 1928 §4. Unknown commands decode (the server answers 0x07); a bad ATYP throws ERR_SOCKS_ADDR (answered 0x08). */
export function decodeRequest(buf: Uint8Array, offset: number): Decoded<SocksRequest> | null {
  if (buf.length < offset + 4) return null;
  if (buf[offset] !== SOCKS_VERSION)
    throw new CodecError('ERR_SOCKS_VERSION', `SOCKS version ${buf[offset]} is not 5`);
  const addr = decodeSocksAddr(buf, offset + 3);
  if (addr === null) return null;
  return {
    value: { command: buf[offset + 1]!, target: addr.value },
    bytesRead: 3 + addr.bytesRead,
  };
}

export function requestLength(r: SocksRequest): number {
  return 3 + socksAddrLength(r.target);
}

export function encodeRequest(r: SocksRequest, out: Uint8Array, offset: number): number {
  out[offset] = SOCKS_VERSION;
  out[offset + 1] = r.command;
  out[offset + 2] = 0;
  return 3 + encodeSocksAddr(r.target, out, offset + 3);
}

/** RFC 1928 §6 reply. */
export function encodeReply(code: number, bound: Target = { host: '0.0.0.0', port: 0 }): Buffer {
  const out = Buffer.alloc(3 + socksAddrLength(bound));
  out[0] = SOCKS_VERSION;
  out[1] = code;
  encodeSocksAddr(bound, out, 3);
  return out;
}

export interface SocksReply {
  readonly code: number;
  readonly bound: Target;
}

export function decodeReply(buf: Uint8Array, offset: number): Decoded<SocksReply> | null {
  if (buf.length < offset + 4) return null;
  if (buf[offset] !== SOCKS_VERSION)
    throw new CodecError('ERR_SOCKS_VERSION', `SOCKS version ${buf[offset]} is not 5`);
  const addr = decodeSocksAddr(buf, offset + 3);
  if (addr === null) return null;
  return { value: { code: buf[offset + 1]!, bound: addr.value }, bytesRead: 3 + addr.bytesRead };
}

export interface SocksUdpDatagram {
  readonly frag: number;
  readonly target: Target;
  readonly data: Uint8Array;
}

/** RFC 1928 §7. A datagram is whole or invalid (never "need more"): throws CodecError when short. */
export function decodeUdpDatagram(buf: Uint8Array): SocksUdpDatagram {
  if (buf.length < 4) throw new CodecError('ERR_SOCKS_ADDR', 'SOCKS UDP datagram is too short');
  const addr = decodeSocksAddr(buf, 3);
  if (addr === null)
    throw new CodecError('ERR_SOCKS_ADDR', 'SOCKS UDP datagram has a truncated address');
  return { frag: buf[2]!, target: addr.value, data: buf.subarray(3 + addr.bytesRead) };
}

export function encodeUdpDatagram(target: Target, data: Uint8Array): Buffer {
  const n = socksAddrLength(target);
  const out = Buffer.allocUnsafe(3 + n + data.length); // every byte written below
  out[0] = 0;
  out[1] = 0;
  out[2] = 0;
  encodeSocksAddr(target, out, 3);
  out.set(data, 3 + n);
  return out;
}
