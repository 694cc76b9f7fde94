/**
 * Shadowsocks UDP packets, both editions. Pure: time and random bytes are parameters.
 *
 * AEAD-2017 (shadowsocks.org AEAD spec), both directions:
 * ```
 * | salt | seal(subkey = HKDF-SHA1(key, salt), nonce = 0, SOCKS addr || payload) |
 * ```
 * 2022 with AES (SIP022 §3.2, SIP023 UDP):
 * ```
 * | AES(PSK₀, session id ‖ u64be packet id) | identity header? | seal(session subkey, nonce = sep[4..16], body) |
 * body c→s: type=0 | u64be ts | u16be padlen | padding | SOCKS addr | payload
 * body s→c: type=1 | u64be ts | client session id (8B) | u16be padlen | padding | SOCKS addr | payload
 * ```
 * 2022 with ChaCha20 (SIP022 §4.1): `| nonce (24B) | XChaCha20-Poly1305(PSK, nonce, session id ‖ packet id ‖ body) |`.
 * @module
 */
import { AuthError, CodecError } from '../errors.js';
import {
  aesDecryptBlock,
  aesEncryptBlock,
  openOnce,
  sealOnce,
  xchachaOpen,
  xchachaSeal,
} from '../crypto/aead.js';
import { pskHash16, ss2022SessionSubkey, ssSubkey } from '../crypto/kdf.js';
import { NONCE_SIZE, TAG_SIZE } from '../crypto/methods.js';
import type { SsCipherKey } from '../crypto/ss-key.js';
import { decodeSocksAddr, encodeSocksAddr, socksAddrLength } from './socks-addr.js';
import { MAX_TIME_DIFF_S, type SsKeyTable, type SsServerKey } from './ss-tcp.js';
import type { Target } from '../core/target.js';

const ZERO_NONCE = new Uint8Array(NONCE_SIZE);
/** SIP022 §3.2.3 packet header types. */
export const PACKET_TYPE = { CLIENT: 0, SERVER: 1 } as const;
/** session id + packet id */
export const SEPARATE_HEADER_LENGTH = 8 + 8;
/** XChaCha20 nonce. */
export const XNONCE_LENGTH = 24;

export interface UdpDatagram {
  /** Destination (client→server) or source (server→client) of the payload. */
  readonly target: Target;
  readonly payload: Buffer;
}

// ---------------------------------------------------------------- AEAD-2017

export function encodeUdp2017(key: SsCipherKey, salt: Uint8Array, d: UdpDatagram): Buffer {
  const addrLen = socksAddrLength(d.target);
  const plain = Buffer.allocUnsafe(addrLen + d.payload.length);
  encodeSocksAddr(d.target, plain, 0);
  plain.set(d.payload, addrLen);
  const sealed = sealOnce(key.cipher, ssSubkey(key.key, salt), ZERO_NONCE, plain);
  return Buffer.concat([salt, sealed]);
}

/** Null when the key does not open the packet; CodecError when it opens but holds no valid address. */
export function decodeUdp2017(key: SsCipherKey, packet: Buffer): UdpDatagram | null {
  if (packet.length < key.keySize + TAG_SIZE) return null;
  const salt = packet.subarray(0, key.keySize);
  const plain = openOnce(
    key.cipher,
    ssSubkey(key.key, salt),
    ZERO_NONCE,
    packet.subarray(key.keySize),
  );
  if (plain === null) return null;
  const addr = decodeSocksAddr(plain, 0);
  if (addr === null) throw new CodecError('ERR_SOCKS_ADDR', 'UDP packet has a truncated address');
  return { target: addr.value, payload: plain.subarray(addr.bytesRead) };
}

// ---------------------------------------------------------------- 2022

export interface Udp2022Header {
  readonly sessionId: Buffer; // 8 bytes
  readonly packetId: bigint;
  /** Server→client only: the client session this answers. */
  readonly clientSessionId?: Buffer;
  /** Unix seconds from the packet. */
  readonly timestamp: number;
}

export interface Udp2022Packet extends Udp2022Header, UdpDatagram {}

function encodeBody(
  type: number,
  nowMs: number,
  clientSessionId: Buffer | undefined,
  padding: Uint8Array,
  d: UdpDatagram,
  prefix: number,
): Buffer {
  const addrLen = socksAddrLength(d.target);
  const len =
    prefix + 1 + 8 + (clientSessionId ? 8 : 0) + 2 + padding.length + addrLen + d.payload.length;
  const body = Buffer.alloc(len);
  let p = prefix;
  body[p++] = type;
  body.writeBigUInt64BE(BigInt(Math.floor(nowMs / 1000)), p);
  p += 8;
  if (clientSessionId) p += clientSessionId.copy(body, p);
  body.writeUInt16BE(padding.length, p);
  p += 2;
  body.set(padding, p);
  p += padding.length;
  p += encodeSocksAddr(d.target, body, p);
  body.set(d.payload, p);
  return body;
}

