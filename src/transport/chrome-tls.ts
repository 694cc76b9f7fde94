/**
 * Ladder's own TLS 1.3 client (RFC 8446), whose first flight is Chrome's (chrome-hello.ts): the
 * `fp=chrome` path of the Trojan and WebSocket-over-TLS dialers. A Duplex that the dialers use as
 * they use a TLSSocket (write, cork, end, 'session' when a ticket arrives).
 *
 * Handshake: ClientHello (X25519MLKEM768 + X25519 shares) → ServerHello or one HelloRetryRequest →
 * EncryptedExtensions → [CertificateRequest] → Certificate or CompressedCertificate (brotli, RFC
 * 8879) → CertificateVerify → Finished; then the client's ChangeCipherSpec (middlebox
 * compatibility), [EncryptedExtensions (ALPS)], [an empty Certificate], Finished. The server is authenticated by the key's pin
 * (SHA-256 of the leaf, no other check, as the Node path) or by a chain to the system's roots (or
 * the key's CA) plus the host name. Every "MUST abort" the client meets sends the alert RFC 8446
 * names and fails with a LadderError: ERR_TLS_PROTOCOL (malformed or out-of-order), ERR_TLS_CERT
 * (authentication), ERR_TLS_ALERT (the server's alert). Bounded: records ≤ 2^14 + 256 bytes,
 * handshake messages ≤ {@link MAX_HANDSHAKE_MESSAGE}, ≤ {@link MAX_CHAIN} certificates, a
 * compressed certificate decompressed to at most its declared size (itself capped).
 *
 * A server that chooses TLS 1.2 gets Chrome's TLS 1.2 (RFC 5246): ServerHello → Certificate →
 * [CertificateStatus] → ServerKeyExchange (ECDHE, signed) → [CertificateRequest] → ServerHelloDone;
 * the client's [empty Certificate], ClientKeyExchange, ChangeCipherSpec and Finished in one write;
 * then [NewSessionTicket], the server's ChangeCipherSpec and Finished. ECDHE + AEAD suites only,
 * the extended master secret required (RFC 7627), renegotiation refused (RFC 5746). False Start
 * as BoringSSL allows it (can_false_start: TLS 1.2, ECDHE, AEAD, ALPN negotiated; a full
 * handshake): the connection opens once the client's Finished is written, so the first data leaves
 * without waiting a round trip for the server's Finished; that Finished is still checked before
 * any data from the server is passed on, and a bad one fails the connection (RFC 7918).
 *
 * Resumption (chrome-sessions.ts): tickets become sessions kept per server and trust; the next
 * connection offers a TLS 1.3 one (psk_dhe_ke) once, or a TLS 1.2 one until the server refuses
 * it: by its ticket (RFC 5077 session_ticket) or, when the server issued only a session id, by
 * that id in the hello; a server that accepts skips the certificate.
 *
 * ML-DSA (offered as Chrome offers it): Node 20's OpenSSL cannot read ML-DSA keys, so the
 * certificate's key is taken from its DER (codec/x509.ts) and @noble/post-quantum verifies the
 * CertificateVerify and, in a chain, ML-DSA certificate signatures (crypto/ml-dsa.ts).
 *
 * Reads: its own TCP connection reads into recycled memory (stream/recycled-reads.ts); each read's
 * records are opened out of it into one plaintext batch, passed on as one 'data' chunk before the
 * read's handler returns. With `lendReads` that chunk is lent (core/lent-read.ts) and its memory
 * reused by the next read unless held; without it each chunk is a copy of its own.
 *
 * ALPS (draft-vvv-tls-alps), as Chromium: a server that negotiates it for h2 gets the client's
 * EncryptedExtensions with empty settings, packed with the client's Finished into one record.
 * @module
 */
