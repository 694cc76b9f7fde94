/**
 * QUIC v1 Initial packets (RFC 9000 §17.2.2, RFC 9001 §5): the client's Initial keys come from its
 * Destination Connection ID and a published salt, so an on-path censor can remove header protection,
 * decrypt and authenticate the packet, and read the ClientHello in its CRYPTO frame — what the GFW
 * does since April 2024 (docs/censorship-techniques.md §8). Both directions are here: `openQuicInitial` for the censor,
 * `sealQuicInitial` to build test packets (Node 20 has no QUIC client).
 *
 * ```text
 * | 1 1 00 rr pp | version (32) | dcid_len | dcid | scid_len | scid | token_len (varint) | token
 * | length (varint) = pn + payload + tag | packet number (1-4, protected) | payload (AEAD) | tag (16)
 * frames: PADDING 00 | PING 01 | CRYPTO 06 offset (varint) length (varint) data
 * ```
 * Pure: no I/O; header protection and AEAD come from node:crypto.
 * @module
 */
import { createCipheriv, createDecipheriv, createHmac } from 'node:crypto';

/** RFC 9001 §5.2: initial_salt for QUIC version 1. */
export const QUIC_V1_INITIAL_SALT = Buffer.from('38762cf7f55934b34d179ae6a4c80cadccbb7f0a', 'hex');
export const QUIC_V1 = 0x00000001;
const TAG = 16;
const MAX_CID = 20; // RFC 9000 §17.2: connection IDs are at most 20 bytes in v1

/** RFC 8446 §7.1 HKDF-Expand-Label with the "tls13 " prefix and an empty context. */
function expandLabel(secret: Buffer, label: string, length: number): Buffer {
  const full = Buffer.from(`tls13 ${label}`, 'latin1');
  const info = Buffer.alloc(2 + 1 + full.length + 1);
  info.writeUInt16BE(length, 0);
  info[2] = full.length;
  full.copy(info, 3);
  info[3 + full.length] = 0;
  // HKDF-Expand (RFC 5869 §2.3); every length here is at most one SHA-256 block.
  return createHmac('sha256', secret)
    .update(info)
    .update(Buffer.of(1))
    .digest()
    .subarray(0, length);
}

/** HKDF-Extract (RFC 5869 §2.2): HMAC-SHA256(salt, ikm). */
function extract(salt: Buffer, ikm: Uint8Array): Buffer {
  return createHmac('sha256', salt).update(ikm).digest();
}

export interface InitialKeys {
  readonly key: Buffer;
  readonly iv: Buffer;
  readonly hp: Buffer;
}

/** RFC 9001 §5.2: the client's Initial keys for a Destination Connection ID. */
export function clientInitialKeys(dcid: Uint8Array): InitialKeys {
  const initial = extract(QUIC_V1_INITIAL_SALT, dcid);
  const client = expandLabel(initial, 'client in', 32);
  return {
    key: expandLabel(client, 'quic key', 16),
    iv: expandLabel(client, 'quic iv', 12),
    hp: expandLabel(client, 'quic hp', 16),
  };
}

function readVarint(b: Uint8Array, o: number): { value: number; next: number } | undefined {
  if (o >= b.length) return undefined;
  const len = 1 << (b[o]! >> 6);
  if (o + len > b.length) return undefined;
  let v = b[o]! & 0x3f;
  for (let i = 1; i < len; i++) v = v * 256 + b[o + i]!;
  return { value: v, next: o + len };
}

function writeVarint(v: number): Buffer {
  if (v < 64) return Buffer.of(v);
  if (v < 16384) return Buffer.of(0x40 | (v >> 8), v & 0xff);
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v | 0x80000000, 0);
  return b;
}

function hpMask(hp: Buffer, sample: Uint8Array): Buffer {
  const c = createCipheriv('aes-128-ecb', hp, null);
  return c.update(sample);
}

export interface OpenedInitial {
  readonly dcid: Buffer;
  readonly packetNumber: number;
  /** Decrypted frames. */
  readonly payload: Buffer;
}

/**
 * Decrypts a client Initial of QUIC v1. Returns undefined for anything else: another version (v2 and
 * others are not inspected, §8), a short header, a malformed header, or a packet that does not
 * authenticate (the GFW authenticates: a truncated Initial is not blocked, §8).
 */
export function openQuicInitial(d: Uint8Array): OpenedInitial | undefined {
  if (d.length < 7 || (d[0]! & 0xc0) !== 0xc0 || ((d[0]! >> 4) & 0x03) !== 0) return undefined;
  const version = ((d[1]! << 24) | (d[2]! << 16) | (d[3]! << 8) | d[4]!) >>> 0;
  if (version !== QUIC_V1) return undefined;
  let o = 5;
  const dcidLen = d[o++]!;
  if (dcidLen > MAX_CID || o + dcidLen > d.length) return undefined;
  const dcid = Buffer.from(d.subarray(o, o + dcidLen));
  o += dcidLen;
  if (o >= d.length) return undefined;
  const scidLen = d[o++]!;
  if (scidLen > MAX_CID || o + scidLen > d.length) return undefined;
  o += scidLen;
  const token = readVarint(d, o);
  if (!token || token.next + token.value > d.length) return undefined;
  o = token.next + token.value;
  const length = readVarint(d, o);
  if (!length) return undefined;
  const pnOffset = length.next;
  const end = pnOffset + length.value;
  if (end > d.length || pnOffset + 4 + 16 > end) return undefined;
  const keys = clientInitialKeys(dcid);
  const mask = hpMask(keys.hp, d.subarray(pnOffset + 4, pnOffset + 20));
  const header = Buffer.from(d.subarray(0, pnOffset + 4));
  header[0] = header[0]! ^ (mask[0]! & 0x0f);
  const pnLen = (header[0]! & 0x03) + 1;
  let pn = 0;
  for (let i = 0; i < pnLen; i++) {
    header[pnOffset + i] = header[pnOffset + i]! ^ mask[1 + i]!;
    pn = pn * 256 + header[pnOffset + i]!;
  }
  const aad = header.subarray(0, pnOffset + pnLen);
  const nonce = Buffer.from(keys.iv);
  for (let i = 0; i < 4; i++) nonce[11 - i] = nonce[11 - i]! ^ ((pn >>> (8 * i)) & 0xff);
  const body = d.subarray(pnOffset + pnLen, end);
  if (body.length < TAG) return undefined;
  try {
    const dec = createDecipheriv('aes-128-gcm', keys.key, nonce);
    dec.setAAD(aad);
    dec.setAuthTag(body.subarray(body.length - TAG));
    const payload = Buffer.concat([dec.update(body.subarray(0, body.length - TAG)), dec.final()]);
    return { dcid, packetNumber: pn, payload };
  } catch {
    return undefined;
  }
}