function decodeBody(
  body: Buffer,
  offset: number,
  expectType: number,
  nowMs: number,
): { ts: number; clientSessionId?: Buffer; d: UdpDatagram } {
  let p = offset;
  if (body.length < p + 1 + 8 + 2)
    throw new CodecError('ERR_SS2022_BAD_HEADER', 'UDP header is truncated');
  const type = body[p++];
  if (type !== expectType)
    throw new AuthError('ERR_SS2022_BAD_HEADER', `UDP packet type ${type} is not ${expectType}`);
  const ts = Number(body.readBigUInt64BE(p));
  p += 8;
  // SIP022 §3.2.3: over 30 s of difference is a replay.
  if (Math.abs(nowMs / 1000 - ts) > MAX_TIME_DIFF_S) {
    throw new AuthError(
      'ERR_SS2022_BAD_TIMESTAMP',
      `UDP timestamp is ${Math.round(ts - nowMs / 1000)} s off`,
    );
  }
  let clientSessionId: Buffer | undefined;
  if (expectType === PACKET_TYPE.SERVER) {
    if (body.length < p + 8 + 2)
      throw new CodecError('ERR_SS2022_BAD_HEADER', 'UDP header is truncated');
    clientSessionId = Buffer.from(body.subarray(p, p + 8));
    p += 8;
  }
  const padLen = body.readUInt16BE(p);
  p += 2 + padLen;
  if (p > body.length)
    throw new CodecError('ERR_SS2022_PADDING', 'UDP padding runs past the packet');
  const addr = decodeSocksAddr(body, p);
  if (addr === null) throw new CodecError('ERR_SOCKS_ADDR', 'UDP packet has a truncated address');
  const d = { target: addr.value, payload: body.subarray(p + addr.bytesRead) };
  return clientSessionId ? { ts, clientSessionId, d } : { ts, d };
}

function separateHeader(sessionId: Buffer, packetId: bigint): Buffer {
  const h = Buffer.alloc(SEPARATE_HEADER_LENGTH);
  sessionId.copy(h, 0, 0, 8);
  h.writeBigUInt64BE(packetId, 8);
  return h;
}

/**
 * Opens the AEAD body of a 2022 AES packet, given its decrypted separate header: the session subkey
 * comes from the session id, the nonce is bytes 4..16 of the header (SIP022 §3.2.1). Null when the
 * key does not open it.
 */
function openAesBody(key: SsCipherKey, sep: Buffer, sealed: Buffer, type: number, nowMs: number) {
  const sessionId = Buffer.from(sep.subarray(0, 8));
  const body = openOnce(
    key.cipher,
    ss2022SessionSubkey(key.key, sessionId),
    sep.subarray(4, 16),
    sealed,
  );
  if (body === null) return null;
  const { ts, clientSessionId, d } = decodeBody(body, 0, type, nowMs);
  return { sessionId, packetId: sep.readBigUInt64BE(8), timestamp: ts, clientSessionId, d };
}

/**
 * Encodes a 2022 packet. Client→server when `h.clientSessionId` is absent, else server→client.
 * `padding` is the padding bytes to include (SIP022 leaves the policy to the implementation).
 */
export function encodeUdp2022(
  key: SsCipherKey,
  h: Omit<Udp2022Header, 'timestamp'>,
  d: UdpDatagram,
  padding: Uint8Array,
  nowMs: number,
  random: (n: number) => Buffer,
): Buffer {
  const toServer = h.clientSessionId === undefined;
  const type = toServer ? PACKET_TYPE.CLIENT : PACKET_TYPE.SERVER;
  const sep = separateHeader(h.sessionId, h.packetId);
  if (key.cipher === 'chacha20-poly1305') {
    const body = encodeBody(type, nowMs, h.clientSessionId, padding, d, SEPARATE_HEADER_LENGTH);
    sep.copy(body, 0);
    const nonce = random(XNONCE_LENGTH);
    return Buffer.concat([nonce, xchachaSeal(key.key, nonce, body)]);
  }
  const body = encodeBody(type, nowMs, h.clientSessionId, padding, d, 0);
  // SIP023: requests are headed by the first iPSK; responses use the user PSK.
  const headKey = toServer && key.identityKeys.length > 0 ? key.identityKeys[0]! : key.key;
  const parts: Buffer[] = [aesEncryptBlock(headKey, sep)];
  if (toServer) {
    for (let i = 0; i < key.identityKeys.length; i++) {
      const next = key.identityKeys[i + 1] ?? key.key;
      const plain = pskHash16(next);
      for (let j = 0; j < 16; j++) plain[j]! ^= sep[j]!;
      parts.push(aesEncryptBlock(key.identityKeys[i]!, plain));
    }
  }
  const subkey = ss2022SessionSubkey(key.key, h.sessionId);
  parts.push(sealOnce(key.cipher, subkey, sep.subarray(4, 16), body));
  return Buffer.concat(parts);
}

