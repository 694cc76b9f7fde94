/**
 * TLS for the transports that hide in web traffic (Trojan, WebSocket over TLS). {@link tlsConnect}
 * takes the client a key's `fp` names: `chrome`, Ladder's own TLS 1.3 client with Chrome's
 * ClientHello (chrome-tls.ts), or `node`, Node's TLS, which the rest of this note is about.
 *
 * Client (fp=node): the ClientHello is shaped as close to Chrome's as Node's OpenSSL allows — the same cipher
 * suites in the same order, the same signature algorithms, Chrome's classical groups, ALPN `h2,
 * http/1.1`, status_request, no encrypt_then_mac, and the SNI the key names. What still differs from
 * Chrome (docs/tls-fingerprint.md, checked by test/integration/tls-fingerprint.test.ts): no GREASE,
 * no post-quantum X25519MLKEM768 key share (so a ClientHello of ~270 bytes, not ~1800), OpenSSL's
 * fixed extension order (Chrome permutes its extensions), no ALPS, no certificate compression, no
 * SCT or ECH extensions, the renegotiation SCSV instead of renegotiation_info, and three EC point
 * formats instead of one. The server is verified by the system CAs (or a given CA), or by a SHA-256
 * certificate pin that an access key carries for self-signed servers.
 * @module
 */
import { deadline } from './deadline.js';
import { DEFAULT_CONNECT_TIMEOUT_MS } from '../core/defaults.js';
import {
  connect,
  createSecureContext,
  type ConnectionOptions,
  type SecureContext,
  type TLSSocket,
} from 'node:tls';
import { X509Certificate, constants } from 'node:crypto';
import { isIP } from 'node:net';
import { ConfigError, DialError, dialErrorFromSystem } from '../errors.js';
import type { Target } from './types.js';
import { formatHostPort } from '../core/host-port.js';
import type { TlsFingerprint } from '../codec/tls-fingerprint-param.js';
import { chromeTlsConnect, type ChromeTlsSocket, type TlsOptionsBase } from './chrome-tls.js';
import { serverLookup } from './server-lookup.js';
import { applyCongestion } from './congestion.js';

/** Chrome's cipher suites, in Chrome's order (TLS 1.3 first), in OpenSSL's names. */
export const BROWSER_CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
  'ECDHE-RSA-AES128-SHA',
  'ECDHE-RSA-AES256-SHA',
  'AES128-GCM-SHA256',
  'AES256-GCM-SHA384',
  'AES128-SHA',
  'AES256-SHA',
].join(':');

/** Chrome's signature algorithms, in order. */
export const BROWSER_SIGALGS = [
  'ecdsa_secp256r1_sha256',
  'rsa_pss_rsae_sha256',
  'rsa_pkcs1_sha256',
  'ecdsa_secp384r1_sha384',
  'rsa_pss_rsae_sha384',
  'rsa_pkcs1_sha384',
  'rsa_pss_rsae_sha512',
  'rsa_pkcs1_sha512',
].join(':');

/** Chrome's groups (without its post-quantum hybrid, which Node 20's OpenSSL lacks). */
export const BROWSER_GROUPS = 'X25519:P-256:P-384';

export interface TlsClientOptions extends TlsOptionsBase {
  /**
   * Offer a session to resume when one is kept (default true). false: a full handshake, after
   * which OpenSSL-based servers (Node's, trojan-gfw's) send their session tickets; on a resumed
   * TLS 1.3 connection Node's server sends none (trojan-dialer.ts `split`).
   */
  resume?: boolean;
  /**
   * The TLS client: 'chrome' (Ladder's own, Chrome's ClientHello; chrome-tls.ts) or 'node' (this
   * file's OpenSSL path). Absent: 'node' here; the key parsers default keys to 'chrome'.
   */
  fp?: TlsFingerprint;
}

export function normalizeFingerprint(fp: string): string {
  const hex = fp.replace(/[:\s]/g, '').toUpperCase();
  if (!/^[0-9A-F]{64}$/.test(hex))
    throw new ConfigError('ERR_CONFIG', 'a certificate pin must be 64 hex digits of SHA-256');
  return hex.match(/../g)!.join(':');
}

/**
 * One SecureContext per trust setting, made once: tls.connect would otherwise build a new one (the
 * whole CA store included) for every connection, a millisecond or more of each handshake.
 */
const contexts = new Map<string, SecureContext>();
function contextFor(ca: string | undefined): SecureContext {
  const k = ca ?? '';
  let c = contexts.get(k);
  if (!c) {
    c = createSecureContext({
      ciphers: BROWSER_CIPHERS,
      sigalgs: BROWSER_SIGALGS,
      ecdhCurve: BROWSER_GROUPS,
      minVersion: 'TLSv1.2',
      // Chrome does not offer encrypt_then_mac; OpenSSL by default does.
      secureOptions: constants.SSL_OP_NO_ENCRYPT_THEN_MAC,
      ...(ca ? { ca } : {}),
    });
    contexts.set(k, c);
  }
  return c;
}

/**
 * TLS sessions to resume, by server and name: a browser resumes (TLS 1.3 PSK from a ticket), which
 * saves the certificate exchange and its signature on every later connection. Bounded.
 */
