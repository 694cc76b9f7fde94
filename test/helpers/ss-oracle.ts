/**
 * An independent Shadowsocks implementation for cross-checking Ladder's, written from the specs
 * (shadowsocks.org "AEAD ciphers"; SIP022; SIP023) on @noble/ciphers and @noble/hashes only — it
 * imports nothing from src/. Straight-line and slow on purpose: every byte is built explicitly.
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

const te = new TextEncoder();
const cat = (...parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};
const u16 = (n: number): Uint8Array => new Uint8Array([n >> 8, n & 0xff]);
const u64 = (n: bigint): Uint8Array => {
  const b = new Uint8Array(8);
  for (let i = 7; i >= 0; i--) {
    b[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return b;
};

export function keySize(m: OracleMethod): number {
  return m.includes('128') ? 16 : 32;
}
export function is2022(m: OracleMethod): boolean {
  return m.startsWith('2022');
}
function isChacha(m: OracleMethod): boolean {
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
  return isChacha(m) ? chacha20poly1305(key, nonce).decrypt(ct) : gcm(key, nonce).decrypt(ct);
}
function nonceLE(counter: number): Uint8Array {
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
function identitySubkey(ipsk: Uint8Array, salt: Uint8Array): Uint8Array {
  return blake3(cat(ipsk, salt), {
    context: te.encode('shadowsocks 2022 identity subkey'),
    dkLen: ipsk.length,
  });
}
const aesBlock = (key: Uint8Array, block: Uint8Array): Uint8Array =>
  ecb(key, { disablePadding: true }).encrypt(block);

/** SOCKS5 address (RFC 1928 §5), for IPv4 literals and names only (what the vectors use). */
export function socksAddr(host: string, port: number): Uint8Array {
  const v4 = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(host);
  if (v4) return cat(new Uint8Array([1, ...v4.slice(1).map(Number)]), u16(port));
  const name = te.encode(host);
  return cat(new Uint8Array([3, name.length]), name, u16(port));
}

/** Length-chunk + payload-chunk framing with a counter nonce starting at `counter`. */
function chunks(
  m: OracleMethod,
  key: Uint8Array,
  counter: number,
  payload: Uint8Array,
  max: number,
): { bytes: Uint8Array; counter: number } {
  const parts: Uint8Array[] = [];
  for (let i = 0; i < payload.length; i += max) {
    const piece = payload.slice(i, i + max);
    parts.push(seal(m, key, nonceLE(counter++), u16(piece.length)));
    parts.push(seal(m, key, nonceLE(counter++), piece));
  }
  return { bytes: cat(...parts), counter };
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
}

function psks(password: string): Uint8Array[] {
  return password.split(':').map((p) => Uint8Array.from(Buffer.from(p, 'base64')));
}

/** The first bytes a client sends (the whole payload in one go). */
export function tcpRequest(i: TcpRequestInput): Uint8Array {
  const addr = socksAddr(i.host, i.port);
  if (!is2022(i.method)) {
    const sub = subkey2017(evpBytesToKey(i.password, keySize(i.method)), i.salt);
    return cat(i.salt, chunks(i.method, sub, 0, cat(addr, i.payload), 0x3fff).bytes);
  }
  const keys = psks(i.password);
  const user = keys[keys.length - 1]!;
  const ids: Uint8Array[] = [];
  for (let k = 0; k < keys.length - 1; k++) {
    ids.push(aesBlock(identitySubkey(keys[k]!, i.salt), blake3(keys[k + 1]!).slice(0, 16)));
  }
  const sub = sessionSubkey(user, i.salt);
  const pad = i.padding ?? new Uint8Array(0);
  const variable = cat(addr, u16(i.declaredPadding ?? pad.length), pad, i.payload);
  const fixed = cat(new Uint8Array([i.type ?? 0]), u64(i.timestamp!), u16(variable.length));
  return cat(
    i.salt,
    ...ids,
    seal(i.method, sub, nonceLE(0), fixed),
    seal(i.method, sub, nonceLE(1), variable),
  );
}

