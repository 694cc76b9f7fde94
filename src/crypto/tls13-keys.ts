/**
 * The TLS 1.3 key schedule (RFC 8446 §7.1) and record protection (§5.2, §5.3) over node:crypto:
 * HKDF-Extract and HKDF-Expand-Label with SHA-256 or SHA-384, traffic keys and IVs, Finished keys,
 * the per-record nonce, and AEAD seal/open for AES-128-GCM, AES-256-GCM and ChaCha20-Poly1305.
 * @module
 */
import { createCipheriv, createDecipheriv, createHash, createHmac } from 'node:crypto';
import { NATIVE_CIPHER_ID, nativeAead } from './native-aead.js';

export type TlsHash = 'sha256' | 'sha384';

export interface Tls13Suite {
  id: number;
  hash: TlsHash;
  hashLength: number;
  cipher: 'aes-128-gcm' | 'aes-256-gcm' | 'chacha20-poly1305';
  keyLength: number;
}

/** The TLS 1.3 cipher suites (RFC 8446 §B.4) Chrome offers, by code point. */
export const TLS13_SUITES: ReadonlyMap<number, Tls13Suite> = new Map([
  [0x1301, { id: 0x1301, hash: 'sha256', hashLength: 32, cipher: 'aes-128-gcm', keyLength: 16 }],
  [0x1302, { id: 0x1302, hash: 'sha384', hashLength: 48, cipher: 'aes-256-gcm', keyLength: 32 }],
  [
    0x1303,
    { id: 0x1303, hash: 'sha256', hashLength: 32, cipher: 'chacha20-poly1305', keyLength: 32 },
  ],
]);

export function hkdfExtract(hash: TlsHash, salt: Uint8Array, ikm: Uint8Array): Buffer {
  return createHmac(hash, salt).update(ikm).digest();
}

/** HKDF-Expand (RFC 5869 §2.3). */
function hkdfExpand(hash: TlsHash, prk: Uint8Array, info: Uint8Array, length: number): Buffer {
  const out: Buffer[] = [];
  let t: Buffer = Buffer.alloc(0);
  for (let i = 1, have = 0; have < length; i++) {
    t = createHmac(hash, prk).update(t).update(info).update(Uint8Array.of(i)).digest();
    out.push(t);
    have += t.length;
  }
  return Buffer.concat(out).subarray(0, length);
}

/** HKDF-Expand-Label (RFC 8446 §7.1): HkdfLabel = u16 length, "tls13 " + label, context. */
export function expandLabel(
  hash: TlsHash,
  secret: Uint8Array,
  label: string,
  context: Uint8Array,
  length: number,
): Buffer {
  const l = Buffer.from(`tls13 ${label}`, 'ascii');
  const info = Buffer.concat([
    Uint8Array.of(length >> 8, length & 0xff, l.length),
    l,
    Uint8Array.of(context.length),
    context,
  ]);
  return hkdfExpand(hash, secret, info, length);
}

export function hashOf(hash: TlsHash, ...parts: Uint8Array[]): Buffer {
  const h = createHash(hash);
  for (const p of parts) h.update(p);
  return h.digest();
}

/** Derive-Secret (RFC 8446 §7.1) given the transcript hash. */
export const deriveSecret = (
  hash: TlsHash,
  secret: Uint8Array,
  label: string,
  transcriptHash: Uint8Array,
): Buffer => expandLabel(hash, secret, label, transcriptHash, transcriptHash.length);

/** The early secret (from a PSK, or none), and the salt ("derived") for the handshake secret. */
export function earlySecrets(
  suite: Pick<Tls13Suite, 'hash' | 'hashLength'>,
  psk?: Uint8Array,
): { early: Buffer; derived: Buffer } {
  const zero = Buffer.alloc(suite.hashLength);
  const early = hkdfExtract(suite.hash, zero, psk ?? zero);
  return { early, derived: deriveSecret(suite.hash, early, 'derived', hashOf(suite.hash)) };
}

/**
 * A resumption PSK's binder (RFC 8446 §4.2.11.2): the Finished-style HMAC, under the "res binder"
 * key of the PSK's early secret, of the hash of the transcript up to the binders list.
 */
export function pskBinder(
  suite: Pick<Tls13Suite, 'hash' | 'hashLength'>,
  psk: Uint8Array,
  transcriptHash: Uint8Array,
): Buffer {
  const { early } = earlySecrets(suite, psk);
  const binderKey = deriveSecret(suite.hash, early, 'res binder', hashOf(suite.hash));
  const key = expandLabel(suite.hash, binderKey, 'finished', new Uint8Array(0), suite.hashLength);
  return createHmac(suite.hash, key).update(transcriptHash).digest();
}