const sessions = new Map<string, Buffer>();
const MAX_SESSIONS = 256;
function remember(key: string, session: Buffer): void {
  sessions.delete(key);
  sessions.set(key, session);
  if (sessions.size > MAX_SESSIONS) sessions.delete(sessions.keys().next().value!);
}

/** Opens TLS to `server` with the client `o.fp` names; resolves after the handshake, checked. */
export function tlsConnect(
  server: Target,
  o: TlsClientOptions,
  signal?: AbortSignal,
): Promise<TLSSocket | ChromeTlsSocket> {
  if (o.fp === 'chrome')
    return chromeTlsConnect(
      server,
      {
        sni: o.sni,
        ...(o.ca ? { ca: o.ca } : {}),
        ...(o.pinSha256 ? { pinSha256: normalizeFingerprint(o.pinSha256) } : {}),
        ...(o.alpn ? { alpn: o.alpn } : {}),
        ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}),
        ...(o.socket ? { socket: o.socket } : {}),
        ...(o.resume === false ? { sessions: null } : {}),
        ...(o.lendReads ? { lendReads: true } : {}),
      },
      signal,
    );
  return nodeTlsConnect(server, o, signal);
}

/** Node's TLS (fp=node). */
export function nodeTlsConnect(
  server: Target,
  o: TlsClientOptions,
  signal?: AbortSignal,
): Promise<TLSSocket> {
  const pin = o.pinSha256 ? normalizeFingerprint(o.pinSha256) : null;
  const what = `TLS server ${formatHostPort(server.host, server.port)}`;
  // allowHalfOpen (documented for tls.connect, missing from @types/node): the reply can still flow after we end.
  // requestOCSP is a tls.connect option (Node docs, tls.TLSSocket options) that @types/node lists
  // only on TLSSocket's constructor.
  // Sessions are kept per server, name, ALPN offer and trust, so that one is resumed only where
  // it was made and checked.
  const sessionKey = `${server.host}\u0000${server.port}\u0000${o.sni}\u0000${(o.alpn ?? []).join(',')}\u0000${pin ?? ''}\u0000${o.ca ?? ''}`;
  const session = o.resume === false ? undefined : sessions.get(sessionKey);
  const options: ConnectionOptions & { allowHalfOpen: boolean; requestOCSP: boolean } = {
    allowHalfOpen: true,
    host: server.host,
    port: server.port,
    // the server's name resolved once a minute, not once per connection (server-lookup.ts)
    ...(o.socket ? {} : { lookup: serverLookup }),
    // RFC 6066 §3: no IP literals in SNI (a browser sends none for an address); the name is then
    // checked against the address.
    ...(isIP(o.sni) ? {} : { servername: o.sni }),
    ALPNProtocols: o.alpn ?? ['h2', 'http/1.1'],
    // Chrome's suites, signature algorithms and groups, TLS 1.2 at least, no encrypt_then_mac.
    secureContext: contextFor(o.ca),
    // Chrome asks for a stapled OCSP answer (status_request); OpenSSL by default does not.
    requestOCSP: true,
    ...(session ? { session } : {}),
    ...(o.socket ? { socket: o.socket } : {}),
    ...(pin
      ? {
          // A pinned certificate is trusted by its fingerprint alone (self-signed servers).
          rejectUnauthorized: false,
        }
      : {}),
  };
  return new Promise((resolve, reject) => {
    const socket = connect(options);
    socket.setNoDelay(true);
    if (!o.socket) socket.once('connect', () => applyCongestion(socket));
    // TLS 1.3 tickets arrive after the handshake; the newest is the one to resume with next time,
    // kept only from a connection whose certificate passed the checks.
    let checked = false;
    socket.on('session', (s: Buffer) => {
      if (checked) remember(sessionKey, s);
    });
    const timeoutMs = o.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const clear = deadline(
      timeoutMs,
      signal,
      () =>
        fail(
          new DialError('ERR_SERVER_UNREACHABLE', `${what}: no handshake within ${timeoutMs} ms`),
        ),
      () => fail(new DialError('ERR_ABORTED', `${what}: aborted`)),
    );
    function fail(err: DialError): void {
      clear();
      socket.destroy();
      reject(err);
    }
    socket.once('error', (err) => {
      const d = dialErrorFromSystem(err, what);
      const tlsProblem = /certificate|self.signed|CERT_|handshake|alert/i.test(err.message);
      fail(
        new DialError(
          tlsProblem ? 'ERR_DIAL' : 'ERR_SERVER_UNREACHABLE',
          tlsProblem ? `${what}: TLS failed: ${err.message}` : d.message,
          { cause: err },
        ),
      );
    });
    socket.once('secureConnect', () => {
      // A resumed session authenticates the server through the secret of the session that passed
      // the pin before (the certificate is not sent again; browsers do not re-check it either).
      if (pin && !socket.isSessionReused()) {
        const peer = socket.getPeerX509Certificate();
        if (!peer || new X509Certificate(peer.raw).fingerprint256 !== pin) {
          fail(
            new DialError('ERR_TLS_CERT', `${what}: the certificate does not match the key's pin`),
          );
          return;
        }
      }
      checked = true;
      clear();
      socket.removeAllListeners('error');
      resolve(socket);
    });
  });
}
