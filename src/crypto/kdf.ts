/**
 * Key derivation for both Shadowsocks editions.
 *
 * - AEAD-2017 (shadowsocks.org "AEAD ciphers"): master key = EVP_BytesToKey(password) with MD5 and no
 *   salt; per-stream subkey = HKDF-SHA1(master, salt, info "ss-subkey").
 * - 2022 (SIP022 §2.2, SIP023): subkeys = BLAKE3 derive_key with a context string over PSK || salt.
 * @module
 */
import { createHash } from 'node:crypto';
import { blake3 } from '@noble/hashes/blake3.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha1 } from '@noble/hashes/legacy.js';
import { nativeAead } from './native-aead.js';

const SS_SUBKEY_INFO = Buffer.from('ss-subkey');
const SESSION_SUBKEY_CONTEXT = new TextEncoder().encode('shadowsocks 2022 session subkey');
const IDENTITY_SUBKEY_CONTEXT = new TextEncoder().encode('shadowsocks 2022 identity subkey');

/**
 * OpenSSL's EVP_BytesToKey with MD5, one iteration and no salt, as shadowsocks-libev uses it to turn a
 * password into a master key: D_i = MD5(D_{i-1} || password), key = D_1 || D_2 || ... truncated.
 */
export function evpBytesToKey(password: string, keySize: number): Buffer {
  const pw = Buffer.from(password, 'utf8');
  const out = Buffer.alloc(keySize);
  let prev: Buffer = Buffer.alloc(0);
  for (let written = 0; written < keySize;) {
    prev = createHash('md5').update(prev).update(pw).digest();
    written += prev.copy(out, written);
  }
  return out;
}

/**
 * AEAD-2017 per-stream subkey: HKDF-SHA1(key, salt, "ss-subkey"), as long as the key.
 * In the native addon when it is there (HMAC over OpenSSL's SHA-1 block functions), else in
 * JavaScript (@noble/hashes). Not node:crypto's hkdfSync, which makes a KeyObject and goes through
 * OpenSSL 3's algorithm fetch on every call, which costs more CPU per connection than either
 * (docs/benchmarks.md, "Design measurements").
 */
export function ssSubkey(masterKey: Uint8Array, salt: Uint8Array): Buffer {
  const nativeHkdfSha1 = nativeAead()?.hkdfSha1;
  if (nativeHkdfSha1 !== undefined) {
    const out = Buffer.allocUnsafe(masterKey.length); // every byte is written by the addon
    nativeHkdfSha1(masterKey, salt, SS_SUBKEY_INFO, out);
    return out;
  }
  const out = hkdf(sha1, masterKey, salt, SS_SUBKEY_INFO, masterKey.length);
  return Buffer.from(out.buffer, out.byteOffset, out.length);
}

function deriveKey(context: Uint8Array, psk: Uint8Array, salt: Uint8Array): Buffer {
  const material = new Uint8Array(psk.length + salt.length);
  material.set(psk, 0);
  material.set(salt, psk.length);
  return Buffer.from(blake3(material, { context, dkLen: psk.length }));
}

/** SIP022 §2.2: session_subkey = blake3::derive_key("shadowsocks 2022 session subkey", psk || salt). */
export function ss2022SessionSubkey(psk: Uint8Array, salt: Uint8Array): Buffer {
  return deriveKey(SESSION_SUBKEY_CONTEXT, psk, salt);
}

/** SIP023 TCP: identity_subkey = blake3::derive_key("shadowsocks 2022 identity subkey", iPSK || salt). */
export function ss2022IdentitySubkey(ipsk: Uint8Array, salt: Uint8Array): Buffer {
  return deriveKey(IDENTITY_SUBKEY_CONTEXT, ipsk, salt);
}

/** SIP023: the first 16 bytes of blake3(psk), which names a user (or the next layer) in an identity header. */
export function pskHash16(psk: Uint8Array): Buffer {
  return Buffer.from(blake3(psk).subarray(0, 16));
}
