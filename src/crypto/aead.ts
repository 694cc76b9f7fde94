/**
 * AEAD primitives as Shadowsocks uses them, over node:crypto (AES-GCM, ChaCha20-Poly1305), plus the
 * AES single-block cipher of SIP022 UDP and SIP023, and XChaCha20-Poly1305 (SIP022 §4.1), which Node
 * lacks: HChaCha20 is computed here and the rest is Node's ChaCha20-Poly1305.
 *
 * Nonce rule: a {@link CounterAead} holds one subkey and a 96-bit little-endian counter that starts at
 * zero and is incremented after every seal or open (shadowsocks.org AEAD spec; SIP022 §3.1.1). A
 * subkey is derived from a fresh random salt per stream, so a counter nonce never repeats under a key.
 * @module
 */
import { createCipheriv, createDecipheriv, type CipherGCMTypes } from 'node:crypto';
import { NONCE_SIZE, TAG_SIZE, type AeadCipherName } from './methods.js';
import { NATIVE_CIPHER_ID, nativeAead, type NativeAead } from './native-aead.js';

type NodeAeadName = CipherGCMTypes | 'chacha20-poly1305';

function sealInto(
  cipher: AeadCipherName,
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  out: Uint8Array,
  offset: number,
): number {
  const c = createCipheriv(cipher as NodeAeadName as 'aes-256-gcm', key, nonce, {
    authTagLength: TAG_SIZE,
  });
  const ct = c.update(plaintext);
  c.final();
  out.set(ct, offset);
  out.set(c.getAuthTag(), offset + ct.length);
  return ct.length + TAG_SIZE;
}

function openBuffer(
  cipher: AeadCipherName,
  key: Uint8Array,
  nonce: Uint8Array,
  sealed: Uint8Array,
): Buffer | null {
  if (sealed.length < TAG_SIZE) return null;
  const end = sealed.length - TAG_SIZE;
  const d = createDecipheriv(cipher as NodeAeadName as 'aes-256-gcm', key, nonce, {
    authTagLength: TAG_SIZE,
  });
  d.setAuthTag(sealed.subarray(end));
  const pt = d.update(sealed.subarray(0, end));
  try {
    d.final();
  } catch {
    return null; // bad tag: the plaintext is discarded unread
  }
  return pt;
}

/**
 * One direction of one stream: a subkey and its nonce counter. Not safe to share between streams,
 * and used either only to seal or only to open. With the native addon the key schedule is made once;
 * otherwise each operation builds a node:crypto cipher.
 */
export class CounterAead {
  readonly #cipher: AeadCipherName;
  readonly #key: Uint8Array;
  readonly #nonce = new Uint8Array(NONCE_SIZE);
  /** The addon as configured when this cipher was made; null: node:crypto. */
  readonly #addon: NativeAead | null = nativeAead();
  #native: object | null = null;

  constructor(cipher: AeadCipherName, subkey: Uint8Array) {
    this.#cipher = cipher;
    this.#key = subkey;
  }

