/**
 * SOCKS5 (RFC 1928) and its username/password sub-negotiation (RFC 1929), pure: no I/O, no state.
 * Every message has an `encodeX(value, out, offset) → bytesWritten`, `xLength(value)`,
 * `decodeX(buf, offset) → { value, bytesRead } | null` triple; `null` means "need more bytes",
 * malformed input throws a CodecError.
 *
 * ```
 * greeting:   | VER=5 | NMETHODS | METHODS (NMETHODS bytes) |              RFC 1928 §3
 * selection:  | VER=5 | METHOD |                                           RFC 1928 §3
 * user/pass:  | VER=1 | ULEN | UNAME (ULEN) | PLEN | PASSWD (PLEN) |      RFC 1929 §2
 * its reply:  | VER=1 | STATUS |  (0x00 success, anything else failure)   RFC 1929 §2
 * request:    | VER=5 | CMD | RSV=0 | ATYP | DST.ADDR | DST.PORT |         RFC 1928 §4
 * reply:      | VER=5 | REP | RSV=0 | ATYP | BND.ADDR | BND.PORT |         RFC 1928 §6
 * UDP header: | RSV=0 (2) | FRAG | ATYP | DST.ADDR | DST.PORT | DATA |     RFC 1928 §7
 * ```
 * ATYP/ADDR/PORT is the SOCKS address of socks-addr.ts (RFC 1928 §5).
 * @module
 */
import { CodecError } from '../errors.js';
import { decodeSocksAddr, encodeSocksAddr, socksAddrLength, type Decoded } from './socks-addr.js';
import type { Target } from '../core/target.js';

export const SOCKS_VERSION = 0x05;
/** RFC 1929 §2: the sub-negotiation has its own version number. */
export const SOCKS_AUTH_VERSION = 0x01;

/** RFC 1928 §3 METHOD values. */
export const SOCKS_METHOD = {
  NO_AUTH: 0x00,
  GSSAPI: 0x01,
  USERNAME_PASSWORD: 0x02,
  NO_ACCEPTABLE: 0xff,
} as const;

/** RFC 1928 §4 CMD values. */
export const SOCKS_CMD = { CONNECT: 0x01, BIND: 0x02, UDP_ASSOCIATE: 0x03 } as const;

/** RFC 1928 §6 REP values. */
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

/** RFC 1929 §2 STATUS values (any non-zero status is a failure; we send 0x01). */
export const SOCKS_AUTH_STATUS = { SUCCESS: 0x00, FAILURE: 0x01 } as const;

/** The BND address of a reply that has nothing to report (a tunnel gives no feedback). */
export const UNSPECIFIED_BOUND: Target = { host: '0.0.0.0', port: 0 };

function checkVersion(buf: Uint8Array, offset: number): void {
  if (buf[offset] !== SOCKS_VERSION)
    throw new CodecError('ERR_SOCKS_VERSION', `SOCKS version ${buf[offset]} is not 5`);
}

// ---------------------------------------------------------------------------------------------
// Greeting and method selection (RFC 1928 §3)

/** The methods a client offers, in its order. */
export type Greeting = readonly number[];

export function greetingLength(methods: Greeting): number {
  return 1 + 1 + methods.length; // VER + NMETHODS + METHODS
}

export function encodeGreeting(methods: Greeting, out: Uint8Array, offset: number): number {
  if (methods.length < 1 || methods.length > 255)
    throw new CodecError('ERR_SOCKS_VERSION', 'a SOCKS greeting offers 1..255 methods');
  out[offset] = SOCKS_VERSION;
  out[offset + 1] = methods.length;
  out.set(methods, offset + 2);
  return greetingLength(methods);
}

