/**
 * TLS 1.2 keys and record protection for the AEAD suites Chrome offers with ECDHE: the PRF (RFC
 * 5246 §5) with SHA-256 or SHA-384, the extended master secret (RFC 7627 §4), the key block (§6.3),
 * Finished verify_data (§7.4.9), and AEAD records (§6.2.3.3) for AES-GCM (RFC 5288) and
 * ChaCha20-Poly1305 (RFC 7905).
 *
 * ```
 * AES-GCM record:  type | 0x0303 | u16 length | explicit_nonce[8] | ciphertext | tag[16]
 *                  nonce = write_iv[4] || explicit_nonce; explicit_nonce = the sequence number
 * ChaCha20 record: type | 0x0303 | u16 length | ciphertext | tag[16]
 *                  nonce = write_iv[12] XOR (0[4] || sequence number)
 * additional data: seq_num[8] | type | 0x0303 | u16 plaintext length
 * ```
 * @module
 */
import { createCipheriv, createDecipheriv, createHmac } from 'node:crypto';
import { NATIVE_CIPHER_ID, nativeAead } from './native-aead.js';
import type { TlsHash } from './tls13-keys.js';

export interface Tls12Suite {
  id: number;
  /** The key exchange's signature: which certificate key the suite needs. */
  auth: 'ecdsa' | 'rsa';
  hash: TlsHash;
  cipher: 'aes-128-gcm' | 'aes-256-gcm' | 'chacha20-poly1305';
  keyLength: number;
  /** write_iv length: the 4-byte GCM salt or the 12-byte ChaCha20 IV. */
  ivLength: 4 | 12;
}

const gcm = (id: number, auth: 'ecdsa' | 'rsa', big: boolean): [number, Tls12Suite] => [
  id,
  {
    id,
    auth,
    hash: big ? 'sha384' : 'sha256',
    cipher: big ? 'aes-256-gcm' : 'aes-128-gcm',
    keyLength: big ? 32 : 16,
    ivLength: 4,
  },
];
const chacha = (id: number, auth: 'ecdsa' | 'rsa'): [number, Tls12Suite] => [
  id,
  { id, auth, hash: 'sha256', cipher: 'chacha20-poly1305', keyLength: 32, ivLength: 12 },
];

/**
 * Chrome's ECDHE + AEAD TLS 1.2 suites (RFC 5289, RFC 7905). The others Chrome offers (CBC, and
 * RSA key transport) are refused.
 */
export const TLS12_SUITES: ReadonlyMap<number, Tls12Suite> = new Map([
  gcm(0xc02b, 'ecdsa', false),
  gcm(0xc02f, 'rsa', false),
  gcm(0xc02c, 'ecdsa', true),
  gcm(0xc030, 'rsa', true),
  chacha(0xcca9, 'ecdsa'),
  chacha(0xcca8, 'rsa'),
]);

/** PRF(secret, label, seed) = P_hash(secret, label + seed) (RFC 5246 §5), `length` bytes. */
export function prf12(
  hash: TlsHash,
  secret: Uint8Array,
  label: string,
  seed: Uint8Array,
  length: number,
): Buffer {
  const ls = Buffer.concat([Buffer.from(label, 'latin1'), seed]);
  const out: Buffer[] = [];
  let a: Buffer = ls;
  let have = 0;
  while (have < length) {
    a = createHmac(hash, secret).update(a).digest();
    const p = createHmac(hash, secret).update(a).update(ls).digest();
    out.push(p);
    have += p.length;
  }
  return Buffer.concat(out).subarray(0, length);
}

/** RFC 7627 §4: master_secret = PRF(pre_master_secret, "extended master secret", session_hash). */
export const extendedMasterSecret = (
  hash: TlsHash,
  preMaster: Uint8Array,
  sessionHash: Uint8Array,
): Buffer => prf12(hash, preMaster, 'extended master secret', sessionHash, 48);

/** RFC 5246 §7.4.9: verify_data = PRF(master_secret, finished_label, Hash(handshake_messages))[0..11]. */
export const finishedData12 = (
  hash: TlsHash,
  master: Uint8Array,
  client: boolean,
  transcriptHash: Uint8Array,
): Buffer =>
  prf12(hash, master, client ? 'client finished' : 'server finished', transcriptHash, 12);

/** The two directions' keys and IVs from the key block (RFC 5246 §6.3; AEAD suites have no MAC key). */
export function keyBlock12(
  suite: Tls12Suite,
  master: Uint8Array,
  clientRandom: Uint8Array,
  serverRandom: Uint8Array,
): { clientKey: Buffer; serverKey: Buffer; clientIv: Buffer; serverIv: Buffer } {
  const k = suite.keyLength;
  const v = suite.ivLength;
  const b = prf12(
    suite.hash,
    master,
    'key expansion',
    Buffer.concat([serverRandom, clientRandom]),
    2 * k + 2 * v,
  );
  return {
    clientKey: b.subarray(0, k),
    serverKey: b.subarray(k, 2 * k),
    clientIv: b.subarray(2 * k, 2 * k + v),
    serverIv: b.subarray(2 * k + v, 2 * k + 2 * v),
  };
}

const EXPLICIT_NONCE = 8;
const TAG = 16;

