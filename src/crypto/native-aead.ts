/**
 * Loads the optional native AEAD addon (native/aead), which keeps one OpenSSL context per stream
 * direction instead of building a cipher object per chunk. When it is missing (not built) or turned
 * off by the composition root ({@link configureNativeAead}; the CLI does so for LADDER_NO_NATIVE=1),
 * callers fall back to node:crypto; both paths are tested against each other. The addon is loaded on
 * first use, so importing this module reads neither the environment nor the file system.
 * @module
 */
import { createRequire } from 'node:module';
import type { AeadCipherName } from './methods.js';

export interface NativeAead {
  create(cipher: number, key: Uint8Array, encrypt: boolean): object;
  seal(ctx: object, plaintext: Uint8Array, out: Uint8Array, offset: number): number;
  open(ctx: object, sealed: Uint8Array, out: Uint8Array, offset: number): number;
  /** HKDF-SHA1 (RFC 5869) into `out` (its length is the output length). Absent in older builds. */
  hkdfSha1?(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, out: Uint8Array): void;
  /**
   * A TLS 1.3 record (RFC 8446 §5.2) with the caller's nonce and additional data; in place allowed.
   * Returns the bytes written (open: -1 when the tag fails). Absent in older builds.
   */
  sealTls?(
    ctx: object,
    nonce: Uint8Array,
    aad: Uint8Array,
    input: Uint8Array,
    out: Uint8Array,
    offset: number,
  ): number;
  openTls?(
    ctx: object,
    nonce: Uint8Array,
    aad: Uint8Array,
    input: Uint8Array,
    out: Uint8Array,
    offset: number,
  ): number;
}

export const NATIVE_CIPHER_ID: Record<AeadCipherName, number> = {
  'aes-128-gcm': 0,
  'aes-256-gcm': 1,
  'chacha20-poly1305': 2,
};

function load(): NativeAead | null {
  const require = createRequire(import.meta.url);
  // dist/src/crypto/ → repo root → native/aead/build/Release
  for (const rel of [
    '../../../native/aead/build/Release/ladder_aead.node',
    '../../native/aead/build/Release/ladder_aead.node',
  ]) {
    try {
      return require(rel) as NativeAead;
    } catch {
      // try the next place; absent means the fallback
    }
  }
  return null;
}

/** undefined: not tried yet. */
let loaded: NativeAead | null | undefined;
let enabled = true;

/** Turns the addon off (or back on) for the whole process; call it before the first cipher is made. */
export function configureNativeAead(options: { readonly enabled: boolean }): void {
  enabled = options.enabled;
}

/** The addon, or null when it is turned off or not available. */
export function nativeAead(): NativeAead | null {
  if (!enabled) return null;
  if (loaded === undefined) loaded = load();
  return loaded;
}