export function decodeGreeting(buf: Uint8Array, offset: number): Decoded<number[]> | null {
  if (buf.length < offset + 2) return null;
  checkVersion(buf, offset);
  const n = buf[offset + 1]!;
  // RFC 1928 §3: NMETHODS is 1 to 255.
  if (n === 0) throw new CodecError('ERR_SOCKS_VERSION', 'SOCKS greeting offers no methods');
  if (buf.length < offset + 2 + n) return null;
  return { value: Array.from(buf.subarray(offset + 2, offset + 2 + n)), bytesRead: 2 + n };
}

export const METHOD_SELECTION_LENGTH = 2; // VER + METHOD

export function encodeMethodSelection(method: number, out: Uint8Array, offset: number): number {
  out[offset] = SOCKS_VERSION;
  out[offset + 1] = method;
  return METHOD_SELECTION_LENGTH;
}

export function decodeMethodSelection(buf: Uint8Array, offset: number): Decoded<number> | null {
  if (buf.length < offset + METHOD_SELECTION_LENGTH) return null;
  checkVersion(buf, offset);
  return { value: buf[offset + 1]!, bytesRead: METHOD_SELECTION_LENGTH };
}

/** The two bytes of a method selection, as a new Buffer (a control-plane convenience). */
export function methodSelection(method: number): Buffer {
  const out = Buffer.alloc(METHOD_SELECTION_LENGTH);
  encodeMethodSelection(method, out, 0);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Username/password sub-negotiation (RFC 1929 §2)

export interface UserPass {
  readonly username: string;
  readonly password: string;
}

/** RFC 1929 §2: UNAME and PASSWD are at most 255 bytes each (UTF-8 here; the RFC says octets). */
export function userPassLength(up: UserPass): number {
  return 1 + 1 + Buffer.byteLength(up.username) + 1 + Buffer.byteLength(up.password);
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

/**
 * Decodes the sub-negotiation request. Empty names and passwords decode (the RFC asks for 1..255
 * bytes, but refusing them is the credential check's job, which answers with a proper status).
 */
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

export const USER_PASS_REPLY_LENGTH = 2; // VER + STATUS

/** `status` is 0x00 for success; anything else is a failure (RFC 1929 §2). */
export function encodeUserPassReply(status: number, out: Uint8Array, offset: number): number {
  out[offset] = SOCKS_AUTH_VERSION;
  out[offset + 1] = status;
  return USER_PASS_REPLY_LENGTH;
}

export function decodeUserPassReply(buf: Uint8Array, offset: number): Decoded<number> | null {
  if (buf.length < offset + USER_PASS_REPLY_LENGTH) return null;
  if (buf[offset] !== SOCKS_AUTH_VERSION)
    throw new CodecError('ERR_SOCKS_AUTH', `auth reply version ${buf[offset]} is not 1`);
  return { value: buf[offset + 1]!, bytesRead: USER_PASS_REPLY_LENGTH };
}

/** The two bytes of a sub-negotiation reply, as a new Buffer. */
export function userPassReply(ok: boolean): Buffer {
  const out = Buffer.alloc(USER_PASS_REPLY_LENGTH);
  encodeUserPassReply(ok ? SOCKS_AUTH_STATUS.SUCCESS : SOCKS_AUTH_STATUS.FAILURE, out, 0);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Request (RFC 1928 §4)

export interface SocksRequest {
  readonly command: number;
  readonly target: Target;
}

export function requestLength(r: SocksRequest): number {
  return 1 + 1 + 1 + socksAddrLength(r.target); // VER + CMD + RSV + address
}

export function encodeRequest(r: SocksRequest, out: Uint8Array, offset: number): number {
  out[offset] = SOCKS_VERSION;
  out[offset + 1] = r.command;
  out[offset + 2] = 0;
  return 3 + encodeSocksAddr(r.target, out, offset + 3);
}

/**
 * Unknown commands decode (the server answers 0x07); an unknown ATYP throws ERR_SOCKS_ADDR (the
 * server answers 0x08). RSV is not checked: RFC 1928 only says it is reserved.
 */
export function decodeRequest(buf: Uint8Array, offset: number): Decoded<SocksRequest> | null {
  if (buf.length < offset + 4) return null;
  checkVersion(buf, offset);
  const addr = decodeSocksAddr(buf, offset + 3);
  if (addr === null) return null;
  return {
    value: { command: buf[offset + 1]!, target: addr.value },
    bytesRead: 3 + addr.bytesRead,
  };
}

// ---------------------------------------------------------------------------------------------
// Reply (RFC 1928 §6)

export interface SocksReply {
  readonly code: number;
  readonly bound: Target;
}

export function replyLength(r: SocksReply): number {
  return 1 + 1 + 1 + socksAddrLength(r.bound); // VER + REP + RSV + address
}

export function encodeReply(r: SocksReply, out: Uint8Array, offset: number): number {
  out[offset] = SOCKS_VERSION;
  out[offset + 1] = r.code;
  out[offset + 2] = 0;
  return 3 + encodeSocksAddr(r.bound, out, offset + 3);
}

export function decodeReply(buf: Uint8Array, offset: number): Decoded<SocksReply> | null {
  if (buf.length < offset + 4) return null;
  checkVersion(buf, offset);
  const addr = decodeSocksAddr(buf, offset + 3);
  if (addr === null) return null;
  return { value: { code: buf[offset + 1]!, bound: addr.value }, bytesRead: 3 + addr.bytesRead };
}

/** A whole reply as a new Buffer; BND defaults to 0.0.0.0:0. */
export function replyBytes(code: number, bound: Target = UNSPECIFIED_BOUND): Buffer {
  const r = { code, bound };
  const out = Buffer.alloc(replyLength(r));
  encodeReply(r, out, 0);
  return out;
}

// ---------------------------------------------------------------------------------------------
// UDP request header (RFC 1928 §7)

export interface SocksUdpHeader {
  /** 0 for a standalone datagram; fragments (1..127, high bit = last) are dropped by the relay. */
  readonly frag: number;
  readonly target: Target;
}

export function udpHeaderLength(h: SocksUdpHeader): number {
  return 2 + 1 + socksAddrLength(h.target); // RSV + FRAG + address
}

export function encodeUdpHeader(h: SocksUdpHeader, out: Uint8Array, offset: number): number {
  out[offset] = 0;
  out[offset + 1] = 0;
  out[offset + 2] = h.frag;
  return 3 + encodeSocksAddr(h.target, out, offset + 3);
}

/** The header only; the data is every byte after it in the datagram. RSV is not checked. */
export function decodeUdpHeader(buf: Uint8Array, offset: number): Decoded<SocksUdpHeader> | null {
  if (buf.length < offset + 4) return null;
  const addr = decodeSocksAddr(buf, offset + 3);
  if (addr === null) return null;
  return { value: { frag: buf[offset + 2]!, target: addr.value }, bytesRead: 3 + addr.bytesRead };
}

export interface SocksUdpDatagram extends SocksUdpHeader {
  /** A view into the datagram, not a copy. */
  readonly data: Uint8Array;
}

/** A datagram is whole or invalid (never "need more"): throws CodecError when it is too short. */
export function decodeUdpDatagram(buf: Uint8Array): SocksUdpDatagram {
  const h = decodeUdpHeader(buf, 0);
  if (h === null)
    throw new CodecError('ERR_SOCKS_ADDR', 'SOCKS UDP datagram is shorter than its header');
  return { frag: h.value.frag, target: h.value.target, data: buf.subarray(h.bytesRead) };
}

/** Header (FRAG 0) and data in one new Buffer, ready for one `send()`. */
export function encodeUdpDatagram(target: Target, data: Uint8Array): Buffer {
  const h = { frag: 0, target };
  const n = udpHeaderLength(h);
  const out = Buffer.allocUnsafe(n + data.length); // every byte is written below
  encodeUdpHeader(h, out, 0);
  out.set(data, n);
  return out;
}
