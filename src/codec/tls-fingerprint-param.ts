/**
 * The `fp` key parameter: which TLS client a transport uses. `chrome` (the default): Ladder's own
 * TLS 1.3 client, whose ClientHello is Chrome's (transport/chrome-tls.ts); `node`: Node's TLS
 * (OpenSSL), shaped as close to Chrome as it allows (transport/tls.ts). Pure.
 * @module
 */

export const TLS_FINGERPRINTS = ['chrome', 'node'] as const;
export type TlsFingerprint = (typeof TLS_FINGERPRINTS)[number];
export const DEFAULT_TLS_FINGERPRINT: TlsFingerprint = 'chrome';

/** The fingerprint named by `value`, or null when it is not one Ladder knows. */
export function parseTlsFingerprint(value: string): TlsFingerprint | null {
  const v = value.trim().toLowerCase();
  return (TLS_FINGERPRINTS as readonly string[]).includes(v) ? (v as TlsFingerprint) : null;
}

/** The sentence that refuses an unknown value, naming the known ones. */
export const unknownFingerprint = (value: string): string =>
  `'${value.slice(0, 20)}' is not a TLS fingerprint Ladder knows; use one of ${TLS_FINGERPRINTS.join(', ')} (default ${DEFAULT_TLS_FINGERPRINT})`;
