/**
 * An independent Shadowsocks implementation for cross-checking Ladder's, written from the specs
 * (shadowsocks.org "AEAD ciphers"; SIP022; SIP023) on @noble/ciphers and @noble/hashes only — it
 * imports nothing from src/. Straight-line and slow on purpose: every byte is built explicitly, and
 * the decoders read whole messages (no streaming), so a bug in Ladder's chunk bookkeeping cannot hide
 * behind the same bug here.
 *
 * Where a spec leaves a choice to the implementation (how a 2022 payload too big for the header chunk
 * is split), the encoder makes the simplest one — fill the header chunk, then 0xFFFF-byte chunks —
 * which is also Ladder's, so bytes can be compared. Decoders accept any split.
 */
import { gcm, ecb } from '@noble/ciphers/aes.js';
import { chacha20poly1305, xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { md5, sha1 } from '@noble/hashes/legacy.js';
import { blake3 } from '@noble/hashes/blake3.js';

export type OracleMethod =
  | 'aes-128-gcm'
  | 'aes-256-gcm'
  | 'chacha20-ietf-poly1305'
  | '2022-blake3-aes-128-gcm'
  | '2022-blake3-aes-256-gcm'
  | '2022-blake3-chacha20-poly1305';

export const ORACLE_METHODS: readonly OracleMethod[] = [
  'aes-128-gcm',
  'aes-256-gcm',
  'chacha20-ietf-poly1305',
  '2022-blake3-aes-128-gcm',
  '2022-blake3-aes-256-gcm',
  '2022-blake3-chacha20-poly1305',
];

/** Spec limits, restated here rather than imported. */
export const MAX_2017 = 0x3fff; // AEAD spec: "the higher two bits are reserved"
export const MAX_2022 = 0xffff; // SIP022 §3.1.2
const TAG = 16;

const te = new TextEncoder();
export const cat = (...parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};
const u16 = (n: number): Uint8Array => new Uint8Array([(n >> 8) & 0xff, n & 0xff]);
const u64 = (n: bigint): Uint8Array => {
  const b = new Uint8Array(8);
  for (let i = 7; i >= 0; i--) {
    b[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return b;
};
const readU16 = (b: Uint8Array, o: number): number => (b[o]! << 8) | b[o + 1]!;
const readU64 = (b: Uint8Array, o: number): bigint => {
  let n = 0n;
  for (let i = 0; i < 8; i++) n = (n << 8n) | BigInt(b[o + i]!);
  return n;
};
const equal = (a: Uint8Array, b: Uint8Array): boolean =>
  a.length === b.length && a.every((x, i) => x === b[i]);

/** Thrown by the oracle's decoders; tests only need to know that the oracle refused. */
export class OracleError extends Error {}
function need(ok: boolean, what: string): asserts ok {
  if (!ok) throw new OracleError(what);
}

export function keySize(m: OracleMethod): number {
  return m.includes('128') ? 16 : 32;
}
export function is2022(m: OracleMethod): boolean {
  return m.startsWith('2022');
}
export function isChacha(m: OracleMethod): boolean {
  return m.includes('chacha');
}

/** EVP_BytesToKey(MD5): D_i = MD5(D_{i-1} || password). */
export function evpBytesToKey(password: string, size: number): Uint8Array {
  const pw = te.encode(password);
  let out: Uint8Array = new Uint8Array(0);
  let prev: Uint8Array = new Uint8Array(0);
  while (out.length < size) {
    prev = md5(cat(prev, pw));
    out = cat(out, prev);
  }
  return out.slice(0, size);
}

function seal(m: OracleMethod, key: Uint8Array, nonce: Uint8Array, pt: Uint8Array): Uint8Array {
  return isChacha(m) ? chacha20poly1305(key, nonce).encrypt(pt) : gcm(key, nonce).encrypt(pt);
}
function open(m: OracleMethod, key: Uint8Array, nonce: Uint8Array, ct: Uint8Array): Uint8Array {
  try {
    return isChacha(m) ? chacha20poly1305(key, nonce).decrypt(ct) : gcm(key, nonce).decrypt(ct);
  } catch {
    throw new OracleError('authentication failed');
  }
}
/** The 96-bit little-endian counter nonce of both editions. */
export function nonceLE(counter: number): Uint8Array {
  const n = new Uint8Array(12);
  let c = counter;
  for (let i = 0; c > 0; i++, c = Math.floor(c / 256)) n[i] = c % 256;
  return n;
}

export function subkey2017(master: Uint8Array, salt: Uint8Array): Uint8Array {
  return hkdf(sha1, master, salt, te.encode('ss-subkey'), master.length);
}
export function sessionSubkey(psk: Uint8Array, salt: Uint8Array): Uint8Array {
  return blake3(cat(psk, salt), {
    context: te.encode('shadowsocks 2022 session subkey'),
    dkLen: psk.length,
  });
}
export function identitySubkey(ipsk: Uint8Array, salt: Uint8Array): Uint8Array {
  return blake3(cat(ipsk, salt), {
    context: te.encode('shadowsocks 2022 identity subkey'),
    dkLen: ipsk.length,
  });
}
const pskHash = (psk: Uint8Array): Uint8Array => blake3(psk).slice(0, 16);
const aesBlock = (key: Uint8Array, block: Uint8Array): Uint8Array =>
  ecb(key, { disablePadding: true }).encrypt(block);
const aesUnblock = (key: Uint8Array, block: Uint8Array): Uint8Array =>
  ecb(key, { disablePadding: true }).decrypt(block);

/** 2022 passwords: PSKs as base64 joined by ':' (iPSK…:uPSK). */
export function psks(password: string): Uint8Array[] {
  return password.split(':').map((p) => Uint8Array.from(Buffer.from(p, 'base64')));
}

function ipv6Bytes(host: string): Uint8Array {
  const [head, tail] = host.split('::') as [string, string | undefined];
  const hs = head ? head.split(':') : [];
  const ts = tail ? tail.split(':') : [];
  const groups =
    tail === undefined ? hs : [...hs, ...Array<string>(8 - hs.length - ts.length).fill('0'), ...ts];
  need(groups.length === 8, `bad IPv6 literal ${host}`);
  return Uint8Array.from(groups.flatMap((g) => [parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff]));
}

/** SOCKS5 address (RFC 1928 §5): IPv4 dotted quads, IPv6 literals (no embedded IPv4), names. */
export function socksAddr(host: string, port: number): Uint8Array {
  const v4 = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(host);
  if (v4) return cat(new Uint8Array([1, ...v4.slice(1).map(Number)]), u16(port));
  if (host.includes(':')) return cat(new Uint8Array([4]), ipv6Bytes(host), u16(port));
  const name = te.encode(host);
  return cat(new Uint8Array([3, name.length]), name, u16(port));
}

/** Length of the SOCKS address at `o`, or an OracleError. */
function socksAddrLen(b: Uint8Array, o: number): number {
  const atyp = b[o];
  const n = atyp === 1 ? 1 + 4 + 2 : atyp === 4 ? 1 + 16 + 2 : atyp === 3 ? 2 + b[o + 1]! + 2 : -1;
  need(n > 0 && o + n <= b.length && !(atyp === 3 && b[o + 1] === 0), 'bad SOCKS address');
  return n;
}

/** Opens length+payload chunks from `counter` to the end of `bytes`, which must end on a chunk. */
function openChunks(
  m: OracleMethod,
  key: Uint8Array,
  counter: number,
  bytes: Uint8Array,
  max: number,
): Uint8Array {
  const out: Uint8Array[] = [];
  let p = 0;
  while (p < bytes.length) {
    need(p + 2 + TAG <= bytes.length, 'truncated length chunk');
    const len = open(m, key, nonceLE(counter++), bytes.slice(p, p + 2 + TAG));
    const n = readU16(len, 0);
    need(n <= max, `chunk length ${n} over ${max}`);
    p += 2 + TAG;
    need(p + n + TAG <= bytes.length, 'truncated payload chunk');
    out.push(open(m, key, nonceLE(counter++), bytes.slice(p, p + n + TAG)));
    p += n + TAG;
  }
  return cat(...out);
}

/** Length-chunk + payload-chunk framing with a counter nonce starting at `counter`. */
export function sealChunks(
  m: OracleMethod,
  key: Uint8Array,
  counter: number,
  payload: Uint8Array,
  max: number,
): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let i = 0; i < payload.length; i += max) {
    const piece = payload.slice(i, i + max);
    parts.push(seal(m, key, nonceLE(counter++), u16(piece.length)));
    parts.push(seal(m, key, nonceLE(counter++), piece));
  }
  return cat(...parts);
}

/** Seals `pt` with counter nonce `counter`: for building hostile but authentic messages. */
export function sealAt(
  m: OracleMethod,
  key: Uint8Array,
  counter: number,
  pt: Uint8Array,
): Uint8Array {
  return seal(m, key, nonceLE(counter), pt);
}

/** The TCP stream subkey for `salt`: HKDF-SHA1 of the password's key (2017) or BLAKE3 of the user PSK (2022). */
export function tcpSubkey(m: OracleMethod, password: string, salt: Uint8Array): Uint8Array {
  if (!is2022(m)) return subkey2017(evpBytesToKey(password, keySize(m)), salt);
  const keys = psks(password);
  return sessionSubkey(keys[keys.length - 1]!, salt);
}

/** SIP023 TCP identity headers for a password iPSK₀:…:uPSK (empty for a single PSK). */
export function tcpIdentityHeaders(password: string, salt: Uint8Array): Uint8Array {
  const keys = psks(password);
  const ids: Uint8Array[] = [];
  for (let k = 0; k < keys.length - 1; k++)
    ids.push(aesBlock(identitySubkey(keys[k]!, salt), pskHash(keys[k + 1]!)));
  return cat(...ids);
}

export interface TcpRequestInput {
  method: OracleMethod;
  /** AEAD-2017 password, or 2022 PSKs as base64 joined by ':' (iPSK:uPSK) */
  password: string;
  salt: Uint8Array;
  host: string;
  port: number;
  payload: Uint8Array;
  /** 2022: padding bytes (their count is the padding length) */
  padding?: Uint8Array;
  /** 2022: unix seconds */
  timestamp?: bigint;
  /** 2022: header type (0 for a request; anything else is a negative vector) */
  type?: number;
  /** 2022: padding length to declare, if not padding.length (negative vectors) */
  declaredPadding?: number;
  /** Bytes sent after the first message, as ordinary chunks (both editions). */
  more?: Uint8Array;
}

/** The bytes a client sends: the first message, then `more` in chunks. */
export function tcpRequest(i: TcpRequestInput): Uint8Array {
  const addr = socksAddr(i.host, i.port);
  const sub = tcpSubkey(i.method, i.password, i.salt);
  const more = i.more ?? new Uint8Array(0);
  if (!is2022(i.method)) {
    return cat(i.salt, sealChunks(i.method, sub, 0, cat(addr, i.payload, more), MAX_2017));
  }
  const pad = i.padding ?? new Uint8Array(0);
  // The variable-length header is one chunk: what of the payload does not fit goes into chunks after it.
  const room = MAX_2022 - addr.length - 2 - pad.length;
  const inHeader = i.payload.slice(0, room);
  const rest = cat(i.payload.slice(room), more);
  const variable = cat(addr, u16(i.declaredPadding ?? pad.length), pad, inHeader);
  const fixed = cat(new Uint8Array([i.type ?? 0]), u64(i.timestamp!), u16(variable.length));
  return cat(
    i.salt,
    tcpIdentityHeaders(i.password, i.salt),
    seal(i.method, sub, nonceLE(0), fixed),
    seal(i.method, sub, nonceLE(1), variable),
    sealChunks(i.method, sub, 2, rest, MAX_2022),
  );
}

export interface OpenedTcpRequest {
  salt: Uint8Array;
  /** the raw SOCKS address */
  addr: Uint8Array;
  /** every payload byte: the header's and all later chunks' */
  payload: Uint8Array;
  /** 2022 only */
  type?: number;
  timestamp?: bigint;
  padding?: Uint8Array;
}

/**
 * Server side, whole request at once: `password` is what the client was given (for SIP023, iPSK:uPSK;
 * the identity header must name the uPSK). Throws OracleError on anything the specs reject, except the
 * timestamp, which is returned for the caller to judge.
 */
export function openTcpRequest(
  method: OracleMethod,
  password: string,
  bytes: Uint8Array,
): OpenedTcpRequest {
  const ks = keySize(method);
  need(bytes.length >= ks, 'no salt');
  const salt = bytes.slice(0, ks);
  const sub = tcpSubkey(method, password, salt);
  if (!is2022(method)) {
    const plain = openChunks(method, sub, 0, bytes.slice(ks), MAX_2017);
    const n = socksAddrLen(plain, 0);
    return { salt, addr: plain.slice(0, n), payload: plain.slice(n) };
  }
  const keys = psks(password);
  let p = ks;
  for (let k = 0; k < keys.length - 1; k++) {
    need(p + 16 <= bytes.length, 'truncated identity header');
    const named = aesUnblock(identitySubkey(keys[k]!, salt), bytes.slice(p, p + 16));
    need(equal(named, pskHash(keys[k + 1]!)), 'identity header names another key');
    p += 16;
  }
  const fixed = open(method, sub, nonceLE(0), bytes.slice(p, p + 11 + TAG));
  p += 11 + TAG;
  const varLen = readU16(fixed, 9);
  need(p + varLen + TAG <= bytes.length, 'truncated variable header');
  const variable = open(method, sub, nonceLE(1), bytes.slice(p, p + varLen + TAG));
  p += varLen + TAG;
  const n = socksAddrLen(variable, 0);
  need(n + 2 <= variable.length, 'no padding length');
  const padLen = readU16(variable, n);
  // SIP022 §3.1.3: padding at most 900, inside the header chunk; payload or padding present.
  need(padLen <= 900 && n + 2 + padLen <= variable.length, 'bad padding');
  need(padLen > 0 || n + 2 < variable.length, 'neither payload nor padding');
  const later = openChunks(method, sub, 2, bytes.slice(p), MAX_2022);
  return {
    salt,
    addr: variable.slice(0, n),
    payload: cat(variable.slice(n + 2 + padLen), later),
    type: fixed[0]!,
    timestamp: readU64(fixed, 1),
    padding: variable.slice(n + 2, n + 2 + padLen),
  };
}

export interface TcpResponseInput {
  method: OracleMethod;
  password: string;
  salt: Uint8Array;
  requestSalt: Uint8Array;
  payload: Uint8Array;
  timestamp?: bigint;
  /** 2022: header type (1 for a response; anything else is a negative vector) */
  type?: number;
}

/** The bytes a server sends back (the whole payload, in as few chunks as the spec allows). */
export function tcpResponse(i: TcpResponseInput): Uint8Array {
  const sub = tcpSubkey(i.method, i.password, i.salt);
  if (!is2022(i.method)) return cat(i.salt, sealChunks(i.method, sub, 0, i.payload, MAX_2017));
  const first = i.payload.slice(0, MAX_2022);
  const fixed = cat(
    new Uint8Array([i.type ?? 1]),
    u64(i.timestamp!),
    i.requestSalt,
    u16(first.length),
  );
  return cat(
    i.salt,
    seal(i.method, sub, nonceLE(0), fixed),
    seal(i.method, sub, nonceLE(1), first),
    sealChunks(i.method, sub, 2, i.payload.slice(MAX_2022), MAX_2022),
  );
}

export interface OpenedTcpResponse {
  payload: Uint8Array;
  /** 2022 only */
  type?: number;
  timestamp?: bigint;
  requestSalt?: Uint8Array;
}

/** Client side, whole response at once. */
export function openTcpResponse(
  method: OracleMethod,
  password: string,
  bytes: Uint8Array,
): OpenedTcpResponse {
  const ks = keySize(method);
  need(bytes.length >= ks, 'no salt');
  const sub = tcpSubkey(method, password, bytes.slice(0, ks));
  if (!is2022(method)) return { payload: openChunks(method, sub, 0, bytes.slice(ks), MAX_2017) };
  const fixedLen = 1 + 8 + ks + 2;
  let p = ks;
  const fixed = open(method, sub, nonceLE(0), bytes.slice(p, p + fixedLen + TAG));
  p += fixedLen + TAG;
  const n = readU16(fixed, fixedLen - 2);
  need(p + n + TAG <= bytes.length, 'truncated first payload');
  const first = open(method, sub, nonceLE(1), bytes.slice(p, p + n + TAG));
  p += n + TAG;
  return {
    payload: cat(first, openChunks(method, sub, 2, bytes.slice(p), MAX_2022)),
    type: fixed[0]!,
    timestamp: readU64(fixed, 1),
    requestSalt: fixed.slice(9, 9 + ks),
  };
}

export interface UdpInput {
  method: OracleMethod;
  password: string;
  host: string;
  port: number;
  payload: Uint8Array;
  /** 2017: the salt. */
  salt?: Uint8Array;
  /** 2022 ChaCha: the 24-byte nonce. */
  nonce?: Uint8Array;
  sessionId?: Uint8Array;
  packetId?: bigint;
  timestamp?: bigint;
  /** server→client only */
  clientSessionId?: Uint8Array;
  padding?: Uint8Array;
  /** negative vectors: a type other than 0 (c→s) / 1 (s→c), a padding length other than padding.length */
  type?: number;
  declaredPadding?: number;
}

/** The plaintext body of a 2022 packet (SIP022 §3.2.3). */
function udpBody(i: UdpInput, addr: Uint8Array): Uint8Array {
  const toServer = i.clientSessionId === undefined;
  const pad = i.padding ?? new Uint8Array(0);
  return cat(
    new Uint8Array([i.type ?? (toServer ? 0 : 1)]),
    u64(i.timestamp!),
    toServer ? new Uint8Array(0) : i.clientSessionId!,
    u16(i.declaredPadding ?? pad.length),
    pad,
    addr,
    i.payload,
  );
}

/** A UDP packet, client→server or (with clientSessionId) server→client. */
export function udpPacket(i: UdpInput): Uint8Array {
  const addr = socksAddr(i.host, i.port);
  if (!is2022(i.method)) {
    const sub = subkey2017(evpBytesToKey(i.password, keySize(i.method)), i.salt!);
    return cat(i.salt!, seal(i.method, sub, new Uint8Array(12), cat(addr, i.payload)));
  }
  return udp2022Raw(
    i.method,
    i.password,
    cat(i.sessionId!, u64(i.packetId!)),
    udpBody(i, addr),
    i.clientSessionId === undefined,
    i.nonce,
  );
}

/**
 * A 2022 packet around any body: `sep` is session id ‖ packet id; `toServer` adds the SIP023
 * identity headers (and heads the packet with the first iPSK). ChaCha needs `nonce`.
 */
export function udp2022Raw(
  method: OracleMethod,
  password: string,
  sep: Uint8Array,
  body: Uint8Array,
  toServer: boolean,
  nonce?: Uint8Array,
): Uint8Array {
  const keys = psks(password);
  const user = keys[keys.length - 1]!;
  if (isChacha(method)) return cat(nonce!, xchacha20poly1305(user, nonce!).encrypt(cat(sep, body)));
  const head = toServer && keys.length > 1 ? keys[0]! : user;
  const ids: Uint8Array[] = [];
  if (toServer) {
    for (let k = 0; k < keys.length - 1; k++) {
      const plain = pskHash(keys[k + 1]!).map((b, j) => b ^ sep[j]!);
      ids.push(aesBlock(keys[k]!, plain));
    }
  }
  return cat(
    aesBlock(head, sep),
    ...ids,
    seal(method, sessionSubkey(user, sep.slice(0, 8)), sep.slice(4, 16), body),
  );
}

export interface OpenedUdp {
  addr: Uint8Array;
  payload: Uint8Array;
  /** 2017 */
  salt?: Uint8Array;
  /** 2022 */
  sessionId?: Uint8Array;
  packetId?: bigint;
  type?: number;
  timestamp?: bigint;
  clientSessionId?: Uint8Array;
  padding?: Uint8Array;
}

/** Opens a UDP packet going `toServer` (identity headers checked) or back to the client. */
export function openUdpPacket(
  method: OracleMethod,
  password: string,
  bytes: Uint8Array,
  toServer: boolean,
): OpenedUdp {
  if (!is2022(method)) {
    const ks = keySize(method);
    need(bytes.length >= ks + TAG, 'short packet');
    const salt = bytes.slice(0, ks);
    const sub = subkey2017(evpBytesToKey(password, ks), salt);
    const plain = open(method, sub, new Uint8Array(12), bytes.slice(ks));
    const n = socksAddrLen(plain, 0);
    return { salt, addr: plain.slice(0, n), payload: plain.slice(n) };
  }
  const keys = psks(password);
  const user = keys[keys.length - 1]!;
  let sep: Uint8Array;
  let body: Uint8Array;
  if (isChacha(method)) {
    need(bytes.length >= 24 + 16 + TAG, 'short packet');
    let all: Uint8Array;
    try {
      all = xchacha20poly1305(user, bytes.slice(0, 24)).decrypt(bytes.slice(24));
    } catch {
      throw new OracleError('authentication failed');
    }
    sep = all.slice(0, 16);
    body = all.slice(16);
  } else {
    const idCount = toServer ? keys.length - 1 : 0;
    need(bytes.length >= 16 * (1 + idCount) + TAG, 'short packet');
    sep = aesUnblock(toServer && idCount > 0 ? keys[0]! : user, bytes.slice(0, 16));
    for (let k = 0; k < idCount; k++) {
      const named = aesUnblock(keys[k]!, bytes.slice(16 * (k + 1), 16 * (k + 2))).map(
        (b, j) => b ^ sep[j]!,
      );
      need(equal(named, pskHash(keys[k + 1]!)), 'identity header names another key');
    }
    body = open(
      method,
      sessionSubkey(user, sep.slice(0, 8)),
      sep.slice(4, 16),
      bytes.slice(16 * (1 + idCount)),
    );
  }
  need(body.length >= 1 + 8 + 2 + (toServer ? 0 : 8), 'short header');
  let p = 0;
  const type = body[p++]!;
  const timestamp = readU64(body, p);
  p += 8;
  let clientSessionId: Uint8Array | undefined;
  if (!toServer) {
    clientSessionId = body.slice(p, p + 8);
    p += 8;
  }
  const padLen = readU16(body, p);
  p += 2;
  need(p + padLen <= body.length, 'padding past the packet');
  const padding = body.slice(p, p + padLen);
  p += padLen;
  const n = socksAddrLen(body, p);
  return {
    addr: body.slice(p, p + n),
    payload: body.slice(p + n),
    sessionId: sep.slice(0, 8),
    packetId: readU64(sep, 8),
    type,
    timestamp,
    padding,
    ...(clientSessionId ? { clientSessionId } : {}),
  };
}
