/**
 * Key exchange for the TLS client (RFC 8446 §4.2.8, §7.4): X25519 over node:crypto, the hybrid
 * X25519MLKEM768 (draft-ietf-tls-ecdhe-mlkem: client share = ML-KEM-768 encapsulation key || X25519
 * public key, server share = ML-KEM ciphertext || X25519 public key, secret = ML-KEM secret || X25519
 * secret) with ML-KEM-768 from @noble/post-quantum, and P-256 / P-384 for a HelloRetryRequest.
 * @module
 */
import {
  createECDH,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  type JsonWebKey,
  type KeyObject,
} from 'node:crypto';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';

const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
export const MLKEM768_PUBLIC_LENGTH = 1184;
export const MLKEM768_CIPHERTEXT_LENGTH = 1088;

/** An X25519 private KeyObject from its raw 32 bytes (RFC 8410 PKCS#8 wrapping). */
export function x25519PrivateFromRaw(raw: Uint8Array): KeyObject {
  return createPrivateKey({
    key: Buffer.concat([X25519_PKCS8_PREFIX, raw]),
    format: 'der',
    type: 'pkcs8',
  });
}

/** A fresh X25519 key pair: the private KeyObject and the raw 32-byte public key. */
export function x25519Pair(): { priv: KeyObject; pub: Uint8Array } {
  // The public key as JWK, not DER: OpenSSL 3's DER encoder costs more than the generation
  // itself. Encoded by the generation, not by a later publicKey.export({ format: 'jwk' }): in
  // Node 20 that export can deadlock when a collection finalizes the key's generation job
  // meanwhile (seen in a loop of key pairs).
  const { privateKey, publicKey } = generateKeyPairSync('x25519', {
    publicKeyEncoding: { format: 'jwk' },
  });
  // (@types/node has no overload for a JWK publicKeyEncoding: the object is a JsonWebKey)
  const x = (publicKey as unknown as JsonWebKey).x!;
  return { priv: privateKey, pub: Buffer.from(x, 'base64url') };
}

/**
 * X25519(priv, peer): null for a peer key of the wrong length or an all-zero result (RFC 8446
 * §7.4.2: MUST abort with illegal_parameter).
 */
export function x25519Shared(priv: KeyObject, peer: Uint8Array): Buffer | null {
  if (peer.length !== 32) return null;
  const publicKey = createPublicKey({
    key: {
      kty: 'OKP',
      crv: 'X25519',
      x: Buffer.from(peer.buffer, peer.byteOffset, peer.length).toString('base64url'),
    },
    format: 'jwk',
  });
  let s: Buffer;
  try {
    s = diffieHellman({ privateKey: priv, publicKey });
  } catch {
    // OpenSSL refuses a low-order point itself (its all-zero result) rather than returning zeros
    return null;
  }
  return s.every((b) => b === 0) ? null : s;
}

/** A fresh ML-KEM-768 key pair. */
export const mlkem768Keygen = (): { publicKey: Uint8Array; secretKey: Uint8Array } =>
  ml_kem768.keygen();

/** X25519MLKEM768's shared secret from the server's share, or null when the share is malformed. */
export function x25519Mlkem768Shared(
  mlkemSecret: Uint8Array,
  x25519: KeyObject,
  serverShare: Uint8Array,
): Buffer | null {
  if (serverShare.length !== MLKEM768_CIPHERTEXT_LENGTH + 32) return null;
  const ss = ml_kem768.decapsulate(
    serverShare.subarray(0, MLKEM768_CIPHERTEXT_LENGTH),
    mlkemSecret,
  );
  const x = x25519Shared(x25519, serverShare.subarray(MLKEM768_CIPHERTEXT_LENGTH));
  return x ? Buffer.concat([ss, x]) : null;
}

/** A P-256 or P-384 share (uncompressed point, RFC 8446 §4.2.8.2) for a HelloRetryRequest. */
export function ecdhShare(group: 0x0017 | 0x0018): {
  pub: Uint8Array;
  shared(peer: Uint8Array): Buffer | null;
} {
  const e = createECDH(group === 0x0017 ? 'prime256v1' : 'secp384r1');
  const pub = e.generateKeys();
  return {
    pub,
    shared(peer) {
      if (peer.length !== pub.length || peer[0] !== 4) return null;
      try {
        return e.computeSecret(peer);
      } catch {
        return null;
      }
    },
  };
}
