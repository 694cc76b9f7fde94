/**
 * A fresh Chrome ClientHello for one connection: new X25519 keys for the hybrid and plain shares, a
 * new ML-KEM-768 key pair (@noble/post-quantum), and fresh random bytes for everything Chrome
 * randomizes; with a session to resume, its ticket in pre_shared_key and the binder computed over
 * the hello (RFC 8446 §4.2.11.2), or a TLS 1.2 session: its ticket in session_ticket (RFC 5077)
 * beside a random session id, or, for a session the server keeps by id, that id as the hello's
 * session id (BoringSSL's do_start_connect). Returns the record and the private parts the handshake
 * needs.
 * @module
 */
import { randomBytes, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import {
  CHROME_HELLO_ENTROPY,
  encodeChromeClientHello,
  pskBinderStart,
} from '../codec/tls-client-hello.js';
import { hashOf, pskBinder, type Tls13Suite } from '../crypto/tls13-keys.js';
import { mlkem768Keygen, x25519Pair } from './key-shares.js';

export interface ChromeHelloKeys {
  x25519: KeyObject;
  hybridX25519: KeyObject;
  mlkemSecret: Uint8Array;
}

/** A ticket to offer: its identity, obfuscated age, PSK and the suite the PSK belongs to. */
export interface ChromeHelloResume {
  identity: Uint8Array;
  obfuscatedAge: number;
  psk: Uint8Array;
  suite: Pick<Tls13Suite, 'hash' | 'hashLength'>;
}

/** Fills the zero binder at the end of `record` with the binder over `prefix` + the partial hello. */
function bind(record: Buffer, r: ChromeHelloResume, prefix: readonly Uint8Array[]): Buffer {
  const n = r.suite.hashLength;
  const partial = record.subarray(5, pskBinderStart(record, n));
  const binder = pskBinder(r.suite, r.psk, hashOf(r.suite.hash, ...prefix, partial));
  binder.copy(record, record.length - n);
  return record;
}

export function chromeClientHello(
  serverName: string | undefined,
  alpn: readonly string[],
  resume?: ChromeHelloResume,
  /** A TLS 1.2 session's ticket, offered in session_ticket (RFC 5077 §3.2). */
  ticket12?: Uint8Array,
  /**
   * A TLS 1.2 session's id (1 to 32 bytes), sent as legacy_session_id to resume it (RFC 5246
   * §7.4.1.2) instead of the random 32 bytes of TLS 1.3 middlebox compatibility (RFC 8446 §D.4).
   */
  sessionId12?: Uint8Array,
): {
  record: Buffer;
  keys: ChromeHelloKeys;
  sessionId: Buffer;
  /**
   * The second hello after a HelloRetryRequest: same randomness, one share for `group`; a PSK's
   * binder then covers `prefix` (message_hash(ClientHello1) and the HelloRetryRequest) too.
   */
  retry(
    group: number,
    share: Uint8Array,
    cookie?: Uint8Array,
    prefix?: readonly Uint8Array[],
  ): Buffer;
} {
  const plain = x25519Pair();
  const hybrid = x25519Pair();
  const kem = mlkem768Keygen();
  const sessionId =
    sessionId12 && sessionId12.length > 0 ? Buffer.from(sessionId12) : randomBytes(32);
  const psk = resume
    ? {
        identity: resume.identity,
        obfuscatedAge: resume.obfuscatedAge,
        binderLength: resume.suite.hashLength,
      }
    : undefined;
  const input = {
    ...(serverName !== undefined && !isIP(serverName) ? { serverName } : {}),
    alpn,
    random: randomBytes(32),
    sessionId,
    mlkemPublic: kem.publicKey,
    hybridX25519Public: hybrid.pub,
    x25519Public: plain.pub,
    entropy: randomBytes(CHROME_HELLO_ENTROPY),
    ...(psk ? { psk } : {}),
    ...(ticket12 ? { ticket12 } : {}),
  };
  const first = encodeChromeClientHello(input);
  return {
    record: resume ? bind(first, resume, []) : first,
    retry: (group, share, cookie, prefix = []) => {
      const r = encodeChromeClientHello({
        ...input,
        retry: { group, share, ...(cookie ? { cookie } : {}) },
      });
      return resume ? bind(r, resume, prefix) : r;
    },
    keys: { x25519: plain.priv, hybridX25519: hybrid.priv, mlkemSecret: kem.secretKey },
    sessionId,
  };
}