/** Record protection for one direction: key, IV and the sequence number (RFC 8446 §5.3). */
export class RecordProtection {
  readonly suite: Tls13Suite;
  readonly #key: Buffer;
  readonly #iv: Buffer;
  #seq = 0n;

  /** The native addon's contexts (one per direction, made on first use), when it has TLS records. */
  #sealCtx: object | null = null;
  #openCtx: object | null = null;

  constructor(suite: Tls13Suite, trafficSecret: Uint8Array) {
    this.suite = suite;
    this.#key = expandLabel(suite.hash, trafficSecret, 'key', new Uint8Array(0), suite.keyLength);
    this.#iv = expandLabel(suite.hash, trafficSecret, 'iv', new Uint8Array(0), 12);
  }

  readonly #addon = nativeAead();

  #native(encrypt: boolean): object | null {
    const nativeAead = this.#addon;
    if (!nativeAead?.openTls || !nativeAead.sealTls) return null;
    if (encrypt)
      return (this.#sealCtx ??= nativeAead.create(
        NATIVE_CIPHER_ID[this.suite.cipher],
        this.#key,
        true,
      ));
    return (this.#openCtx ??= nativeAead.create(
      NATIVE_CIPHER_ID[this.suite.cipher],
      this.#key,
      false,
    ));
  }

  /** The per-record nonce: the IV XOR the 64-bit sequence number, left-padded (§5.3). */
  #nonce(): Buffer {
    if (this.#seq >= 0xffffffffffffffffn) throw new Error('TLS sequence number would wrap');
    const n = Buffer.from(this.#iv);
    const s = this.#seq++;
    for (let i = 0; i < 8; i++) n[11 - i]! ^= Number((s >> BigInt(8 * i)) & 0xffn);
    return n;
  }

  // (The casts pick @types/node's AEAD overload; ChaCha20-Poly1305 takes the same options.)
  /** Bytes a record adds to its content (header, content type, tag). */
  readonly overhead = 5 + 1 + 16;

  /**
   * TLSCiphertext for one TLSInnerPlaintext (content || type): the 5-byte header included. Written
   * at `into[offset]` when given (room for content + {@link overhead} bytes), else to a new buffer.
   */
  seal(content: Uint8Array, type: number, into?: Buffer, offset = 0): Buffer {
    const len = content.length + 1 + 16;
    const out = into ? into.subarray(offset, offset + 5 + len) : Buffer.allocUnsafe(5 + len);
    out[0] = 23;
    out[1] = 3;
    out[2] = 3;
    out.writeUInt16BE(len, 3);
    const ctx = this.#native(true);
    if (ctx) {
      // The addon keeps one cipher context: no cipher object per record.
      out.set(content, 5);
      out[5 + content.length] = type;
      this.#addon!.sealTls!(
        ctx,
        this.#nonce(),
        out.subarray(0, 5),
        out.subarray(5, 5 + content.length + 1),
        out,
        5,
      );
      return out;
    }
    const c = createCipheriv(this.suite.cipher as 'aes-128-gcm', this.#key, this.#nonce(), {
      authTagLength: 16,
    });
    c.setAAD(out.subarray(0, 5));
    let p = 5;
    p += c.update(content).copy(out, p);
    p += c.update(Uint8Array.of(type)).copy(out, p);
    p += c.final().copy(out, p);
    c.getAuthTag().copy(out, p);
    return out;
  }

  /**
   * Opens a record body with its 5-byte header as AAD; null when the tag fails. The plaintext
   * (TLSInnerPlaintext) is written to `out` at `offset` when given (room for `body.length - 16`
   * bytes), else over `body` with the native addon; it is returned as a view of where it lies. On a
   * failed tag, what was written there is not plaintext to use.
   */
  open(header: Uint8Array, body: Buffer, out?: Buffer, offset = 0): Buffer | null {
    if (body.length < 17) return null;
    const ctx = this.#native(false);
    if (ctx) {
      const dst = out ?? body;
      const at = out ? offset : 0;
      const n = this.#addon!.openTls!(ctx, this.#nonce(), header, body, dst, at);
      return n < 0 ? null : dst.subarray(at, at + n);
    }
    const d = createDecipheriv(this.suite.cipher as 'aes-128-gcm', this.#key, this.#nonce(), {
      authTagLength: 16,
    });
    d.setAAD(header);
    d.setAuthTag(body.subarray(body.length - 16));
    const a = d.update(body.subarray(0, body.length - 16));
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
