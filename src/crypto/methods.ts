/**
 * The Shadowsocks cipher methods Ladder speaks, with their sizes. AEAD-2017 methods derive the master
 * key from a password with EVP_BytesToKey; 2022 methods (SIP022) take a base64 pre-shared key of
 * exactly `keySize` bytes.
 * @module
 */

export const SS_METHODS = {
  'aes-128-gcm': { edition: 2017, cipher: 'aes-128-gcm', keySize: 16, saltSize: 16 },
  'aes-256-gcm': { edition: 2017, cipher: 'aes-256-gcm', keySize: 32, saltSize: 32 },
  'chacha20-ietf-poly1305': {
    edition: 2017,
    cipher: 'chacha20-poly1305',
    keySize: 32,
    saltSize: 32,
  },
  '2022-blake3-aes-128-gcm': { edition: 2022, cipher: 'aes-128-gcm', keySize: 16, saltSize: 16 },
  '2022-blake3-aes-256-gcm': { edition: 2022, cipher: 'aes-256-gcm', keySize: 32, saltSize: 32 },
  '2022-blake3-chacha20-poly1305': {
    edition: 2022,
    cipher: 'chacha20-poly1305',
    keySize: 32,
    saltSize: 32,
  },
} as const;

export type SsMethod = keyof typeof SS_METHODS;
/** The node:crypto AEAD cipher names behind the methods. */
export type AeadCipherName = (typeof SS_METHODS)[SsMethod]['cipher'];

export const SS_METHOD_NAMES = Object.keys(SS_METHODS) as SsMethod[];

export function isSsMethod(name: string): name is SsMethod {
  return Object.hasOwn(SS_METHODS, name);
}

/** AEAD tag length for every method. */
export const TAG_SIZE = 16;
/** AEAD nonce length for every method. */
export const NONCE_SIZE = 12;
