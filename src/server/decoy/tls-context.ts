/**
 * The TLS settings in front of the decoy site, chosen to react to odd ClientHellos as nginx 1.22
 * with OpenSSL 3.0 does. nginx's default `ssl_protocols` includes TLSv1 and TLSv1.1, so a TLS 1.0
 * or SSLv2-style ClientHello gets OpenSSL's handshake_failure there (no cipher suite passes
 * OpenSSL 3's security level), where Node's default minimum (TLS 1.2) answers protocol_version:
 * one alert byte that told the two apart. With the same minimum, OpenSSL refuses those handshakes
 * the way it does under nginx; no TLS 1.0 or 1.1 connection can complete either way.
 * @module
 */
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';

export const DECOY_TLS_OPTIONS = { minVersion: 'TLSv1' } as const satisfies SecureContextOptions;

export function decoySecureContext(cert: string, key: string): SecureContext {
  return createSecureContext({ cert, key, ...DECOY_TLS_OPTIONS });
}