/**
 * One direction's TLS 1.2 AEAD record protection. `seal` and `open` have the shapes of the TLS 1.3
 * RecordProtection so that the record layer above serves both versions; the content type is the
 * record header's. Nonces: GCM's explicit part is the 64-bit sequence number, so no nonce repeats
 * under one key (RFC 5288 §3); the sequence number never wraps (the connection fails first).
 */
export class Tls12RecordProtection {
  readonly suite: Tls12Suite;
  readonly #key: Buffer;
  readonly #iv: Buffer;
  #seq = 0n;
  readonly #addon = nativeAead();
  #ctx: object | null = null;
  readonly #encrypt: boolean;

  constructor(suite: Tls12Suite, key: Uint8Array, iv: Uint8Array, encrypt: boolean) {
    this.suite = suite;
    this.#key = Buffer.from(key);
    this.#iv = Buffer.from(iv);
    this.#encrypt = encrypt;
  }

  /** Bytes a record adds to its content (header, explicit nonce, tag). */
  get overhead(): number {
    return 5 + (this.suite.ivLength === 4 ? EXPLICIT_NONCE : 0) + TAG;
  }

  #next(): bigint {
    if (this.#seq >= 0xffffffffffffffffn) throw new Error('TLS sequence number would wrap');
    return this.#seq++;
  }

  #nonce(seq: bigint, explicit?: Uint8Array): Buffer {
    const n = Buffer.alloc(12);
    if (this.suite.ivLength === 4) {
      this.#iv.copy(n, 0);
      if (explicit) n.set(explicit, 4);
      else n.writeBigUInt64BE(seq, 4);
      return n;
    }
    this.#iv.copy(n, 0);
    for (let i = 0; i < 8; i++) n[11 - i]! ^= Number((seq >> BigInt(8 * i)) & 0xffn);
    return n;
  }

  static #aad(seq: bigint, type: number, length: number): Buffer {
    const a = Buffer.allocUnsafe(13);
    a.writeBigUInt64BE(seq, 0);
    a[8] = type;
    a[9] = 3;
    a[10] = 3;
    a.writeUInt16BE(length, 11);
    return a;
  }

  #native(): object | null {
    const n = this.#addon;
    if (!n?.openTls || !n.sealTls) return null;
    return (this.#ctx ??= n.create(NATIVE_CIPHER_ID[this.suite.cipher], this.#key, this.#encrypt));
  }

  /**
   * TLSCiphertext for one record of `type` (5-byte header included). Written at `into[offset]` when
   * given (room for content + {@link overhead} bytes), else to a new buffer.
   */
  seal(content: Uint8Array, type: number, into?: Buffer, offset = 0): Buffer {
    const seq = this.#next();
    const ex = this.suite.ivLength === 4 ? EXPLICIT_NONCE : 0;
    const len = ex + content.length + TAG;
    const out = into ? into.subarray(offset, offset + 5 + len) : Buffer.allocUnsafe(5 + len);
    out[0] = type;
    out[1] = 3;
    out[2] = 3;
    out.writeUInt16BE(len, 3);
    if (ex) out.writeBigUInt64BE(seq, 5);
    const nonce = this.#nonce(seq);
    const aad = Tls12RecordProtection.#aad(seq, type, content.length);
    const at = 5 + ex;
    const ctx = this.#native();
    if (ctx) {
      out.set(content, at);
      this.#addon!.sealTls!(ctx, nonce, aad, out.subarray(at, at + content.length), out, at);
      return out;
    }
    const c = createCipheriv(this.suite.cipher as 'aes-128-gcm', this.#key, nonce, {
      authTagLength: TAG,
    });
    c.setAAD(aad);
    let p = at;
    p += c.update(content).copy(out, p);
    p += c.final().copy(out, p);
    c.getAuthTag().copy(out, p);
    return out;
  }

  /**
   * Opens a record body given its 5-byte header; null when it is too short or the tag fails. The
   * plaintext is written to `out` at `offset` when given (room for the body less nonce and tag),
   * else over `body` with the native addon; it is returned as a view of where it lies.
   */
  open(header: Uint8Array, body: Buffer, out?: Buffer, offset = 0): Buffer | null {
    const ex = this.suite.ivLength === 4 ? EXPLICIT_NONCE : 0;
    if (body.length < ex + TAG) return null;
    const seq = this.#next();
    const nonce = this.#nonce(seq, ex ? body.subarray(0, ex) : undefined);
    const sealed = body.subarray(ex);
    const aad = Tls12RecordProtection.#aad(seq, header[0]!, sealed.length - TAG);
    const ctx = this.#native();
    if (ctx) {
      const dst = out ?? sealed;
      const at = out ? offset : 0;
      const n = this.#addon!.openTls!(ctx, nonce, aad, sealed, dst, at);
      return n < 0 ? null : dst.subarray(at, at + n);
    }
    const d = createDecipheriv(this.suite.cipher as 'aes-128-gcm', this.#key, nonce, {
      authTagLength: TAG,
    });
    d.setAAD(aad);
    d.setAuthTag(sealed.subarray(sealed.length - TAG));
    const a = d.update(sealed.subarray(0, sealed.length - TAG));
    try {
      const b = d.final();
      if (out) {
        a.copy(out, offset);
        b.copy(out, offset + a.length);
        return out.subarray(offset, offset + a.length + b.length);
      }
      return b.length ? Buffer.concat([a, b]) : a;
    } catch {
      return null;
    }
  }
}
