/**
 * OONI's failure strings (ooni/spec `data-formats/df-007-errors.md`) from Node's errors, so that a
 * `ladder probe` measurement reads like an OONI Probe one: `connection_reset`, `generic_timeout_error`,
 * `dns_nxdomain_error`, `ssl_invalid_hostname`, ... Anything without a string of its own becomes
 * `unknown_failure: <message>`, as OONI writes it.
 * @module
 */
import { DNS_RCODE } from '../codec/dns.js';

/** The failure strings this probe emits (a subset of df-007), plus `unknown_failure: ...`. */
export type Failure =
  | 'connection_refused'
  | 'connection_reset'
  | 'connection_aborted'
  | 'host_unreachable'
  | 'network_unreachable'
  | 'network_down'
  | 'generic_timeout_error'
  | 'eof_error'
  | 'dns_nxdomain_error'
  | 'dns_servfail_error'
  | 'dns_refused_error'
  | 'dns_no_answer'
  | 'dns_server_misbehaving'
  | 'dns_reply_with_wrong_query_id'
  | 'ssl_invalid_hostname'
  | 'ssl_unknown_authority'
  | 'ssl_invalid_certificate'
  | 'ssl_failed_handshake'
  | 'http_request_failed'
  | 'interrupted'
  | `unknown_failure: ${string}`;

/** An error that stands for an operation's own timeout (the probe's --timeout). */
export class TimeoutFailure extends Error {
  constructor(what: string) {
    super(`${what}: timed out`);
    this.name = 'TimeoutFailure';
  }
}

/** An error that stands for a peer closing before the answer the operation waited for. */
export class EofFailure extends Error {
  constructor(what: string) {
    super(what);
    this.name = 'EofFailure';
  }
}

/** The df-007 string for an error from a socket, TLS, HTTP or DNS operation. */
export function failureOf(err: unknown): Failure {
  if (err instanceof TimeoutFailure) return 'generic_timeout_error';
  if (err instanceof EofFailure) return 'eof_error';
  const e = err as (Error & { code?: string }) | undefined;
  const code = e?.code ?? '';
  const msg = e?.message ?? String(err);
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection_refused';
    case 'ECONNRESET':
      // Node calls a peer that closed before any response "socket hang up" with ECONNRESET.
      return /socket hang up/i.test(msg) ? 'eof_error' : 'connection_reset';
    case 'EPIPE':
      return 'connection_reset';
    case 'ECONNABORTED':
      return 'connection_aborted';
    case 'EHOSTUNREACH':
      return 'host_unreachable';
    case 'ENETUNREACH':
    case 'EADDRNOTAVAIL':
      return 'network_unreachable';
    case 'ENETDOWN':
      return 'network_down';
    case 'ETIMEDOUT':
      return 'generic_timeout_error';
    case 'ABORT_ERR':
      return 'interrupted';
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return 'ssl_invalid_hostname';
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
      return 'ssl_unknown_authority';
    case 'CERT_HAS_EXPIRED':
    case 'CERT_NOT_YET_VALID':
    case 'CERT_REVOKED':
    case 'CERT_UNTRUSTED':
    case 'CERT_REJECTED':
    case 'INVALID_PURPOSE':
      return 'ssl_invalid_certificate';
    case 'ERR_SSL_WRONG_VERSION_NUMBER':
    case 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION':
    case 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE':
    case 'ERR_SSL_TLSV1_ALERT_INTERNAL_ERROR':
    case 'ERR_SSL_TLSV1_UNRECOGNIZED_NAME':
    case 'ERR_SSL_NO_PROTOCOLS_AVAILABLE':
      return 'ssl_failed_handshake';
  }
  // Ladder's fp=chrome client (transport/chrome-tls.ts).
  if (code === 'ERR_TLS_CERT') {
    if (/is not for /.test(msg)) return 'ssl_invalid_hostname';
    if (/trusted root/.test(msg)) return 'ssl_unknown_authority';
    return 'ssl_invalid_certificate';
  }
  if (code === 'ERR_TLS_PROTOCOL' && /closed during the TLS handshake/.test(msg))
    return 'eof_error';
  if (code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_')) return 'ssl_failed_handshake';
  if (/socket disconnected before secure TLS connection/i.test(msg)) return 'eof_error';
  if (code.startsWith('HPE_')) return 'http_request_failed';
  return `unknown_failure: ${msg.replace(/\s+/g, ' ').slice(0, 200)}`;
}

/** The df-007 string for a DNS response code (undefined for NOERROR). */
export function rcodeFailure(rcode: number): Failure | undefined {
  switch (rcode) {
    case DNS_RCODE.NOERROR:
      return undefined;
    case DNS_RCODE.NXDOMAIN:
      return 'dns_nxdomain_error';
    case DNS_RCODE.SERVFAIL:
      return 'dns_servfail_error';
    case DNS_RCODE.REFUSED:
      return 'dns_refused_error';
    default:
      return 'dns_server_misbehaving';
  }
}