/** Client side: opens a server→client packet with the client's key. Null if the key does not open it. */
export function decodeUdp2022Response(
  key: SsCipherKey,
  packet: Buffer,
  nowMs: number,
): Udp2022Packet | null {
  if (key.cipher === 'chacha20-poly1305') {
    if (packet.length < XNONCE_LENGTH + SEPARATE_HEADER_LENGTH + TAG_SIZE) return null;
    const body = xchachaOpen(
      key.key,
      packet.subarray(0, XNONCE_LENGTH),
      packet.subarray(XNONCE_LENGTH),
    );
    if (body === null) return null;
    const sessionId = Buffer.from(body.subarray(0, 8));
    const packetId = body.readBigUInt64BE(8);
    const { ts, clientSessionId, d } = decodeBody(
      body,
      SEPARATE_HEADER_LENGTH,
      PACKET_TYPE.SERVER,
      nowMs,
    );
    return { sessionId, packetId, clientSessionId: clientSessionId!, timestamp: ts, ...d };
  }
  if (packet.length < SEPARATE_HEADER_LENGTH + TAG_SIZE) return null;
  const sep = aesDecryptBlock(key.key, packet.subarray(0, 16));
  const o = openAesBody(key, sep, packet.subarray(16), PACKET_TYPE.SERVER, nowMs);
  if (o === null) return null;
  const { sessionId, packetId, timestamp, clientSessionId, d } = o;
  return { sessionId, packetId, clientSessionId: clientSessionId!, timestamp, ...d };
}

/** A client→server packet that a server key opened. */
export interface OpenedUdpRequest {
  readonly key: SsServerKey;
  /** 2022 only (undefined for AEAD-2017). */
  readonly header?: Udp2022Header;
  readonly datagram: UdpDatagram;
}

/**
 * Server side: finds the key that opens a client→server packet (identity headers first, then trial
 * decryption with `preferred` first, and without `skip`, a key the caller has tried already).
 * Returns null when no key opens it; throws AuthError/CodecError when a key opens it but the
 * contents are invalid (bad type, timestamp, address).
 */
export function openUdpRequest(
  table: SsKeyTable,
  packet: Buffer,
  nowMs: number,
  preferred?: SsServerKey,
  skip?: SsServerKey,
): OpenedUdpRequest | null {
  for (const g of table.groups) {
    if (packet.length < 32 + TAG_SIZE) break;
    const sep = aesDecryptBlock(g.ipsk, packet.subarray(0, 16));
    const hash = aesDecryptBlock(g.ipsk, packet.subarray(16, 32));
    for (let j = 0; j < 16; j++) hash[j]! ^= sep[j]!;
    const user = g.users.get(hash.toString('latin1'));
    if (!user) continue;
    const o = openAesBody(user.key, sep, packet.subarray(32), PACKET_TYPE.CLIENT, nowMs);
    if (o === null) continue;
    const { sessionId, packetId, timestamp, d } = o;
    return { key: user, header: { sessionId, packetId, timestamp }, datagram: d };
  }
  // The preferred key first, then the rest, without copying the key list per datagram.
  const first =
    preferred !== undefined && table.candidateOf(preferred) >= 0 ? preferred : undefined;
  if (first) {
    const o = openTrialUdp(first, packet, nowMs);
    if (o) return o;
  }
  for (const k of table.trial) {
    if (k === first || k === skip) continue;
    const o = openTrialUdp(k, packet, nowMs);
    if (o) return o;
  }
  return null;
}

/**
 * One trial key against a client→server packet: the opened request, or null if the key does not
 * open it; throws as {@link openUdpRequest} does.
 */
export function openTrialUdp(
  k: SsServerKey,
  packet: Buffer,
  nowMs: number,
): OpenedUdpRequest | null {
  const key = k.key;
  if (key.edition === 2017) {
    const d = decodeUdp2017(key, packet);
    if (d) return { key: k, datagram: d };
    return null;
  }
  if (key.cipher === 'chacha20-poly1305') {
    if (packet.length < XNONCE_LENGTH + SEPARATE_HEADER_LENGTH + TAG_SIZE) return null;
    const body = xchachaOpen(
      key.key,
      packet.subarray(0, XNONCE_LENGTH),
      packet.subarray(XNONCE_LENGTH),
    );
    if (body === null) return null;
    const { ts, d } = decodeBody(body, SEPARATE_HEADER_LENGTH, PACKET_TYPE.CLIENT, nowMs);
    return {
      key: k,
      header: {
        sessionId: Buffer.from(body.subarray(0, 8)),
        packetId: body.readBigUInt64BE(8),
        timestamp: ts,
      },
      datagram: d,
    };
  }
  if (packet.length < SEPARATE_HEADER_LENGTH + TAG_SIZE) return null;
  const sep = aesDecryptBlock(key.key, packet.subarray(0, 16));
  const o = openAesBody(key, sep, packet.subarray(16), PACKET_TYPE.CLIENT, nowMs);
  if (o === null) return null;
  const { sessionId, packetId, timestamp, d } = o;
  return { key: k, header: { sessionId, packetId, timestamp }, datagram: d };
}
