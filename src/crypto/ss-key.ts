/**
 * A Shadowsocks credential resolved into key bytes: what both the client and the server codecs take.
 * @module
 */
import { ConfigError } from '../errors.js';
import { evpBytesToKey } from './kdf.js';
import {
  SS_METHODS,
  SS_METHOD_NAMES,
  isSsMethod,
  type AeadCipherName,
  type SsMethod,
} from './methods.js';

export interface SsCipherKey {
  readonly method: SsMethod;
  readonly edition: 2017 | 2022;
  /** node:crypto AEAD name. */
  readonly cipher: AeadCipherName;
  /** Key and salt size in bytes (equal for every method). */
  readonly keySize: number;
  /** 2017: EVP_BytesToKey(password). 2022: the user PSK (the last PSK of the password). */
  readonly key: Buffer;
  /** 2022 with SIP023 identity headers: the identity PSKs in order (the client's view). Else empty. */
  readonly identityKeys: readonly Buffer[];
}

function decodePsk(part: string, method: SsMethod, size: number): Buffer {
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(part)) {
    throw new ConfigError(
      'ERR_KEY_URI',
      `the ${method} key must be base64; got characters outside base64`,
    );
  }
  const bytes = Buffer.from(part.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  if (bytes.length !== size) {
    throw new ConfigError(
      'ERR_KEY_URI',
      `the ${method} key must be base64 of ${size} bytes, got ${bytes.length} bytes (make one with: openssl rand -base64 ${size})`,
    );
  }
  return bytes;
}

/** Resolves `method` and `password` into key bytes. Throws ConfigError naming the problem. */
export function makeCipherKey(method: string, password: string): SsCipherKey {
  if (!isSsMethod(method)) {
    throw new ConfigError(
      'ERR_UNKNOWN_METHOD',
      `unknown method '${method}'; supported: ${SS_METHOD_NAMES.join(', ')}`,
    );
  }
  const spec = SS_METHODS[method];
  if (spec.edition === 2017) {
    if (password.length === 0) throw new ConfigError('ERR_KEY_URI', 'the password is empty');
    return {
      method,
      edition: 2017,
      cipher: spec.cipher,
      keySize: spec.keySize,
      key: evpBytesToKey(password, spec.keySize),
      identityKeys: [],
    };
  }
  const parts = password.split(':').map((p) => decodePsk(p, method, spec.keySize));
  if (parts.length > 1 && spec.cipher === 'chacha20-poly1305') {
    throw new ConfigError(
      'ERR_KEY_URI',
      `${method} has no identity headers (SIP023 is for the AES methods); use a single PSK`,
    );
  }
  return {
    method,
    edition: 2022,
    cipher: spec.cipher,
    keySize: spec.keySize,
    key: parts[parts.length - 1]!,
    identityKeys: parts.slice(0, -1),
  };
}