  /** Seals `plaintext` into `out` at `offset` as ciphertext || tag; returns plaintext.length + 16. */
  seal(plaintext: Uint8Array, out: Uint8Array, offset: number): number {
    const addon = this.#addon;
    if (addon) {
      this.#native ??= addon.create(NATIVE_CIPHER_ID[this.#cipher], this.#key, true);
      return addon.seal(this.#native, plaintext, out, offset);
    }
    const n = sealInto(this.#cipher, this.#key, this.#nonce, plaintext, out, offset);
    this.#increment();
    return n;
  }

  /** Opens ciphertext || tag into a new buffer; null if the tag is wrong (the counter then stays). `sealed` is left intact. */
  open(sealed: Uint8Array): Buffer | null {
    if (this.#addon) {
      if (sealed.length < TAG_SIZE) return null;
      const out = Buffer.allocUnsafe(sealed.length - TAG_SIZE); // fully written on success
      return this.#nativeOpen(sealed, out) ? out : null;
    }
    const pt = openBuffer(this.#cipher, this.#key, this.#nonce, sealed);
    if (pt !== null) this.#increment();
    return pt;
  }

  /**
   * Opens ciphertext || tag, decrypting into the same memory when it can (no allocation). The input
   * must be a buffer the caller owns and will not read again; on a wrong tag its bytes are undefined.
   */
  openInPlace(sealed: Buffer): Buffer | null {
    if (!this.#addon) return this.open(sealed);
    if (sealed.length < TAG_SIZE) return null;
    return this.#nativeOpen(sealed, sealed) ? sealed.subarray(0, sealed.length - TAG_SIZE) : null;
  }

  #nativeOpen(sealed: Uint8Array, out: Uint8Array): boolean {
    const addon = this.#addon!;
    this.#native ??= addon.create(NATIVE_CIPHER_ID[this.#cipher], this.#key, false);
    return addon.open(this.#native, sealed, out, 0) >= 0;
  }

  #increment(): void {
    const n = this.#nonce;
    for (let i = 0; i < NONCE_SIZE; i++) {
      n[i] = (n[i]! + 1) & 0xff;
      if (n[i] !== 0) return;
    }
  }
}

/** One-shot seal with an explicit nonce (UDP packets). Returns a new buffer: ciphertext || tag. */
export function sealOnce(
  cipher: AeadCipherName,
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array,
): Buffer {
  const out = Buffer.allocUnsafe(plaintext.length + TAG_SIZE); // every byte is written by sealInto
  sealInto(cipher, key, nonce, plaintext, out, 0);
  return out;
}

/** One-shot open with an explicit nonce; null on a wrong tag. */
export function openOnce(
  cipher: AeadCipherName,
  key: Uint8Array,
  nonce: Uint8Array,
  sealed: Uint8Array,
): Buffer | null {
  return openBuffer(cipher, key, nonce, sealed);
}

function aesEcbName(key: Uint8Array): 'aes-128-ecb' | 'aes-256-ecb' {
  if (key.length === 16) return 'aes-128-ecb';
  if (key.length === 32) return 'aes-256-ecb';
  throw new RangeError(`AES key must be 16 or 32 bytes, got ${key.length}`);
}

/** Encrypts one 16-byte block with AES (SIP022 UDP separate header; SIP023 identity header). */
export function aesEncryptBlock(key: Uint8Array, block: Uint8Array): Buffer {
  const c = createCipheriv(aesEcbName(key), key, null);
  c.setAutoPadding(false);
  return c.update(block.subarray(0, 16));
}

/** Decrypts one 16-byte block with AES. */
export function aesDecryptBlock(key: Uint8Array, block: Uint8Array): Buffer {
  const d = createDecipheriv(aesEcbName(key), key, null);
  d.setAutoPadding(false);
  return d.update(block.subarray(0, 16));
}

const SIGMA = [0x61707865, 0x3320646e, 0x79622d32, 0x6b206574]; // "expand 32-byte k"

function rotl(x: number, n: number): number {
  return (x << n) | (x >>> (32 - n));
}

/**
 * HChaCha20 (draft-irtf-cfrg-xchacha §2.2): 20 ChaCha rounds over key and a 16-byte nonce, no final
 * addition; the subkey is state words 0..3 and 12..15.
 */
export function hchacha20(key: Uint8Array, nonce16: Uint8Array): Buffer {
  const kv = new DataView(key.buffer, key.byteOffset, 32);
  const nv = new DataView(nonce16.buffer, nonce16.byteOffset, 16);
  const s = new Uint32Array(16);
  s.set(SIGMA, 0);
  for (let i = 0; i < 8; i++) s[4 + i] = kv.getUint32(i * 4, true);
  for (let i = 0; i < 4; i++) s[12 + i] = nv.getUint32(i * 4, true);
  const qr = (a: number, b: number, c: number, d: number): void => {
    s[a] = (s[a]! + s[b]!) | 0;
    s[d] = rotl(s[d]! ^ s[a]!, 16);
    s[c] = (s[c]! + s[d]!) | 0;
    s[b] = rotl(s[b]! ^ s[c]!, 12);
    s[a] = (s[a]! + s[b]!) | 0;
    s[d] = rotl(s[d]! ^ s[a]!, 8);
    s[c] = (s[c]! + s[d]!) | 0;
    s[b] = rotl(s[b]! ^ s[c]!, 7);
  };
  for (let i = 0; i < 10; i++) {
    qr(0, 4, 8, 12);
    qr(1, 5, 9, 13);
    qr(2, 6, 10, 14);
    qr(3, 7, 11, 15);
    qr(0, 5, 10, 15);
    qr(1, 6, 11, 12);
    qr(2, 7, 8, 13);
    qr(3, 4, 9, 14);
  }
  const out = Buffer.alloc(32);
  for (let i = 0; i < 4; i++) out.writeUInt32LE(s[i]! >>> 0, i * 4);
  for (let i = 0; i < 4; i++) out.writeUInt32LE(s[12 + i]! >>> 0, 16 + i * 4);
  return out;
}

function xchachaParts(key: Uint8Array, nonce24: Uint8Array): [Buffer, Buffer] {
  const subkey = hchacha20(key, nonce24.subarray(0, 16));
  const nonce = Buffer.alloc(12);
  nonce.set(nonce24.subarray(16, 24), 4);
  return [subkey, nonce];
}

/** XChaCha20-Poly1305 seal (24-byte nonce). */
export function xchachaSeal(key: Uint8Array, nonce24: Uint8Array, plaintext: Uint8Array): Buffer {
  const [subkey, nonce] = xchachaParts(key, nonce24);
  return sealOnce('chacha20-poly1305', subkey, nonce, plaintext);
}

/** XChaCha20-Poly1305 open; null on a wrong tag. */
export function xchachaOpen(
  key: Uint8Array,
  nonce24: Uint8Array,
  sealed: Uint8Array,
): Buffer | null {
  const [subkey, nonce] = xchachaParts(key, nonce24);
  return openOnce('chacha20-poly1305', subkey, nonce, sealed);
}