export interface QuicFrame {
  readonly type: number;
  /** CRYPTO frames: stream offset and data. */
  readonly offset?: number;
  readonly data?: Buffer;
}

/** The frames of a decrypted Initial payload (PADDING runs collapsed to one); stops at the unknown. */
export function readInitialFrames(payload: Buffer): QuicFrame[] {
  const out: QuicFrame[] = [];
  let o = 0;
  while (o < payload.length) {
    const type = payload[o]!;
    if (type === 0x00) {
      while (o < payload.length && payload[o] === 0) o++;
      out.push({ type });
      continue;
    }
    if (type === 0x01) {
      out.push({ type });
      o++;
      continue;
    }
    if (type !== 0x06) break;
    const off = readVarint(payload, o + 1);
    if (!off) break;
    const len = readVarint(payload, off.next);
    if (!len) break;
    // §8: a CRYPTO frame whose length field is 0 but that carries data still counted: take what is there.
    const dataEnd =
      len.value === 0 ? payload.length : Math.min(payload.length, len.next + len.value);
    out.push({ type, offset: off.value, data: payload.subarray(len.next, dataEnd) });
    o = dataEnd;
  }
  return out;
}

export interface SealOptions {
  readonly dcid: Uint8Array;
  readonly scid?: Uint8Array;
  readonly packetNumber?: number;
  /** Frames to carry, already encoded; see {@link cryptoFrame}. Padded to 1200 bytes (RFC 9000 §14.1). */
  readonly frames: Buffer;
  readonly version?: number;
}

/** A CRYPTO frame at `offset` carrying `data` (e.g. a TLS ClientHello handshake message). */
export function cryptoFrame(data: Uint8Array, offset = 0): Buffer {
  return Buffer.concat([Buffer.of(0x06), writeVarint(offset), writeVarint(data.length), data]);
}

/** Builds a protected client Initial (4-byte packet number), padded to a 1200-byte datagram. */
export function sealQuicInitial(o: SealOptions): Buffer {
  const scid = o.scid ?? Buffer.alloc(0);
  const pn = o.packetNumber ?? 0;
  const pnLen = 4;
  const head = Buffer.concat([
    Buffer.of(0xc0 | (pnLen - 1)),
    (() => {
      const v = Buffer.alloc(4);
      v.writeUInt32BE(o.version ?? QUIC_V1, 0);
      return v;
    })(),
    Buffer.of(o.dcid.length),
    o.dcid,
    Buffer.of(scid.length),
    scid,
    writeVarint(0), // no token
  ]);
  const lenFieldSize = 2;
  let frames = o.frames;
  const unpadded = head.length + lenFieldSize + pnLen + frames.length + TAG;
  if (unpadded < 1200) frames = Buffer.concat([frames, Buffer.alloc(1200 - unpadded)]);
  const lengthField = Buffer.of(
    0x40 | ((pnLen + frames.length + TAG) >> 8),
    (pnLen + frames.length + TAG) & 0xff,
  );
  const pnBytes = Buffer.alloc(4);
  pnBytes.writeUInt32BE(pn >>> 0, 0);
  const header = Buffer.concat([head, lengthField, pnBytes]);
  const keys = clientInitialKeys(o.dcid);
  const nonce = Buffer.from(keys.iv);
  for (let i = 0; i < 4; i++) nonce[11 - i] = nonce[11 - i]! ^ ((pn >>> (8 * i)) & 0xff);
  const enc = createCipheriv('aes-128-gcm', keys.key, nonce);
  enc.setAAD(header);
  const body = Buffer.concat([enc.update(frames), enc.final(), enc.getAuthTag()]);
  const packet = Buffer.concat([header, body]);
  const pnOffset = header.length - pnLen;
  const mask = hpMask(keys.hp, packet.subarray(pnOffset + 4, pnOffset + 20));
  packet[0] = packet[0]! ^ (mask[0]! & 0x0f);
  for (let i = 0; i < pnLen; i++) packet[pnOffset + i] = packet[pnOffset + i]! ^ mask[1 + i]!;
  return packet;
}

/** Wraps a TLS handshake message (from a CRYPTO frame) as a TLS record, for parseClientHello. */
export function asTlsRecord(handshake: Uint8Array): Buffer {
  const h = Buffer.of(0x16, 0x03, 0x01, (handshake.length >> 8) & 0xff, handshake.length & 0xff);
  return Buffer.concat([h, handshake]);
}