import {
  X509Certificate,
  constants,
  createHmac,
  timingSafeEqual,
  verify as verifySignature,
  type KeyObject,
} from 'node:crypto';
import { isIP, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { rootCertificates } from 'node:tls';
import { brotliDecompressSync } from 'node:zlib';
import { CodecError, DialError, LadderError, type ErrorCode } from '../errors.js';
import { HOLD, lendsChunks } from '../core/lent-read.js';
import { ByteQueue } from '../codec/ss-stream.js';
import {
  CHROME_CIPHERS,
  CHROME_GROUPS,
  CHROME_SIGALGS,
  EXT,
  GROUP,
} from '../codec/tls-client-hello.js';
import { TlsReader, TlsWriter } from '../codec/tls-wire.js';
import { decodeCertificateParts, type CertificateParts } from '../codec/x509.js';
import { mlDsaByOid, mlDsaByScheme, mlDsaVerify } from '../crypto/ml-dsa.js';
import {
  RecordProtection,
  TLS13_SUITES,
  deriveSecret,
  earlySecrets,
  expandLabel,
  hashOf,
  hkdfExtract,
  type Tls13Suite,
} from '../crypto/tls13-keys.js';
import {
  TLS12_SUITES,
  Tls12RecordProtection,
  extendedMasterSecret,
  finishedData12,
  keyBlock12,
  type Tls12Suite,
} from '../crypto/tls12-keys.js';
import { ecdhShare, x25519Mlkem768Shared, x25519Pair, x25519Shared } from '../crypto/tls-kex.js';
import { chromeClientHello, type ChromeHelloResume } from './chrome-hello.js';
import {
  chromeSessions,
  type ChromeSession,
  type ChromeSession12,
  type ChromeSessionCache,
} from './chrome-sessions.js';
import {
  POISON_BYTE,
  READ_SIZE,
  connectRecycling,
  lentReadsPoisoned,
} from '../stream/recycled-reads.js';
import { applyCongestion } from './congestion.js';
import { serverLookup } from './server-lookup.js';
import type { Target } from './types.js';

/** The largest handshake message accepted (a certificate chain of a few ordinary certificates fits). */
export const MAX_HANDSHAKE_MESSAGE = 128 * 1024;
/** The most certificates a server's chain may have. */
export const MAX_CHAIN = 10;
const MAX_PLAINTEXT = 16384;
const MAX_CIPHERTEXT = 16384 + 256;

/**
 * Room of one plaintext batch: the records of one recycled socket read, plus the record that
 * began in the read before it (stream/recycled-reads.ts READ_SIZE).
 */
const PLAIN_BATCH = READ_SIZE + 5 + MAX_CIPHERTEXT;

/**
 * A batch buffer no connection uses now, reused by the next batch: each socket read's records are
 * decrypted into one batch and passed on within the read's handler, so one buffer serves every
 * connection whose batches are not kept. A batch that is kept (buffered, or held by its consumer)
 * is not returned here; a batch taken while another is being filled gets memory of its own.
 */
let spareBatch: Buffer | null = null;

function takeBatch(): Buffer {
  const b = spareBatch ?? Buffer.allocUnsafeSlow(PLAIN_BATCH); // written before it is read
  spareBatch = null;
  return b;
}

/** Alert descriptions (RFC 8446 §6). */
export const ALERT = {
  close_notify: 0,
  unexpected_message: 10,
  bad_record_mac: 20,
  record_overflow: 22,
  handshake_failure: 40,
  bad_certificate: 42,
  unsupported_certificate: 43,
  certificate_expired: 45,
  certificate_unknown: 46,
  illegal_parameter: 47,
  unknown_ca: 48,
  decode_error: 50,
  decrypt_error: 51,
  protocol_version: 70,
  internal_error: 80,
  user_canceled: 90,
  missing_extension: 109,
  no_renegotiation: 100,
  unsupported_extension: 110,
  no_application_protocol: 120,
} as const;
type AlertName = keyof typeof ALERT;
const alertName = (d: number): string =>
  (Object.entries(ALERT).find(([, v]) => v === d)?.[0] ?? `alert ${d}`) as string;

const HS = {
  hello_request: 0,
  server_hello: 2,
  new_session_ticket: 4,
  encrypted_extensions: 8,
  certificate: 11,
  server_key_exchange: 12,
  certificate_request: 13,
  server_hello_done: 14,
  certificate_verify: 15,
  client_key_exchange: 16,
  finished: 20,
  certificate_status: 22,
  key_update: 24,
  compressed_certificate: 25,
  message_hash: 254,
} as const;

/** SHA-256("HelloRetryRequest"): the ServerHello random of a HelloRetryRequest (§4.1.3). */
const HRR_RANDOM = Buffer.from(
  'cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c',
  'hex',
);
/** §4.1.3: the last 8 bytes of a TLS 1.2 (…01) or 1.1 (…00) server's random when it could do 1.3. */
const DOWNGRADE = Buffer.from('444f574e47524400', 'hex');

/** A handshake failure with the alert it sends. */
class Abort extends LadderError {
  readonly alert: AlertName;
  constructor(alert: AlertName, code: ErrorCode, message: string) {
    super(code, message);
    this.alert = alert;
  }
}

/** A message that breaks the protocol (malformed, unexpected, never offered): ERR_TLS_PROTOCOL. */
const protocolError = (alert: AlertName, message: string): Abort =>
  new Abort(alert, 'ERR_TLS_PROTOCOL', message);

/** A server that fails authentication (certificate, signature): ERR_TLS_CERT. */
const certError = (alert: AlertName, message: string): Abort =>
  new Abort(alert, 'ERR_TLS_CERT', message);

/** What both TLS clients take (tls.ts adds the choice between them and `resume`). */
export interface TlsOptionsBase {
  /**
   * Server Name Indication, and the name verified in the certificate unless pinned (none is sent
   * for an IP literal, RFC 6066 §3; the address is verified then).
   */
  sni: string;
  /** PEM CA(s) to trust instead of the system roots (the lab CA, tests). */
  ca?: string;
  /** SHA-256 of the leaf certificate (hex, any case, colons optional): trust by pin alone. */
  pinSha256?: string;
  /** ALPN offer (default h2, http/1.1, as a browser). */
  alpn?: string[];
  timeoutMs?: number;
  /** An open connection to run TLS over (default: a new TCP connection); `ladder probe` measures its own. */
  socket?: Duplex;
  /**
   * fp=chrome: lend the decrypted 'data' chunks (core/lent-read.ts): each is valid during its
   * handler only, unless the handler holds it. Only for consumers that honour holdChunks, such as
   * `relay()`; without it every chunk is memory of its own. fp=node ignores it.
   */
  lendReads?: boolean;
}

export interface ChromeTlsOptions extends TlsOptionsBase {
  /** The time certificates are checked at and tickets aged by (tests). */
  now?: () => Date;
  /** Where TLS sessions are kept and taken (default: the process's); null: no resumption. */
  sessions?: ChromeSessionCache | null;
}

let systemRoots: Map<string, X509Certificate[]> | null = null;
/** Trust anchors indexed by subject, so an issuer is found without trying every root. */
function anchorsFrom(pems: readonly string[]): Map<string, X509Certificate[]> {
  const m = new Map<string, X509Certificate[]>();
  for (const pem of pems) {
    try {
      const c = new X509Certificate(pem);
      m.set(c.subject, [...(m.get(c.subject) ?? []), c]);
    } catch {
      // a root Node ships that this OpenSSL cannot parse is no anchor
    }
  }
  return m;
}
const caCache = new Map<string, Map<string, X509Certificate[]>>();
function anchorsFor(ca: string | undefined): Map<string, X509Certificate[]> {
  if (!ca) return (systemRoots ??= anchorsFrom(rootCertificates));
  let m = caCache.get(ca);
  if (!m) {
    m = anchorsFrom(
      ca.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [],
    );
    caCache.set(ca, m);
  }
  return m;
}

/** The certificate's public key as node:crypto reads it, or null (an ML-DSA key on Node 20). */
function keyOf(c: X509Certificate): KeyObject | null {
  try {
    return c.publicKey;
  } catch {
    return null;
  }
}

function partsOf(c: X509Certificate): CertificateParts | null {
  try {
    return decodeCertificateParts(c.raw);
  } catch {
    return null;
  }
}

/**
 * Whether `c` was issued by `issuer`: OpenSSL's check and signature for the keys it reads; for an
 * ML-DSA issuer, the names and the pure ML-DSA signature over the TBSCertificate (RFC 9881: the
 * same ML-DSA algorithm inside and outside it, parameters absent).
 */
export function issuedBy(c: X509Certificate, issuer: X509Certificate): boolean {
  const key = keyOf(issuer);
  if (key) return c.checkIssued(issuer) && c.verify(key);
  if (c.issuer !== issuer.subject) return false;
  const ip = partsOf(issuer);
  const cp = partsOf(c);
  const p = ip && mlDsaByOid(ip.keyAlgorithm.oid);
  if (!ip || !cp || !p || ip.keyAlgorithm.params) return false;
  const alg = cp.signatureAlgorithm;
  const inner = cp.tbsSignatureAlgorithm;
  if (alg.oid !== p.oid || alg.params || inner.oid !== p.oid || inner.params) return false;
  return mlDsaVerify(p, ip.publicKey, cp.tbs, cp.signature);
}

/**
 * Checks a server chain (leaf first): every certificate valid at `now`, each signed by the next
 * (which must be a CA), ending at a trust anchor; the leaf names `host`. Throws an Abort with the
 * alert to send. Not checked: name constraints, key usage, revocation.
 */
export function verifyChain(
  chain: readonly X509Certificate[],
  host: string,
  anchors: Map<string, X509Certificate[]>,
  now: Date,
): void {
  const leaf = chain[0]!;
  const named = isIP(host) ? leaf.checkIP(host) : leaf.checkHost(host, { subject: 'default' });
  if (named === undefined)
    throw certError(
      'bad_certificate',
      `the certificate is not for ${host} (it names ${leaf.subjectAltName ?? leaf.subject})`,
    );
  for (let i = 0; i < chain.length; i++) {
    const c = chain[i]!;
    if (now < new Date(c.validFrom) || now > new Date(c.validTo))
      throw certError(
        'certificate_expired',
        `certificate ${i} of the chain is valid from ${c.validFrom} to ${c.validTo}, not now`,
      );
    for (const a of anchors.get(c.issuer) ?? []) if (a.raw.equals(c.raw) || issuedBy(c, a)) return;
    const next = chain[i + 1];
    if (!next) break;
    if (!next.ca || !issuedBy(c, next))
      throw certError(
        'bad_certificate',
        `certificate ${i} of the chain is not signed by certificate ${i + 1}`,
      );
  }
  throw certError(
    'unknown_ca',
    "the chain does not lead to a trusted root (the system's, or the key's ca)",
  );
}

/**
 * Verifies a TLS 1.3 CertificateVerify signature (§4.4.3) with the leaf's key; false on mismatch,
 * a scheme that does not fit the key, or a key neither node:crypto nor the ML-DSA check reads.
 */
export function verifyCertificateVerify(
  leaf: X509Certificate,
  scheme: number,
  content: Uint8Array,
  signature: Uint8Array,
): boolean {
  const mldsa = mlDsaByScheme(scheme);
  if (mldsa) {
    // draft-ietf-tls-mldsa: the leaf's key is that ML-DSA level's; pure ML-DSA, empty context.
    const parts = partsOf(leaf);
    if (!parts || parts.keyAlgorithm.oid !== mldsa.oid || parts.keyAlgorithm.params) return false;
    return mlDsaVerify(mldsa, parts.publicKey, content, signature);
  }
  const key = keyOf(leaf);
  return key !== null && verifyWithKey(key, scheme, content, signature);
}

/** The classical schemes of {@link verifyCertificateVerify} (and RSA-PSS in TLS 1.2). */
function verifyWithKey(
  key: KeyObject,
  scheme: number,
  content: Uint8Array,
  signature: Uint8Array,
): boolean {
  const details = key.asymmetricKeyDetails ?? {};
  try {
    switch (scheme) {
      case 0x0403:
      case 0x0503: {
        const curve = scheme === 0x0403 ? 'prime256v1' : 'secp384r1';
        if (key.asymmetricKeyType !== 'ec' || details.namedCurve !== curve) return false;
        return verifySignature(
          scheme === 0x0403 ? 'sha256' : 'sha384',
          content,
          { key, dsaEncoding: 'der' },
          signature,
        );
      }
      case 0x0804:
      case 0x0805:
      case 0x0806: {
        if (key.asymmetricKeyType !== 'rsa') return false;
        const [hash, saltLength] = (
          { 0x0804: ['sha256', 32], 0x0805: ['sha384', 48], 0x0806: ['sha512', 64] } as const
        )[scheme];
        return verifySignature(
          hash,
          content,
          { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength },
          signature,
        );
      }
      case 0x0807:
        if (key.asymmetricKeyType !== 'ed25519') return false;
        return verifySignature(null, content, key, signature);
      default:
        return false;
    }
  } catch {
    return false;
  }
}

/**
 * Verifies a TLS 1.2 ServerKeyExchange signature (RFC 5246 §7.4.3, RFC 8422 §5.4) over
 * client_random || server_random || params with the leaf's key. The suite fixes the key type (ECDSA
 * or RSA); unlike TLS 1.3 an ECDSA scheme does not bind the curve, and RSASSA-PKCS1-v1_5 is allowed.
 */
export function verifyServerKeyExchange(
  key: KeyObject,
  auth: 'ecdsa' | 'rsa',
  scheme: number,
  content: Uint8Array,
  signature: Uint8Array,
): boolean {
  const hash = ({ 0x04: 'sha256', 0x05: 'sha384', 0x06: 'sha512' } as const)[
    (scheme >> 8) as 4 | 5 | 6
  ];
  const sig = scheme & 0xff;
  try {
    if (auth === 'ecdsa') {
      if (key.asymmetricKeyType !== 'ec' || sig !== 0x03 || !hash) return false;
      return verifySignature(hash, content, { key, dsaEncoding: 'der' }, signature);
    }
    if (key.asymmetricKeyType !== 'rsa') return false;
    if (sig === 0x01 && hash)
      return verifySignature(
        hash,
        content,
        { key, padding: constants.RSA_PKCS1_PADDING },
        signature,
      );
    if (scheme >= 0x0804 && scheme <= 0x0806) return verifyWithKey(key, scheme, content, signature);
    return false;
  } catch {
    return false;
  }
}

type State =
  | 'server_hello'
  | 'encrypted_extensions'
  | 'certificate'
  | 'certificate_verify'
  | 'finished'
  | 'certificate12'
  | 'server_key_exchange'
  | 'server_hello_done'
  | 'change_cipher_spec'
  | 'finished12'
  | 'open';

/** What a TLS 1.2 handshake carries between its messages. */
interface Tls12State {
  suite: Tls12Suite;
  clientRandom: Uint8Array;
  serverRandom: Uint8Array;
  /** The ServerHello announced a NewSessionTicket (RFC 5077) / a CertificateStatus (RFC 6066). */
  ticket: boolean;
  status: boolean;
  master: Buffer | null;
  serverKey: Buffer | null;
  serverIv: Buffer | null;
  /** The client's write key and IV of an abbreviated handshake, used after the server's Finished. */
  clientKey?: Buffer;
  clientIv?: Buffer;
  /** The pre-master secret, once the ServerKeyExchange is checked, and the client's public share. */
  preMaster: Buffer | null;
  clientShare: Uint8Array | null;
  certificateRequested: boolean;
  /** The offered session was taken (abbreviated handshake, RFC 5246 §7.3). */
  resumed: boolean;
  /** The session id the server gave in its ServerHello (kept with a new session). */
  sessionId: Buffer;
  /** A NewSessionTicket's ticket and lifetime hint, kept once the server's Finished verifies. */
  newTicket: { ticket: Buffer; lifetimeS: number } | null;
}

/** A ServerHello's fields: TLS 1.3 (RFC 8446 §4.1.3) and 1.2 (RFC 5246 §7.4.1.3) share them. */
interface ServerHelloFields {
  legacy: number;
  random: Uint8Array;
  echo: Uint8Array;
  cipher: number;
  compression: number;
  /** Extension bodies by type; a repeated type is refused. */
  exts: Map<number, Uint8Array>;
}

function parseServerHello(r: TlsReader): ServerHelloFields {
  const legacy = r.u16('legacy_version');
  const random = r.bytes(32, 'random');
  const echo = r.vec(1, 'legacy_session_id_echo', 0, 32).rest();
  const cipher = r.u16('cipher_suite');
  const compression = r.u8('legacy_compression_method');
  const exts = new Map<number, Uint8Array>();
  if (r.left) {
    const xs = r.vec(2, 'extensions');
    while (xs.left) {
      const t = xs.u16();
      const d = xs.vec(2, `extension ${t}`).rest();
      if (exts.has(t))
        throw protocolError('illegal_parameter', `ServerHello repeats extension ${t}`);
      exts.set(t, d);
    }
  }
  r.done();
  return { legacy, random, echo, cipher, compression, exts };
}

/** Both versions: the null compression method only. */
function rejectCompression(sh: ServerHelloFields): void {
  if (sh.compression !== 0)
    throw protocolError('illegal_parameter', 'the server chose a compression method');
}

/** The TLS 1.2 suite chosen: one fp=chrome speaks, or a clear refusal of one it only offers. */
function suite12(cipher: number): Tls12Suite {
  const suite = TLS12_SUITES.get(cipher);
  if (suite) return suite;
  if (CHROME_CIPHERS.includes(cipher) && !TLS13_SUITES.has(cipher))
    throw protocolError(
      'handshake_failure',
      `the server chose TLS 1.2 cipher suite 0x${cipher.toString(16)} (CBC or RSA key transport), which fp=chrome does not speak; use fp=node for this server`,
    );
  throw protocolError(
    'illegal_parameter',
    `the server chose cipher suite 0x${cipher.toString(16)}, never offered for TLS 1.2`,
  );
}

/** The record protection of one direction, TLS 1.3 or 1.2: both seal and open whole records. */
type Protection = RecordProtection | Tls12RecordProtection;

export class ChromeTlsSocket extends Duplex {
  alpnProtocol: string | false = false;
  readonly encrypted = true;
  #sock: Duplex;
  readonly #o: ChromeTlsOptions;
  readonly #what: string;
  readonly #in = new ByteQueue();
  readonly #hs = new ByteQueue();
  #state: State = 'server_hello';
  #hello: ReturnType<typeof chromeClientHello>;
  #ch1: Buffer; // ClientHello handshake message (no record header)
  #transcript: Buffer[] = [];
  #suite: Tls13Suite | null = null;
  #retried: { group: number; cipher: number; finish: (share: Uint8Array) => Buffer | null } | null =
    null;
  #read: Protection | null = null;
  #write: Protection | null = null;
  #v12: Tls12State | null = null;
  #hsSecret: Buffer | null = null;
  #cHs: Buffer | null = null;
  #sHs: Buffer | null = null;
  #cAp: Buffer | null = null;
  #sAp: Buffer | null = null;
  #chain: X509Certificate[] = [];
  #certRequestContext: Uint8Array | null = null;
  #alps = false;
  #sentCcs = false;
  #pending: { data: Buffer; cb: (err?: Error | null) => void }[] = [];
  /**
   * Application data may be written: the handshake is over, or in TLS 1.2 False Start the client's
   * Finished is out and the server's is still due.
   */
  #canWrite = false;
  #onOpen: ((err?: Error) => void) | null = null;
  #resMaster: Buffer | null = null;
  #closedByAlert = false;
  readonly #sessions: ChromeSessionCache | null;
  readonly #sessionKey: string;
  /** The session offered in the hello, and whether the server took it. */
  #offered: ChromeSession | undefined;
  /** The TLS 1.2 session offered by ticket or id (when no TLS 1.3 one is). */
  #offered12: ChromeSession12 | undefined;
  #resumed = false;
  /** Whether the socket below lends its reads (then no byte of a read is kept past its handler). */
  readonly #lentIn: boolean;
  /** Whether this socket lends its 'data' chunks ({@link ChromeTlsOptions.lendReads}). */
  readonly #lend: boolean;
  /** The plaintext batch of the socket read being handled, and the bytes of it taken so far. */
  #plain: Buffer | null = null;
  #plainAt = 0;
  /** The consumer held the lent chunk it was handed (core/lent-read.ts). */
  #held = false;

  /** Bytes read from the connection under TLS (records and all), as a net.Socket counts them. */
  get bytesRead(): number {
    return (this.#sock as { bytesRead?: number }).bytesRead ?? 0;
  }

  /** Bytes written to the connection under TLS. */
  get bytesWritten(): number {
    return (this.#sock as { bytesWritten?: number }).bytesWritten ?? 0;
  }

  constructor(o: ChromeTlsOptions, sock: Duplex, what: string) {
    super({ allowHalfOpen: true });
    this.#o = o;
    this.#sock = sock;
    this.#what = what;
    const alpn = o.alpn ?? ['h2', 'http/1.1'];
    // Sessions are kept per server, name, ALPN offer and trust: one is resumed only where it was
    // made and checked.
    this.#sessions = o.sessions === undefined ? chromeSessions : o.sessions;
    this.#sessionKey = [what, o.sni, alpn.join(','), o.pinSha256 ?? '', o.ca ?? ''].join('\0');
    const nowMs = this.#nowMs();
    this.#offered = this.#sessions?.take(this.#sessionKey, nowMs);
    let resume: ChromeHelloResume | undefined;
    const offeredSuite = this.#offered && TLS13_SUITES.get(this.#offered.suite);
    if (this.#offered && offeredSuite)
      resume = {
        identity: this.#offered.ticket,
        // §4.2.11.1: the age in milliseconds plus ticket_age_add, modulo 2^32.
        obfuscatedAge: (nowMs - this.#offered.receivedMs + this.#offered.ageAdd) >>> 0,
        psk: this.#offered.psk,
        suite: offeredSuite,
      };
    else this.#offered = undefined;
    if (!resume) this.#offered12 = this.#sessions?.get12(this.#sessionKey, nowMs);
    // BoringSSL offers a session by its ticket when it has one, else by the server's session id.
    const o12 = this.#offered12;
    this.#hello = chromeClientHello(
      o.sni,
      alpn,
      resume,
      o12 && o12.ticket.length > 0 ? o12.ticket : undefined,
      o12 && o12.ticket.length === 0 ? o12.sessionId : undefined,
    );
    this.#ch1 = this.#hello.record.subarray(5);
    this.#lentIn = lendsChunks(sock);
    this.#lend = o.lendReads === true;
    if (this.#lend)
      (this as unknown as { [HOLD]: () => void })[HOLD] = () => {
        this.#held = true;
      };
    sock.on('data', (d: Buffer) => this.#onData(d));
    sock.on('end', () => this.#onEnd());
    sock.on('error', (e: Error) =>
      this.#fail(
        new DialError('ERR_SERVER_UNREACHABLE', `${this.#what}: ${e.message}`, { cause: e }),
      ),
    );
    sock.on('close', () => {
      if (!this.destroyed && this.#state !== 'open')
        this.#fail(
          new DialError(
            'ERR_TLS_PROTOCOL',
            `${this.#what}: the server closed during the TLS handshake`,
          ),
        );
    });
  }

  /** Sends the ClientHello; calls `done` once the handshake is over or failed. */
  start(done: (err?: Error) => void): void {
    this.#onOpen = done;
    this.#sock.write(this.#hello.record);
  }

  setNoDelay(v = true): this {
    (this.#sock as Socket).setNoDelay?.(v);
    return this;
  }

  /** As net.Socket's: whether the connection below keeps the process alive (pools unref idle ones). */
  ref(): this {
    (this.#sock as Partial<Socket>).ref?.();
    return this;
  }

  unref(): this {
    (this.#sock as Partial<Socket>).unref?.();
    return this;
  }

  /** The server's leaf certificate (after the handshake). */
  getPeerX509Certificate(): X509Certificate | undefined {
    return this.#chain[0];
  }

  isSessionReused(): boolean {
    return this.#resumed;
  }

  #nowMs(): number {
    return (this.#o.now?.() ?? new Date()).getTime();
  }

  getProtocol(): string {
    return this.#v12 ? 'TLSv1.2' : 'TLSv1.3';
  }

  // --- reading -------------------------------------------------------------------------------

  /**
   * One socket read: its complete records are opened, their application data decrypted side by
   * side into one batch (no copy of a record that spans two reads: the read's headroom takes its
   * first part), and the batch is passed on as one chunk before the handler returns. What is left
   * is one unfinished record, moved out of the read (ByteQueue.detach) when the read is lent.
   */
  #onData(d: Buffer): void {
    if (this.destroyed) return;
    this.#in.push(d, this.#lentIn);
    try {
      this.#records();
    } catch (err) {
      this.#abort(err);
    }
    this.#flushPlain();
    if (this.#lentIn) this.#in.detach();
  }

  /** Opens every complete record queued. */
  #records(): void {
    while (this.#in.length >= 5 && !this.destroyed) {
      const h = this.#in.peek(5);
      const type = h[0]!;
      const len = (h[3]! << 8) | h[4]!;
      if (len > (this.#read ? MAX_CIPHERTEXT : MAX_PLAINTEXT))
        throw protocolError('record_overflow', `a record of ${len} bytes (more than TLS allows)`);
      if (h[1] !== 3) throw protocolError('decode_error', 'not a TLS record (bad version)');
      if (this.#in.length < 5 + len) return;
      const rec = this.#in.take(5 + len);
      this.#record(type, rec.subarray(0, 5), rec.subarray(5));
    }
  }

  /** The batch to decrypt a record body of `n` bytes into, at {@link #plainAt}. */
  #plainRoom(n: number): Buffer {
    if (this.#plain !== null && this.#plain.length - this.#plainAt < n) this.#flushPlain();
    if (this.#plain === null) {
      this.#plain = takeBatch();
      this.#plainAt = 0;
    }
    return this.#plain;
  }

  /**
   * Passes the batch's application data on as one chunk: lent (valid in the 'data' handler only,
   * unless held) with `lendReads`, else a copy of its own. A lent chunk that stays buffered in
   * this readable is kept; one that was handled and not held goes back to be reused.
   */
  #flushPlain(): void {
    const b = this.#plain;
    const n = this.#plainAt;
    this.#plain = null;
    this.#plainAt = 0;
    if (b === null) return;
    if (n === 0 || this.destroyed) {
      spareBatch = b;
      return;
    }
    if (!this.#lend) {
      const own = Buffer.allocUnsafe(n); // every byte is copied in
      b.copy(own, 0, 0, n);
      spareBatch = b;
      if (!this.push(own)) this.#sock.pause();
      return;
    }
    const chunk = b.subarray(0, n);
    this.#held = false;
    if (!this.push(chunk)) this.#sock.pause();
    // Still in our readable buffer (nobody reading yet, or paused): it outlives this read.
    if (this.#held || this.readableLength > 0) return;
    if (lentReadsPoisoned()) chunk.fill(POISON_BYTE); // handled and not held: nobody may read it
    spareBatch = b;
  }

  #record(type: number, header: Buffer, body: Buffer): void {
    if (this.#v12) return this.#record12(type, header, body);
    if (type === 20) {
      // §5: a ChangeCipherSpec (0x01) may arrive during the handshake only, unencrypted.
      if (this.#state === 'open' || body.length !== 1 || body[0] !== 1)
        throw protocolError('unexpected_message', 'an unexpected ChangeCipherSpec');
      return;
    }
    if (!this.#read) {
      if (type === 21) return this.#alert(body);
      if (type !== 22)
        throw protocolError('unexpected_message', `an unencrypted record of type ${type}`);
      return this.#handshakeBytes(body);
    }
    if (type !== 23)
      throw protocolError(
        'unexpected_message',
        `an unencrypted record of type ${type} after the keys changed`,
      );
    const plain = this.#read.open(header, body, this.#plainRoom(body.length), this.#plainAt);
    if (!plain) throw protocolError('bad_record_mac', 'a record failed its authentication tag');
    let end = plain.length - 1;
    while (end >= 0 && plain[end] === 0) end--;
    if (end < 0) throw protocolError('unexpected_message', 'a record with no content type');
    if (end > MAX_PLAINTEXT)
      throw protocolError('record_overflow', 'a record over 2^14 bytes of plaintext');
    this.#content(plain[end]!, plain.subarray(0, end));
  }

  /**
   * TLS 1.2 records (RFC 5246 §6.2): the ChangeCipherSpec turns the server's protection on, once,
   * where the handshake expects it; after it every record is protected and typed by its header.
   */
  #record12(type: number, header: Buffer, body: Buffer): void {
    if (type === 20) {
      if (this.#state !== 'change_cipher_spec' || body.length !== 1 || body[0] !== 1)
        throw protocolError('unexpected_message', 'an unexpected ChangeCipherSpec');
      this.#keyChangeBoundary();
      const v = this.#v12!;
      this.#read = new Tls12RecordProtection(v.suite, v.serverKey!, v.serverIv!, false);
      this.#state = 'finished12';
      return;
    }
    if (type !== 21 && type !== 22 && type !== 23)
      throw protocolError('unexpected_message', `a record of content type ${type}`);
    if (!this.#read) {
      if (type === 23)
        throw protocolError('unexpected_message', 'application data before the handshake finished');
      return this.#content(type, body);
    }
    const plain = this.#read.open(header, body, this.#plainRoom(body.length), this.#plainAt);
    if (!plain) throw protocolError('bad_record_mac', 'a record failed its authentication tag');
    if (plain.length > MAX_PLAINTEXT)
      throw protocolError('record_overflow', 'a record over 2^14 bytes of plaintext');
    this.#content(type, plain);
  }

  #content(inner: number, content: Buffer): void {
    if (inner === 21) return this.#alert(content);
    if (inner === 22) return this.#handshakeBytes(content);
    if (inner === 23) {
      if (this.#state !== 'open')
        throw protocolError('unexpected_message', 'application data before the handshake finished');
      if (this.#hs.length)
        throw protocolError('unexpected_message', 'application data inside a handshake message');
      // Protected records are opened at the batch's end (#plainRoom): taking the bytes keeps them.
      this.#plainAt += content.length;
      return;
    }
    throw protocolError('unexpected_message', `a record of content type ${inner}`);
  }

  #alert(body: Uint8Array): void {
    if (body.length !== 2) throw protocolError('decode_error', 'a malformed alert');
    const d = body[1]!;
    if (d === ALERT.close_notify) {
      this.#closedByAlert = true;
      if (this.#state !== 'open')
        throw new Abort(
          'unexpected_message',
          'ERR_TLS_ALERT',
          'the server closed (close_notify) during the handshake',
        );
      this.#flushPlain(); // the data before the alert first
      this.push(null);
      return;
    }
    if (d === ALERT.user_canceled) return;
    const err = new DialError(
      'ERR_TLS_ALERT',
      `${this.#what}: the server sent TLS alert ${alertName(d)}`,
    );
    this.#closedByAlert = true;
    this.#fail(err);
  }

  #handshakeBytes(b: Uint8Array): void {
    if (b.length === 0) throw protocolError('unexpected_message', 'an empty handshake record');
    this.#hs.push(Buffer.from(b));
    while (this.#hs.length >= 4 && !this.destroyed) {
      const h = this.#hs.peek(4);
      const len = (h[1]! << 16) | (h[2]! << 8) | h[3]!;
      if (len > MAX_HANDSHAKE_MESSAGE)
        throw protocolError(
          'decode_error',
          `a handshake message of ${len} bytes (at most ${MAX_HANDSHAKE_MESSAGE})`,
        );
      if (this.#hs.length < 4 + len) return;
      const msg = this.#hs.take(4 + len);
      this.#message(msg[0]!, msg.subarray(4), msg);
    }
  }

  /** §5.1: handshake messages must not span a key change. */
  #keyChangeBoundary(): void {
    if (this.#hs.length)
      throw protocolError('unexpected_message', 'a handshake message spans a key change');
  }

  #expect(type: number, want: number, what: string): void {
    if (type !== want)
      throw protocolError('unexpected_message', `handshake message ${type} where ${what} was due`);
  }

  #th(): Buffer {
    return hashOf(this.#suite!.hash, ...this.#transcript);
  }

  #message(type: number, body: Buffer, raw: Buffer): void {
    const r = new TlsReader(body, `handshake message ${type}`);
    try {
      this.#dispatch(type, r, body, raw);
    } catch (err) {
      if (err instanceof CodecError) throw protocolError('decode_error', err.message);
      throw err;
    }
  }

  /** The message is in the transcript; the handshake moves on to `next` (if given). */
  #took(raw: Buffer, next?: State): void {
    this.#transcript.push(raw);
    if (next) this.#state = next;
  }

  /** Hands one handshake message to the step the state expects (TLS 1.3 first, then 1.2). */
  #dispatch(type: number, r: TlsReader, body: Buffer, raw: Buffer): void {
    switch (this.#state) {
      case 'server_hello':
        this.#expect(type, HS.server_hello, 'ServerHello');
        return this.#serverHello(r, raw);
      case 'encrypted_extensions':
        this.#expect(type, HS.encrypted_extensions, 'EncryptedExtensions');
        this.#encryptedExtensions(r);
        // §2.2: a resumed handshake authenticates through the PSK; no Certificate follows.
        return this.#took(raw, this.#resumed ? 'finished' : 'certificate');
      case 'certificate':
        return this.#certificateStep(type, r, raw);
      case 'certificate_verify':
        this.#expect(type, HS.certificate_verify, 'CertificateVerify');
        this.#certificateVerify(r);
        return this.#took(raw, 'finished');
      case 'finished':
        this.#expect(type, HS.finished, 'Finished');
        return this.#finished(r, raw);
      case 'certificate12':
        this.#expect(type, HS.certificate, 'Certificate');
        this.#certificate12(r);
        return this.#took(raw, 'server_key_exchange');
      case 'server_key_exchange':
        return this.#serverKeyExchangeStep(type, r, body, raw);
      case 'server_hello_done':
        return this.#serverHelloDoneStep(type, r, raw);
      case 'change_cipher_spec':
        return this.#sessionTicket12(type, r, raw);
      case 'finished12':
        this.#expect(type, HS.finished, 'Finished');
        return this.#finished12(r, raw);
      case 'open':
        return this.#afterHandshake(type, r);
    }
  }

  /** TLS 1.3: an optional CertificateRequest, then the (possibly compressed) Certificate. */
  #certificateStep(type: number, r: TlsReader, raw: Buffer): void {
    if (type === HS.certificate_request && this.#certRequestContext === null) {
      this.#certRequestContext = Buffer.from(r.vec(1, 'certificate_request_context').rest());
      r.vec(2, 'extensions');
      r.done();
      return this.#took(raw);
    }
    if (type === HS.compressed_certificate) {
      this.#certificate(new TlsReader(this.#decompress(r), 'Certificate'));
    } else {
      this.#expect(type, HS.certificate, 'Certificate');
      this.#certificate(r);
    }
    this.#took(raw, 'certificate_verify');
  }

  /** TLS 1.2: an announced CertificateStatus, then the ServerKeyExchange. */
  #serverKeyExchangeStep(type: number, r: TlsReader, body: Buffer, raw: Buffer): void {
    if (type === HS.certificate_status && this.#v12!.status) {
      // RFC 6066 §8: status_type ocsp(1), then the OCSP response (not evaluated, as Chrome's
      // default of no hard-fail revocation checking).
      this.#v12!.status = false;
      if (r.u8('status_type') !== 1)
        throw protocolError('decode_error', 'a CertificateStatus not OCSP');
      r.vec(3, 'OCSPResponse', 1);
      r.done();
      return this.#took(raw);
    }
    this.#expect(type, HS.server_key_exchange, 'ServerKeyExchange');
    this.#serverKeyExchange(r, body);
    this.#took(raw, 'server_hello_done');
  }

  /** TLS 1.2: an optional CertificateRequest, then ServerHelloDone and the client's flight. */
  #serverHelloDoneStep(type: number, r: TlsReader, raw: Buffer): void {
    if (type === HS.certificate_request && !this.#v12!.certificateRequested) {
      // RFC 5246 §7.4.4: the client answers with an empty Certificate.
      r.vec(1, 'certificate_types', 1);
      r.vec(2, 'supported_signature_algorithms', 2);
      r.vec(2, 'certificate_authorities');
      r.done();
      this.#v12!.certificateRequested = true;
      return this.#took(raw);
    }
    this.#expect(type, HS.server_hello_done, 'ServerHelloDone');
    r.done();
    this.#took(raw);
    this.#clientFlight12();
  }

  /** TLS 1.2, before the server's ChangeCipherSpec: only an announced NewSessionTicket. */
  #sessionTicket12(type: number, r: TlsReader, raw: Buffer): void {
    const v = this.#v12!;
    if (type !== HS.new_session_ticket || !v.ticket)
      throw protocolError(
        'unexpected_message',
        `handshake message ${type} where ChangeCipherSpec was due`,
      );
    // RFC 5077 §3.3: lifetime hint, then the ticket (empty: none); kept once the server's
    // Finished verifies.
    v.ticket = false;
    const lifetimeS = r.u32('ticket_lifetime_hint');
    const ticket = Buffer.from(r.vec(2, 'ticket').rest());
    r.done();
    v.newTicket = { ticket, lifetimeS };
    this.#took(raw);
  }

  /** Post-handshake messages: TLS 1.3 tickets and key updates; TLS 1.2 none. */
  #afterHandshake(type: number, r: TlsReader): void {
    if (this.#v12) {
      // Chrome never renegotiates (RFC 5746 is for servers that ask; it declines).
      if (type === HS.hello_request)
        throw protocolError(
          'no_renegotiation',
          'the server asked to renegotiate, which is refused',
        );
    } else {
      if (type === HS.new_session_ticket) return this.#ticket(r);
      if (type === HS.key_update) return this.#keyUpdate(r);
    }
    throw protocolError('unexpected_message', `handshake message ${type} after the handshake`);
  }

  #serverHello(r: TlsReader, raw: Buffer): void {
    const sh = parseServerHello(r);
    if (!sh.exts.has(EXT.SUPPORTED_VERSIONS)) return this.#serverHello12(sh, raw);
    const suite = this.#checkServerHello13(sh);
    const isHrr = Buffer.from(sh.random).equals(HRR_RANDOM);
    this.#checkExtensions13(sh.exts, isHrr);
    const ks = sh.exts.get(EXT.KEY_SHARE);
    if (!ks) throw protocolError('missing_extension', 'the ServerHello has no key_share');
    if (isHrr) return this.#helloRetry(suite, ks, sh.exts.get(EXT.COOKIE), raw);
    if (this.#retried && this.#retried.cipher !== sh.cipher)
      throw protocolError(
        'illegal_parameter',
        'the cipher suite changed after the HelloRetryRequest',
      );
    const shared = this.#keyShare13(ks);
    const pskExt = sh.exts.get(EXT.PRE_SHARED_KEY);
    if (pskExt) this.#acceptPsk(pskExt, suite);
    if (!this.#retried) this.#suite = suite;
    this.#startTranscript(raw);
    this.#handshakeKeys(suite, shared);
  }

  /** §4.1.3, §4.2.1: version 1.3 as offered, our session id echoed, a TLS 1.3 suite offered. */
  #checkServerHello13(sh: ServerHelloFields): Tls13Suite {
    const sv = sh.exts.get(EXT.SUPPORTED_VERSIONS)!;
    if (sv.length !== 2 || ((sv[0]! << 8) | sv[1]!) !== 0x0304)
      throw protocolError('illegal_parameter', 'the server selected a version it was not offered');
    if (sh.legacy !== 0x0303)
      throw protocolError('illegal_parameter', 'ServerHello legacy_version is not 0x0303');
    if (!Buffer.from(sh.echo).equals(this.#hello.sessionId))
      throw protocolError('illegal_parameter', 'the server did not echo our session id');
    const suite = TLS13_SUITES.get(sh.cipher);
    if (!suite)
      throw protocolError(
        'illegal_parameter',
        `the server chose cipher suite 0x${sh.cipher.toString(16)}, never offered for TLS 1.3`,
      );
    rejectCompression(sh);
    return suite;
  }

  /** §4.2: a ServerHello (or HelloRetryRequest) carries only the extensions allowed there. */
  #checkExtensions13(exts: Map<number, Uint8Array>, isHrr: boolean): void {
    const allowed = isHrr
      ? [EXT.SUPPORTED_VERSIONS, EXT.KEY_SHARE, EXT.COOKIE]
      : this.#offered
        ? [EXT.SUPPORTED_VERSIONS, EXT.KEY_SHARE, EXT.PRE_SHARED_KEY]
        : [EXT.SUPPORTED_VERSIONS, EXT.KEY_SHARE];
    for (const t of exts.keys()) {
      if (!allowed.includes(t as never))
        throw protocolError(
          'unsupported_extension',
          `the server answered with extension ${t}, not offered or not allowed there`,
        );
    }
  }

  /** §4.2.8: the server's share, for a group a share was sent for; the shared secret. */
  #keyShare13(ks: Uint8Array): Buffer {
    const kr = new TlsReader(ks, 'key_share');
    const group = kr.u16('group');
    const share = kr.vec(2, 'key_exchange', 1).rest();
    kr.done();
    let shared: Buffer | null;
    if (this.#retried) {
      if (group !== this.#retried.group)
        throw protocolError(
          'illegal_parameter',
          'the server chose another group than it asked for',
        );
      shared = this.#retried.finish(share);
    } else if (group === GROUP.X25519MLKEM768) {
      shared = x25519Mlkem768Shared(
        this.#hello.keys.mlkemSecret,
        this.#hello.keys.hybridX25519,
        share,
      );
    } else if (group === GROUP.X25519) {
      shared = x25519Shared(this.#hello.keys.x25519, share);
    } else {
      throw protocolError(
        'illegal_parameter',
        `the server chose group 0x${group.toString(16)}, for which no share was sent`,
      );
    }
    if (!shared) throw protocolError('illegal_parameter', 'the server key share is malformed');
    return shared;
  }

  /** §4.2.11: the one identity offered, and a suite with the PSK's hash: a resumed session. */
  #acceptPsk(pskExt: Uint8Array, suite: Tls13Suite): void {
    const selected = new TlsReader(pskExt, 'pre_shared_key');
    const index = selected.u16('selected_identity');
    selected.done();
    if (index !== 0)
      throw protocolError(
        'illegal_parameter',
        `the server selected PSK identity ${index}, not offered`,
      );
    if (TLS13_SUITES.get(this.#offered!.suite)!.hash !== suite.hash)
      throw protocolError(
        'illegal_parameter',
        "the server resumed with a suite whose hash is not the PSK's",
      );
    this.#resumed = true;
    this.#chain = this.#offered!.chain;
    if (this.#offered!.alpn) this.alpnProtocol = this.#offered!.alpn;
  }

  /**
   * The transcript from the ServerHello on: after a HelloRetryRequest it already holds the
   * synthetic message_hash, the retry and the second ClientHello (§4.4.1).
   */
  #startTranscript(raw: Buffer): void {
    if (!this.#retried) this.#transcript = [this.#ch1];
    this.#transcript.push(raw);
  }

  /** §7.1: the handshake secrets; the records from here on are protected with them. */
  #handshakeKeys(suite: Tls13Suite, shared: Buffer): void {
    const { derived } = earlySecrets(suite, this.#resumed ? this.#offered!.psk : undefined);
    this.#hsSecret = hkdfExtract(suite.hash, derived, shared);
    const th = this.#th();
    this.#cHs = deriveSecret(suite.hash, this.#hsSecret, 'c hs traffic', th);
    this.#sHs = deriveSecret(suite.hash, this.#hsSecret, 's hs traffic', th);
    this.#keyChangeBoundary();
    this.#read = new RecordProtection(suite, this.#sHs);
    // Alerts from here on go under the client's handshake key (§6).
    this.#write = new RecordProtection(suite, this.#cHs);
    this.#state = 'encrypted_extensions';
  }

  #helloRetry(
    suite: Tls13Suite,
    ks: Uint8Array,
    cookie: Uint8Array | undefined,
    raw: Buffer,
  ): void {
    if (this.#retried) throw protocolError('unexpected_message', 'a second HelloRetryRequest');
    if (ks.length !== 2)
      throw protocolError('decode_error', 'a HelloRetryRequest key_share is one group');
    const group = (ks[0]! << 8) | ks[1]!;
    // §4.1.4: a group not offered, or one a share was sent for, MUST abort.
    if (!CHROME_GROUPS.includes(group) || group === GROUP.X25519 || group === GROUP.X25519MLKEM768)
      throw protocolError(
        'illegal_parameter',
        `the HelloRetryRequest asks for group 0x${group.toString(16)}`,
      );
    const c = cookie ? new TlsReader(cookie, 'cookie').vec(2, 'cookie', 1).rest() : undefined;
    const e = ecdhShare(group as 0x0017 | 0x0018);
    this.#suite = suite;
    this.#retried = { group, cipher: suite.id, finish: (peer) => e.shared(peer) };
    // §4.4.1: ClientHello1 is replaced by message_hash(Hash(ClientHello1)).
    const h1 = hashOf(suite.hash, this.#ch1);
    const synthetic = Buffer.concat([Uint8Array.of(HS.message_hash, 0, 0, h1.length), h1]);
    const ch2 = this.#hello.retry(group, e.pub, c, [synthetic, raw]);
    this.#transcript = [synthetic, raw, ch2.subarray(5)];
    this.#keyChangeBoundary();
    // Middlebox compatibility (§D.4): the client's ChangeCipherSpec precedes its second hello.
    this.#sentCcs = true;
    this.#sock.write(Buffer.concat([Buffer.from([20, 3, 3, 0, 1, 1]), ch2]));
  }

  #encryptedExtensions(r: TlsReader): void {
    const xs = r.vec(2, 'extensions');
    r.done();
    const seen = new Set<number>();
    const offered = this.#o.alpn ?? ['h2', 'http/1.1'];
    let alpn: string | null = null;
    while (xs.left) {
      const t = xs.u16();
      const d = xs.vec(2, `extension ${t}`);
      // BoringSSL (tls1_check_duplicate_extensions) answers a repeated extension here with
      // decode_error; RFC 8446 §4.2 forbids it without naming the alert.
      if (seen.has(t))
        throw protocolError('decode_error', `EncryptedExtensions repeats extension ${t}`);
      seen.add(t);
      switch (t) {
        case EXT.ALPN:
          alpn = this.#alpnFrom(d);
          break;
        case EXT.ALPS:
          // Offered only with h2 in the ALPN list (tls-client-hello.ts); the server's settings
          // (HTTP/2 frames) are not used: no HTTP/2 runs over this connection.
          if (!offered.includes('h2'))
            throw protocolError('unsupported_extension', 'ALPS without h2 offered');
          this.#alps = true;
          break;
        case EXT.SERVER_NAME:
        case EXT.SUPPORTED_GROUPS:
        case EXT.ECH: // retry_configs for a GREASE ECH: ignored (draft-ietf-tls-esni §6.2)
          break;
        default:
          if (
            [
              EXT.STATUS_REQUEST,
              EXT.SCT,
              EXT.EC_POINT_FORMATS,
              EXT.SIGNATURE_ALGORITHMS,
              EXT.KEY_SHARE,
              EXT.SUPPORTED_VERSIONS,
              EXT.PSK_KEY_EXCHANGE_MODES,
              EXT.COMPRESS_CERTIFICATE,
              EXT.SESSION_TICKET,
              EXT.EXTENDED_MASTER_SECRET,
              EXT.RENEGOTIATION_INFO,
              EXT.TRUST_ANCHORS,
            ].includes(t as never)
          )
            throw protocolError(
              'illegal_parameter',
              `extension ${t} does not belong in EncryptedExtensions`,
            );
          throw protocolError(
            'unsupported_extension',
            `the server answered with extension ${t}, never offered`,
          );
      }
    }
    // draft-vvv-tls-alps §4, as BoringSSL checks it (ssl_check_serverhello_tlsext): ALPS comes
    // with ALPN, for a protocol the client offered settings for (h2 only).
    if (this.#alps && alpn === null)
      throw protocolError('illegal_parameter', 'the server negotiated ALPS without ALPN');
    if (this.#alps && alpn !== 'h2')
      throw protocolError(
        'illegal_parameter',
        `the server negotiated ALPS for ${JSON.stringify(alpn)}, offered for h2 only`,
      );
  }

  /** RFC 7301 §3.1: one protocol, one of those offered; returned and kept. */
  #alpnFrom(d: TlsReader): string {
    const l = d.vec(2, 'protocol_name_list', 2);
    const p = Buffer.from(l.vec(1, 'protocol', 1).rest()).toString('latin1');
    l.done();
    d.done();
    if (!(this.#o.alpn ?? ['h2', 'http/1.1']).includes(p))
      throw protocolError(
        'illegal_parameter',
        `the server chose ALPN ${JSON.stringify(p)}, not offered`,
      );
    this.alpnProtocol = p;
    return p;
  }

  // --- TLS 1.2 (RFC 5246 with RFC 8422 ECDHE, RFC 7627, RFC 5746) --------------------------

  #serverHello12(sh: ServerHelloFields, raw: Buffer): void {
    this.#checkServerHello12(sh);
    const offered = this.#offered12;
    const resumed = this.#resumption12(sh, offered);
    const suite = suite12(sh.cipher);
    rejectCompression(sh);
    const v: Tls12State = {
      suite,
      clientRandom: this.#ch1.subarray(6, 38),
      serverRandom: Buffer.from(sh.random),
      ticket: false,
      status: false,
      master: null,
      serverKey: null,
      serverIv: null,
      preMaster: null,
      clientShare: null,
      certificateRequested: false,
      resumed,
      sessionId: Buffer.from(sh.echo),
      newTicket: null,
    };
    this.#extensions12(sh.exts, v);
    this.#v12 = v;
    this.#startTranscript(raw);
    if (!resumed) {
      this.#state = 'certificate12';
      return;
    }
    // Abbreviated handshake: the session's master secret and chain; the server's [ticket], CCS
    // and Finished come first, then the client's.
    this.#resumed = true;
    this.#chain = offered!.chain;
    v.master = offered!.master;
    const k = keyBlock12(suite, v.master, v.clientRandom, v.serverRandom);
    v.serverKey = k.serverKey;
    v.serverIv = k.serverIv;
    v.clientKey = k.clientKey;
    v.clientIv = k.clientIv;
    this.#state = 'change_cipher_spec';
  }

  /** A TLS 1.2 answer is taken only when nothing shows a downgrade or a broken retry. */
  #checkServerHello12(sh: ServerHelloFields): void {
    // RFC 8446 §4.1.3: a server that could do 1.3 marks a forced downgrade; the client MUST abort.
    const random = sh.random;
    if (Buffer.from(random.subarray(24, 31)).equals(DOWNGRADE.subarray(0, 7)) && random[31]! <= 1)
      throw protocolError(
        'illegal_parameter',
        'the ServerHello carries the TLS 1.3 downgrade sentinel: someone is forcing TLS 1.2',
      );
    if (sh.legacy !== 0x0303)
      throw protocolError(
        'protocol_version',
        'the server chose a TLS version older than 1.2, which Chrome refuses',
      );
    if (this.#retried)
      throw protocolError('illegal_parameter', 'a TLS 1.2 ServerHello after a HelloRetryRequest');
  }

  /**
   * RFC 5077 §3.4: the server takes the offered ticket by echoing the session id the hello sent;
   * a session not taken is dropped from the cache.
   */
  #resumption12(sh: ServerHelloFields, offered: ChromeSession12 | undefined): boolean {
    // RFC 5077 §3.4, RFC 5246 §7.4.1.3: the server takes the session (by ticket or by id) by
    // echoing the session id the hello sent; any other id starts a full handshake.
    const resumed = Buffer.from(sh.echo).equals(this.#hello.sessionId);
    // BoringSSL (crbug.com/796910): with no session offered the id was the TLS 1.3 compatibility
    // one, which no server can know.
    if (resumed && !offered)
      throw protocolError(
        'illegal_parameter',
        'the server resumed a TLS 1.2 session that was never offered',
      );
    // RFC 5246 §7.4.1.3: a resumed session keeps its cipher suite.
    if (resumed && sh.cipher !== offered!.suite)
      throw protocolError(
        'illegal_parameter',
        `the server resumed a TLS 1.2 session with cipher suite 0x${sh.cipher.toString(16)}, not the session's`,
      );
    if (offered && !resumed) this.#sessions?.drop12(this.#sessionKey);
    return resumed;
  }

  /** The TLS 1.2 ServerHello's extensions: each one offered, and the extended master secret. */
  #extensions12(exts: Map<number, Uint8Array>, v: Tls12State): void {
    for (const [t, d] of exts) {
      const x = new TlsReader(d, `extension ${t}`);
      switch (t) {
        case EXT.RENEGOTIATION_INFO:
          // RFC 5746 §3.4: an initial handshake's renegotiated_connection is empty.
          if (x.vec(1, 'renegotiated_connection').left !== 0 || x.left !== 0)
            throw protocolError(
              'handshake_failure',
              'renegotiation_info is not empty in an initial handshake',
            );
          break;
        case EXT.EXTENDED_MASTER_SECRET:
        case EXT.SERVER_NAME:
          x.done();
          break;
        case EXT.SESSION_TICKET:
          x.done();
          v.ticket = true;
          break;
        case EXT.STATUS_REQUEST:
          x.done();
          v.status = true;
          break;
        case EXT.SCT:
          break;
        case EXT.ALPN:
          this.#alpnFrom(x);
          break;
        case EXT.EC_POINT_FORMATS:
          // RFC 8422 §5.2: the server's list must include uncompressed (0).
          if (!x.vec(1, 'ec_point_format_list', 1).rest().includes(0))
            throw protocolError(
              'illegal_parameter',
              'the server does not accept uncompressed points',
            );
          x.done();
          break;
        default:
          throw protocolError(
            'unsupported_extension',
            `the TLS 1.2 server answered with extension ${t}, not offered or not allowed there`,
          );
      }
    }
    // RFC 7627 §5.3: a client may refuse a server without the extended master secret; Chrome does.
    if (!exts.has(EXT.EXTENDED_MASTER_SECRET))
      throw protocolError(
        'handshake_failure',
        'the TLS 1.2 server does not use the extended master secret (RFC 7627), which is required',
      );
  }

  #th12(): Buffer {
    return hashOf(this.#v12!.suite.hash, ...this.#transcript);
  }

  /** RFC 8422 §5.4: ECParameters (named_curve) and the point, signed with the leaf's key. */
  #serverKeyExchange(r: TlsReader, body: Buffer): void {
    const v = this.#v12!;
    const curveType = r.u8('curve_type');
    const group = r.u16('namedcurve');
    const point = r.vec(1, 'public', 1).rest();
    const scheme = r.u16('signature_algorithm');
    const sig = r.vec(2, 'signature', 1).rest();
    r.done();
    if (curveType !== 3) throw protocolError('illegal_parameter', 'ECParameters not a named curve');
    // Groups offered that TLS 1.2 can use: the hybrid is 1.3 only.
    if (group !== GROUP.X25519 && group !== GROUP.SECP256R1 && group !== GROUP.SECP384R1)
      throw protocolError(
        'illegal_parameter',
        `the server chose group 0x${group.toString(16)}, not offered for TLS 1.2`,
      );
    if (
      !CHROME_SIGALGS.includes(scheme) ||
      (scheme >= 0x0904 && scheme <= 0x0906) ||
      (v.suite.auth === 'ecdsa') !== ((scheme & 0xff) === 0x03)
    )
      throw protocolError(
        'illegal_parameter',
        `ServerKeyExchange signed with scheme 0x${scheme.toString(16)}, not allowed for this suite`,
      );
    // ServerECDHParams: curve_type, namedcurve, the point behind its 1-byte length.
    const params = body.subarray(0, 1 + 2 + 1 + point.length);
    const content = Buffer.concat([v.clientRandom, v.serverRandom, params]);
    const leafKey = keyOf(this.#chain[0]!);
    if (!leafKey || !verifyServerKeyExchange(leafKey, v.suite.auth, scheme, content, sig))
      throw certError(
        'decrypt_error',
        'the ServerKeyExchange signature does not verify with the certificate',
      );
    let shared: Buffer | null;
    if (group === GROUP.X25519) {
      const k = x25519Pair();
      shared = x25519Shared(k.priv, point);
      v.clientShare = k.pub;
    } else {
      const e = ecdhShare(group);
      shared = e.shared(point);
      v.clientShare = e.pub;
    }
    if (!shared) throw protocolError('illegal_parameter', 'the server key share is malformed');
    v.preMaster = shared;
  }

  /** [Certificate], ClientKeyExchange, ChangeCipherSpec, Finished: one write. */
  #clientFlight12(): void {
    const v = this.#v12!;
    const s = v.suite;
    const msgs: Buffer[] = [];
    if (v.certificateRequested)
      msgs.push(
        new TlsWriter()
          .u8(HS.certificate)
          .vec(3, (b) => b.vec(3, () => {}))
          .toBuffer(),
      );
    msgs.push(
      new TlsWriter()
        .u8(HS.client_key_exchange)
        .vec(3, (b) => b.vec(1, (p) => p.bytes(v.clientShare!)))
        .toBuffer(),
    );
    this.#transcript.push(...msgs);
    // RFC 7627 §3: the session hash covers every message through the ClientKeyExchange.
    v.master = extendedMasterSecret(s.hash, v.preMaster!, this.#th12());
    v.preMaster = null;
    const k = keyBlock12(s, v.master, v.clientRandom, v.serverRandom);
    v.serverKey = k.serverKey;
    v.serverIv = k.serverIv;
    const fin = new TlsWriter()
      .u8(HS.finished)
      .vec(3, (b) => b.bytes(finishedData12(s.hash, v.master!, true, this.#th12())))
      .toBuffer();
    this.#transcript.push(fin);
    // Each unencrypted message in a record of its own, as BoringSSL writes them (tls_add_message
    // packs messages together only under a cipher).
    const out: Buffer[] = msgs.map((m) =>
      Buffer.concat([Uint8Array.of(22, 3, 3, m.length >> 8, m.length & 0xff), m]),
    );
    out.push(Buffer.from([20, 3, 3, 0, 1, 1]));
    this.#write = new Tls12RecordProtection(s, k.clientKey, k.clientIv, true);
    out.push(this.#write.seal(fin, 22));
    this.#sock.write(Buffer.concat(out));
    this.#state = 'change_cipher_spec';
    // False Start (BoringSSL can_false_start, Chrome sets SSL_MODE_ENABLE_FALSE_START): every suite
    // here is ECDHE + AEAD, so ALPN decides; the flight above leaves in a write of its own, as
    // BoringSSL flushes it before it reports the handshake done.
    if (this.alpnProtocol !== false) this.#open();
  }

  /**
   * The connection takes application data: `out` (the client's last handshake records, if any) and
   * the data written meanwhile leave in one write, and the dial resolves.
   */
  #open(out: Buffer[] = []): void {
    this.#canWrite = true;
    const pending = this.#pending.splice(0);
    for (const p of pending) out.push(...this.#seal(p.data));
    if (out.length) this.#sock.write(Buffer.concat(out), (e) => pending.forEach((p) => p.cb(e)));
    const done = this.#onOpen;
    this.#onOpen = null;
    done?.();
  }

  #finished12(r: TlsReader, raw: Buffer): void {
    const v = this.#v12!;
    const s = v.suite;
    const got = r.bytes(12, 'verify_data');
    r.done();
    const want = finishedData12(s.hash, v.master!, false, this.#th12());
    if (!timingSafeEqual(got, want))
      throw protocolError('decrypt_error', 'the server Finished does not verify');
    const out: Buffer[] = [];
    if (v.resumed) {
      // RFC 5246 §7.3: in an abbreviated handshake the client's CCS and Finished come last.
      this.#transcript.push(raw);
      const fin = new TlsWriter()
        .u8(HS.finished)
        .vec(3, (b) => b.bytes(finishedData12(s.hash, v.master!, true, this.#th12())))
        .toBuffer();
      this.#write = new Tls12RecordProtection(s, v.clientKey!, v.clientIv!, true);
      out.push(Buffer.from([20, 3, 3, 0, 1, 1]), this.#write.seal(fin, 22));
    }
    // The session is kept once the server's Finished verifies: a full handshake's (by ticket, or by
    // the server's session id), or a resumed one the server gave a new ticket (BoringSSL keeps a
    // resumed session as it was otherwise).
    const ticket = v.newTicket?.ticket ?? Buffer.alloc(0);
    if (this.#sessions && (!v.resumed || ticket.length > 0)) {
      this.#sessions.add12(this.#sessionKey, {
        ticket,
        sessionId: v.resumed ? this.#offered12!.sessionId : v.sessionId,
        master: v.master!,
        suite: s.id,
        receivedMs: this.#nowMs(),
        lifetimeS: v.newTicket?.lifetimeS ?? 0,
        chain: this.#chain,
      });
    }
    if (ticket.length) this.emit('session', ticket);
    this.#state = 'open';
    this.#transcript = [];
    // With False Start the connection opened at the client's Finished, and `out` is empty.
    if (!this.#canWrite) this.#open(out);
  }

  /** RFC 8879: brotli only, the declared size capped, decompression bounded by it. */
  #decompress(r: TlsReader): Buffer {
    const algorithm = r.u16('algorithm');
    const size = r.u24('uncompressed_length');
    const data = r.vec(3, 'compressed_certificate_message', 1).rest();
    r.done();
    if (algorithm !== 2)
      throw certError(
        'bad_certificate',
        `certificate compressed with algorithm ${algorithm}, not offered`,
      );
    if (size > MAX_HANDSHAKE_MESSAGE)
      throw certError(
        'bad_certificate',
        `a compressed certificate of ${size} bytes declared (at most ${MAX_HANDSHAKE_MESSAGE})`,
      );
    let out: Buffer;
    try {
      out = brotliDecompressSync(data, { maxOutputLength: Math.max(1, size) });
    } catch {
      throw certError(
        'bad_certificate',
        'a compressed certificate that does not decompress to its declared size',
      );
    }
    if (out.length !== size)
      throw certError(
        'bad_certificate',
        'a compressed certificate whose size differs from the declared one',
      );
    return out;
  }

  #certificate(r: TlsReader): void {
    const ctx = r.vec(1, 'certificate_request_context');
    if (ctx.left)
      throw protocolError('illegal_parameter', 'a server Certificate with a request context');
    this.#chainFrom(r, true);
  }

  /**
   * The certificate_list of a Certificate, at most MAX_CHAIN long: TLS 1.3 entries carry
   * extensions (§4.4.2), TLS 1.2 ones do not (RFC 5246 §7.4.2).
   */
  #chainFrom(r: TlsReader, tls13: boolean): void {
    const list = r.vec(3, 'certificate_list');
    r.done();
    const ders: Uint8Array[] = [];
    while (list.left) {
      if (ders.length === MAX_CHAIN)
        throw certError(
          'bad_certificate',
          `a certificate chain of more than ${MAX_CHAIN} certificates`,
        );
      ders.push(list.vec(3, tls13 ? 'cert_data' : 'ASN.1Cert', 1).rest());
      if (tls13) list.vec(2, 'extensions');
    }
    this.#acceptChain(ders);
  }

  /** RFC 5246 §7.4.2: the TLS 1.2 Certificate, a list of certificates without extensions. */
  #certificate12(r: TlsReader): void {
    this.#chainFrom(r, false);
  }

  /** The same checks for both versions: the pin alone, or the chain to an anchor and the host name. */
  #acceptChain(ders: Uint8Array[]): void {
    if (ders.length === 0) throw certError('decode_error', 'the server sent no certificate');
    try {
      this.#chain = ders.map((d) => new X509Certificate(d));
    } catch {
      throw certError('bad_certificate', 'a certificate that does not parse');
    }
    const pin = this.#o.pinSha256;
    if (pin) {
      const want = Buffer.from(pin.replace(/[:\s]/g, '').toLowerCase(), 'hex');
      const got = hashOf('sha256', this.#chain[0]!.raw);
      if (want.length !== 32 || !timingSafeEqual(want, got))
        throw certError('bad_certificate', "the certificate does not match the key's pin");
      return;
    }
    verifyChain(this.#chain, this.#o.sni, anchorsFor(this.#o.ca), this.#o.now?.() ?? new Date());
  }

  #certificateVerify(r: TlsReader): void {
    const scheme = r.u16('algorithm');
    const sig = r.vec(2, 'signature', 1).rest();
    r.done();
    // §4.4.3: a scheme not offered, or RSASSA-PKCS1-v1_5 in TLS 1.3, MUST abort.
    if (!CHROME_SIGALGS.includes(scheme) || (scheme & 0xff) === 0x01)
      throw protocolError(
        'illegal_parameter',
        `CertificateVerify with scheme 0x${scheme.toString(16)}, not allowed`,
      );
    const content = Buffer.concat([
      Buffer.alloc(64, 0x20),
      Buffer.from('TLS 1.3, server CertificateVerify\0', 'latin1'),
      this.#th(),
    ]);
    if (!verifyCertificateVerify(this.#chain[0]!, scheme, content, sig))
      throw certError(
        'decrypt_error',
        'the CertificateVerify signature does not verify with the certificate',
      );
  }

  #verifyData(base: Buffer): Buffer {
    const s = this.#suite!;
    const key = expandLabel(s.hash, base, 'finished', new Uint8Array(0), s.hashLength);
    return createHmac(s.hash, key).update(this.#th()).digest();
  }

  #finished(r: TlsReader, raw: Buffer): void {
    const s = this.#suite!;
    const got = r.bytes(s.hashLength, 'verify_data');
    r.done();
    const want = this.#verifyData(this.#sHs!);
    if (!timingSafeEqual(got, want))
      throw protocolError('decrypt_error', 'the server Finished does not verify');
    this.#transcript.push(raw);
    const derived = deriveSecret(s.hash, this.#hsSecret!, 'derived', hashOf(s.hash));
    const master = hkdfExtract(s.hash, derived, Buffer.alloc(s.hashLength));
    const th = this.#th();
    this.#cAp = deriveSecret(s.hash, master, 'c ap traffic', th);
    this.#sAp = deriveSecret(s.hash, master, 's ap traffic', th);
    this.#keyChangeBoundary();
    this.#read = new RecordProtection(s, this.#sAp);
    const out: Buffer[] = [];
    if (!this.#sentCcs) out.push(Buffer.from([20, 3, 3, 0, 1, 1]));
    this.#sentCcs = true;
    // The client's flight: [EncryptedExtensions (ALPS)], [Certificate], Finished.
    const flight: Buffer[] = [];
    if (this.#alps) {
      // The client's ALPS settings for h2: empty, as Chromium's (HttpNetworkSession sets
      // application_settings[h2] to no data); the extension is still sent (draft-vvv-tls-alps §4).
      flight.push(
        new TlsWriter()
          .u8(HS.encrypted_extensions)
          .vec(3, (b) => b.vec(2, (x) => x.u16(EXT.ALPS).vec(2, () => {})))
          .toBuffer(),
      );
    }
    if (this.#certRequestContext !== null) {
      const ctx = this.#certRequestContext;
      flight.push(
        new TlsWriter()
          .u8(HS.certificate)
          .vec(3, (b) => b.vec(1, (c) => c.bytes(ctx)).vec(3, () => {}))
          .toBuffer(),
      );
    }
    this.#transcript.push(...flight);
    const fin = new TlsWriter()
      .u8(HS.finished)
      .vec(3, (b) => b.bytes(this.#verifyData(this.#cHs!)))
      .toBuffer();
    this.#transcript.push(fin);
    flight.push(fin);
    // Packed into as few records as fit, as BoringSSL packs encrypted handshake messages
    // (tls_add_message): one record for this flight.
    const packed = Buffer.concat(flight);
    for (let at = 0; at < packed.length; at += MAX_PLAINTEXT)
      out.push(this.#write!.seal(packed.subarray(at, at + MAX_PLAINTEXT), 22));
    this.#resMaster = deriveSecret(s.hash, master, 'res master', this.#th());
    this.#write = new RecordProtection(s, this.#cAp);
    this.#state = 'open';
    this.#transcript = [];
    // The client's Finished and any data written meanwhile leave together.
    this.#open(out);
  }

  /** §4.6.1: a ticket and its PSK, kept for one later connection to the same server. */
  #ticket(r: TlsReader): void {
    const lifetimeS = r.u32('ticket_lifetime');
    const ageAdd = r.u32('ticket_age_add');
    const nonce = r.vec(1, 'ticket_nonce').rest();
    const ticket = Buffer.from(r.vec(2, 'ticket', 1).rest());
    r.vec(2, 'extensions');
    r.done();
    if (!this.#resMaster) return;
    const s = this.#suite!;
    this.#sessions?.add(this.#sessionKey, {
      ticket,
      psk: expandLabel(s.hash, this.#resMaster, 'resumption', nonce, s.hashLength),
      suite: s.id,
      ageAdd,
      receivedMs: this.#nowMs(),
      lifetimeS,
      chain: this.#chain,
      alpn: this.alpnProtocol,
    });
    // Announced as Node's TLSSocket does.
    this.emit('session', ticket);
  }

  #keyUpdate(r: TlsReader): void {
    const requested = r.u8('request_update');
    r.done();
    if (requested > 1)
      throw protocolError('illegal_parameter', 'a KeyUpdate with a bad request_update');
    this.#keyChangeBoundary();
    const s = this.#suite!;
    this.#sAp = expandLabel(s.hash, this.#sAp!, 'traffic upd', new Uint8Array(0), s.hashLength);
    this.#read = new RecordProtection(s, this.#sAp);
    if (requested === 1) {
      this.#sock.write(this.#write!.seal(Uint8Array.of(HS.key_update, 0, 0, 1, 0), 22));
      this.#cAp = expandLabel(s.hash, this.#cAp!, 'traffic upd', new Uint8Array(0), s.hashLength);
      this.#write = new RecordProtection(s, this.#cAp);
    }
  }

  #onEnd(): void {
    if (this.#state !== 'open') {
      this.#fail(
        new DialError(
          'ERR_TLS_PROTOCOL',
          `${this.#what}: the server closed during the TLS handshake`,
        ),
      );
      return;
    }
    if (!this.#closedByAlert) this.push(null);
  }

  // --- failing -------------------------------------------------------------------------------

  #abort(err: unknown): void {
    if (this.destroyed) return;
    const a = err instanceof Abort ? err : protocolError('internal_error', (err as Error).message);
    try {
      const alert = Uint8Array.of(2, ALERT[a.alert]);
      this.#sock.write(
        this.#write
          ? this.#write.seal(alert, 21)
          : Buffer.concat([Buffer.from([21, 3, 3, 0, 2]), alert]),
      );
    } catch {
      // the alert is a courtesy; the connection ends either way
    }
    const code = a.code;
    const e =
      code === 'ERR_TLS_CERT' || code === 'ERR_TLS_ALERT' || code === 'ERR_TLS_PROTOCOL'
        ? code
        : 'ERR_TLS_PROTOCOL';
    this.#fail(
      new DialError(e, `${this.#what}: ${a.message} (sent alert ${a.alert})`, { cause: err }),
    );
  }

  #fail(err: Error): void {
    if (this.destroyed) return;
    const done = this.#onOpen;
    this.#onOpen = null;
    this.#sock.end();
    this.#sock.destroy();
    if (done) {
      this.destroy();
      done(err);
    } else this.destroy(err);
  }

  // --- writing -------------------------------------------------------------------------------

  /** Application data as records of up to 2^14 bytes, sealed side by side into one buffer. */
  #seal(data: Buffer): Buffer[] {
    const w = this.#write!;
    const records = Math.ceil(data.length / MAX_PLAINTEXT);
    const out = Buffer.allocUnsafe(data.length + records * w.overhead);
    let at = 0;
    for (let i = 0; i < records; i++) {
      const part = data.subarray(i * MAX_PLAINTEXT, (i + 1) * MAX_PLAINTEXT);
      at += w.seal(part, 23, out, at).length;
    }
    return [out];
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (!this.#canWrite) {
      this.#pending.push({ data: chunk, cb });
      return;
    }
    this.#sock.write(this.#seal(chunk)[0]!, cb);
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    const data = chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map((c) => c.chunk));
    this._write(data, 'latin1', cb); // the encoding of a Buffer chunk is not used
  }

  override _read(): void {
    this.#sock.resume();
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.#write && this.#canWrite)
      this.#sock.write(this.#write.seal(Uint8Array.of(1, ALERT.close_notify), 21));
    this.#sock.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    for (const p of this.#pending.splice(0)) p.cb(err ?? new Error('TLS connection closed'));
    this.#sock.destroy();
    cb(err);
  }
}

/** Opens `fp=chrome` TLS to `server`: resolves after the handshake, the server authenticated. */
export function chromeTlsConnect(
  server: Target,
  o: ChromeTlsOptions,
  signal?: AbortSignal,
): Promise<ChromeTlsSocket> {
  const what = `TLS server ${server.host}:${server.port}`;
  const timeoutMs = o.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    let tls: ChromeTlsSocket | null = null;
    let settled = false;
    const settle = (err?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (err) {
        tls?.destroy();
        sock.destroy();
        reject(err);
      } else resolve(tls!);
    };
    const timer = setTimeout(
      () =>
        settle(
          new DialError('ERR_SERVER_UNREACHABLE', `${what}: no handshake within ${timeoutMs} ms`),
        ),
      timeoutMs,
    );
    const onAbort = (): void => settle(new DialError('ERR_ABORTED', `${what}: aborted`));
    signal?.addEventListener('abort', onAbort, { once: true });
    const begin = (): void => {
      sock.off('error', early);
      try {
        tls = new ChromeTlsSocket(o, sock, what);
      } catch (err) {
        settle(err as Error);
        return;
      }
      tls.on('error', () => {}); // reported through settle during the handshake
      tls.start((err) => {
        if (!err) tls!.removeAllListeners('error');
        settle(err);
      });
    };
    const early = (err: Error): void =>
      settle(new DialError('ERR_SERVER_UNREACHABLE', `${what}: ${err.message}`, { cause: err }));
    let sock: Duplex;
    if (o.socket) {
      sock = o.socket;
      sock.on('error', early);
      begin();
    } else {
      // Reads into recycled memory: records are opened out of it within each read's handler.
      const s = connectRecycling({
        host: server.host,
        port: server.port,
        allowHalfOpen: true,
        // the server's name resolved once a minute, not once per connection (server-lookup.ts)
        lookup: serverLookup,
      });
      s.setNoDelay(true);
      sock = s;
      s.on('error', early);
      s.once('connect', () => {
        applyCongestion(s);
        begin();
      });
    }
  });
}