/** The first bytes a server sends back. */
export function tcpResponse(i: {
  method: OracleMethod;
  password: string;
  salt: Uint8Array;
  requestSalt: Uint8Array;
  payload: Uint8Array;
  timestamp?: bigint;
}): Uint8Array {
  if (!is2022(i.method)) {
    const sub = subkey2017(evpBytesToKey(i.password, keySize(i.method)), i.salt);
    return cat(i.salt, chunks(i.method, sub, 0, i.payload, 0x3fff).bytes);
  }
  const keys = psks(i.password);
  const sub = sessionSubkey(keys[keys.length - 1]!, i.salt);
  const fixed = cat(new Uint8Array([1]), u64(i.timestamp!), i.requestSalt, u16(i.payload.length));
  return cat(
    i.salt,
    seal(i.method, sub, nonceLE(0), fixed),
    seal(i.method, sub, nonceLE(1), i.payload),
  );
}

/** Decodes a server's first response bytes (2017 or 2022) back to its payload. */
export function openTcpResponse(
  method: OracleMethod,
  password: string,
  bytes: Uint8Array,
): Uint8Array {
  const ks = keySize(method);
  const salt = bytes.slice(0, ks);
  if (!is2022(method)) {
    const sub = subkey2017(evpBytesToKey(password, ks), salt);
    const out: Uint8Array[] = [];
    let p = ks;
    let c = 0;
    while (p < bytes.length) {
      const len = open(method, sub, nonceLE(c++), bytes.slice(p, p + 18));
      const n = (len[0]! << 8) | len[1]!;
      p += 18;
      out.push(open(method, sub, nonceLE(c++), bytes.slice(p, p + n + 16)));
      p += n + 16;
    }
    return cat(...out);
  }
  const keys = psks(password);
  const sub = sessionSubkey(keys[keys.length - 1]!, salt);
  const fixedLen = 1 + 8 + ks + 2;
  const fixed = open(method, sub, nonceLE(0), bytes.slice(ks, ks + fixedLen + 16));
  const n = (fixed[fixedLen - 2]! << 8) | fixed[fixedLen - 1]!;
  return open(
    method,
    sub,
    nonceLE(1),
    bytes.slice(ks + fixedLen + 16, ks + fixedLen + 16 + n + 16),
  );
}

export interface UdpInput {
  method: OracleMethod;
  password: string;
  host: string;
  port: number;
  payload: Uint8Array;
  /** 2017: the salt. 2022 AES: unused. 2022 ChaCha: the 24-byte nonce. */
  salt?: Uint8Array;
  nonce?: Uint8Array;
  sessionId?: Uint8Array;
  packetId?: bigint;
  timestamp?: bigint;
  /** server→client only */
  clientSessionId?: Uint8Array;
  padding?: Uint8Array;
}

/** A UDP packet, client→server or (with clientSessionId) server→client. */
export function udpPacket(i: UdpInput): Uint8Array {
  const addr = socksAddr(i.host, i.port);
  if (!is2022(i.method)) {
    const sub = subkey2017(evpBytesToKey(i.password, keySize(i.method)), i.salt!);
    return cat(i.salt!, seal(i.method, sub, new Uint8Array(12), cat(addr, i.payload)));
  }
  const keys = psks(i.password);
  const user = keys[keys.length - 1]!;
  const toServer = i.clientSessionId === undefined;
  const pad = i.padding ?? new Uint8Array(0);
  const body = cat(
    new Uint8Array([toServer ? 0 : 1]),
    u64(i.timestamp!),
    toServer ? new Uint8Array(0) : i.clientSessionId!,
    u16(pad.length),
    pad,
    addr,
    i.payload,
  );
  const sep = cat(i.sessionId!, u64(i.packetId!));
  if (isChacha(i.method))
    return cat(i.nonce!, xchacha20poly1305(user, i.nonce!).encrypt(cat(sep, body)));
  const head = toServer && keys.length > 1 ? keys[0]! : user;
  const ids: Uint8Array[] = [];
  if (toServer) {
    for (let k = 0; k < keys.length - 1; k++) {
      const plain = blake3(keys[k + 1]!)
        .slice(0, 16)
        .map((b, j) => b ^ sep[j]!);
      ids.push(aesBlock(keys[k]!, plain));
    }
  }
  return cat(
    aesBlock(head, sep),
    ...ids,
    seal(i.method, sessionSubkey(user, i.sessionId!), sep.slice(4, 16), body),
  );
}
