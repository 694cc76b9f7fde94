/**
 * Minimal X.509 v3 certificate encoding (RFC 5280), signed with ECDSA P-256 or RSA and SHA-256:
 * enough for a server's self-signed certificate on first start and for the lab's own CA. Pure: the
 * keys, the serial and the validity start are parameters (src/server/certificates.ts makes them);
 * signatures come from node:crypto, and Node's X509Certificate parses the result in the tests.
 *
 * ```
 * Certificate  ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING }
 * TBSCertificate ::= SEQUENCE { [0] version(2), serialNumber, signature, issuer, validity,
 *                               subject, subjectPublicKeyInfo, [3] extensions }
 * ```
 * @module
 */
import { createHash, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import { CodecError } from '../errors.js';
import { ipv6ToBytes } from './socks-addr.js';

function len(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v >>= 8) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}
function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), len(body.length), body]);
}
const seq = (...c: Buffer[]): Buffer => tlv(0x30, ...c);
const set = (...c: Buffer[]): Buffer => tlv(0x31, ...c);
function oid(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number);
  const out: number[] = [40 * parts[0]! + parts[1]!];
  for (const p of parts.slice(2)) {
    const stack: number[] = [p & 0x7f];
    for (let v = p >>> 7; v > 0; v >>>= 7) stack.unshift(0x80 | (v & 0x7f));
    out.push(...stack);
  }
  return tlv(0x06, Buffer.from(out));
}
function integer(bytes: Buffer): Buffer {
  let b = bytes;
  while (b.length > 1 && b[0] === 0 && (b[1]! & 0x80) === 0) b = b.subarray(1);
  if (b[0]! & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
  return tlv(0x02, b);
}
function time(d: Date): Buffer {
  const iso = d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z'; // YYYYMMDDHHMMSSZ
  const y = d.getUTCFullYear();
  // RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.
  return y < 2050
    ? tlv(0x17, Buffer.from(iso.slice(2), 'ascii'))
    : tlv(0x18, Buffer.from(iso, 'ascii'));
}
const explicit = (n: number, c: Buffer): Buffer => tlv(0xa0 + n, c);
const ECDSA_SHA256 = seq(oid('1.2.840.10045.4.3.2'));
/** sha256WithRSAEncryption (RFC 4055 §5): parameters NULL. */
const RSA_SHA256 = seq(oid('1.2.840.113549.1.1.11'), tlv(0x05, Buffer.alloc(0)));
const bool = (v: boolean): Buffer => tlv(0x01, Buffer.from([v ? 0xff : 0]));
const octets = (c: Buffer): Buffer => tlv(0x04, c);
const bits = (c: Buffer): Buffer => tlv(0x03, Buffer.from([0]), c);

function name(commonName: string): Buffer {
  return seq(set(seq(oid('2.5.4.3'), tlv(0x0c, Buffer.from(commonName, 'utf8')))));
}

function san(names: readonly string[]): Buffer {
  const general = names.map((n) => {
    if (isIPv4(n)) return tlv(0x87, Buffer.from(n.split('.').map(Number)));
    if (isIPv6(n)) return tlv(0x87, Buffer.from(ipv6ToBytes(n)));
    return tlv(0x82, Buffer.from(n, 'ascii'));
  });
  return seq(oid('2.5.29.17'), octets(seq(...general)));
}

export interface IssuedCertificate {
  /** PEM certificate. */
  readonly cert: string;
  /** PEM PKCS#8 private key. */
  readonly key: string;
  readonly keyObject: KeyObject;
  /** SHA-256 fingerprint of the DER certificate, colon-separated upper-case hex (as Node prints it). */
  readonly fingerprint256: string;
}

export interface EncodeOptions {
  /** Subject common name. */
  commonName: string;
  /** DNS names and IP addresses for subjectAltName (leaf certificates). */
  altNames?: readonly string[];
  /** Make a CA certificate (basicConstraints CA:TRUE, keyCertSign). */
  isCA?: boolean;
  /** Sign with this issuer instead of self-signing. */
  issuer?: { cert: string; key: KeyObject };
  /** Validity start and length in days. */
  notBefore: Date;
  days: number;
  /**
   * Random bytes for the serial number. Default profile: the first 15 after a 0x01 byte. Snakeoil:
   * all 20 with the top bit cleared, as OpenSSL makes them.
   */
  serial: Buffer;
  /** The subject's key pair. */
  subjectKey: { publicKey: KeyObject; privateKey: KeyObject };
  /**
   * `snakeoil`: the extensions of Debian's ssl-cert snakeoil certificate (`openssl req -x509` with
   * /usr/share/ssl-cert/ssleay.cnf): basicConstraints CA:FALSE, subjectAltName, subjectKeyIdentifier,
   * nothing else.
   */
  profile?: 'default' | 'snakeoil';
}

/** Encodes and signs a certificate for `subjectKey`, signed with the issuer's key (or its own). */
export function encodeCertificate(o: EncodeOptions): IssuedCertificate {
  const { privateKey, publicKey } = o.subjectKey;
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const notBefore = o.notBefore;
  const notAfter = new Date(notBefore.getTime() + o.days * 86_400_000);
  const snakeoil = o.profile === 'snakeoil';
  const issuerName = o.issuer ? Buffer.from(new X509Certificate(o.issuer.cert).raw) : null;
  const extensions: Buffer[] = [];
  if (snakeoil) {
    extensions.push(seq(oid('2.5.29.19'), octets(seq())));
    if (o.altNames && o.altNames.length > 0) extensions.push(san(o.altNames));
    // RFC 5280 §4.2.1.2 method (1), OpenSSL's default: SHA-1 of the subjectPublicKey bits
    extensions.push(
      seq(
        oid('2.5.29.14'),
        octets(tlv(0x04, createHash('sha1').update(publicKeyBits(spki)).digest())),
      ),
    );
  } else if (o.isCA) {
    extensions.push(seq(oid('2.5.29.19'), bool(true), octets(seq(bool(true)))));
    extensions.push(seq(oid('2.5.29.15'), bool(true), octets(tlv(0x03, Buffer.from([1, 0x06]))))); // keyCertSign | cRLSign
  } else {
    extensions.push(seq(oid('2.5.29.19'), octets(seq())));
    extensions.push(seq(oid('2.5.29.15'), bool(true), octets(tlv(0x03, Buffer.from([7, 0x80]))))); // digitalSignature
    extensions.push(seq(oid('2.5.29.37'), octets(seq(oid('1.3.6.1.5.5.7.3.1'))))); // serverAuth
    if (o.altNames && o.altNames.length > 0) extensions.push(san(o.altNames));
  }
  const signer = o.issuer?.key ?? privateKey;
  const sigAlg = signer.asymmetricKeyType === 'rsa' ? RSA_SHA256 : ECDSA_SHA256;
  const tbs = seq(
    explicit(0, integer(Buffer.from([2]))),
    snakeoil
      ? integer(Buffer.concat([Buffer.from([o.serial[0]! & 0x7f]), o.serial.subarray(1, 20)]))
      : integer(Buffer.concat([Buffer.from([0x01]), o.serial.subarray(0, 15)])),
    sigAlg,
    issuerName ? subjectOf(issuerName) : name(o.commonName),
    seq(time(notBefore), time(notAfter)),
    name(o.commonName),
    spki,
    explicit(3, seq(...extensions)),
  );
  const signature = sign('sha256', tbs, { key: signer, dsaEncoding: 'der' });
  const der = seq(tbs, sigAlg, bits(signature));
  const cert = `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END CERTIFICATE-----\n`;
  const key = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  return {
    cert,
    key,
    keyObject: privateKey,
    fingerprint256: new X509Certificate(cert).fingerprint256,
  };
}

function readHeader(b: Buffer, p: number): { tag: number; start: number; end: number } {
  const tag = b[p]!;
  let l = b[p + 1]!;
  let q = p + 2;
  if (l & 0x80) {
    const n = l & 0x7f;
    l = 0;
    for (let i = 0; i < n; i++) l = (l << 8) | b[q + i]!;
    q += n;
  }
  return { tag, start: q, end: q + l };
}

/** The subjectPublicKey BIT STRING's bits (after the unused-bits byte) of a DER SPKI. */
function publicKeyBits(spki: Buffer): Buffer {
  const outer = readHeader(spki, 0);
  const alg = readHeader(spki, outer.start);
  const bitString = readHeader(spki, alg.end);
  return spki.subarray(bitString.start + 1, bitString.end);
}

/** Pulls the subject Name out of a DER certificate (to use as the issuer of the next one). */
function subjectOf(der: Buffer): Buffer {
  // Certificate → tbsCertificate → [version, serial, sigAlg, issuer, validity, subject, ...]
  const cert = readHeader(der, 0);
  const tbs = readHeader(der, cert.start);
  let p = tbs.start;
  const fields: { start: number; end: number; hdr: number }[] = [];
  while (p < tbs.end && fields.length < 6) {
    const h = readHeader(der, p);
    fields.push({ hdr: p, start: h.start, end: h.end });
    p = h.end;
  }
  const subject = fields[5]!;
  return der.subarray(subject.hdr, subject.end);
}

/** The largest certificate {@link decodeCertificateParts} reads (a handshake message's cap). */
export const MAX_CERTIFICATE_BYTES = 128 * 1024;

interface Der {
  tag: number;
  /** Offset of the whole TLV, of its contents, and the end of both. */
  at: number;
  start: number;
  end: number;
}

/** One DER TLV at `p`, within `limit`: single-byte tags, definite lengths of at most 3 bytes. */
function der(b: Uint8Array, p: number, limit: number, what: string): Der {
  const bad = (why: string): CodecError =>
    new CodecError('ERR_TLS_CERT', `a certificate whose ${what} is malformed (${why})`);
  if (p + 2 > limit) throw bad('truncated');
  const tag = b[p]!;
  if ((tag & 0x1f) === 0x1f) throw bad('multi-byte tag');
  let l = b[p + 1]!;
  let q = p + 2;
  if (l & 0x80) {
    const n = l & 0x7f;
    if (n === 0 || n > 3) throw bad('length form');
    if (q + n > limit) throw bad('truncated');
    l = 0;
    for (let i = 0; i < n; i++) l = l * 256 + b[q + i]!;
    q += n;
  }
  if (q + l > limit) throw bad('length past its end');
  return { tag, at: p, start: q, end: q + l };
}

function expectTag(d: Der, tag: number, what: string): Der {
  if (d.tag !== tag)
    throw new CodecError(
      'ERR_TLS_CERT',
      `a certificate whose ${what} has tag 0x${d.tag.toString(16)}, not 0x${tag.toString(16)}`,
    );
  return d;
}

function oidText(b: Uint8Array): string {
  if (b.length === 0 || b.length > 64)
    throw new CodecError('ERR_TLS_CERT', 'a certificate with a malformed object identifier');
  const parts = [Math.min(2, Math.floor(b[0]! / 40)), 0];
  parts[1] = b[0]! - 40 * parts[0]!;
  let v = 0;
  for (let i = 1; i < b.length; i++) {
    v = v * 128 + (b[i]! & 0x7f);
    if (!(b[i]! & 0x80)) {
      parts.push(v);
      v = 0;
    } else if (i === b.length - 1 || v > 2 ** 40)
      throw new CodecError('ERR_TLS_CERT', 'a certificate with a malformed object identifier');
  }
  return parts.join('.');
}

/** AlgorithmIdentifier ::= SEQUENCE { algorithm OID, parameters ANY OPTIONAL } */
function algorithm(b: Uint8Array, d: Der, what: string): { oid: string; params: boolean } {
  expectTag(d, 0x30, what);
  const o = expectTag(der(b, d.start, d.end, what), 0x06, what);
  return { oid: oidText(b.subarray(o.start, o.end)), params: o.end < d.end };
}

/** A BIT STRING's bits; only whole bytes (no unused bits), as keys and signatures are. */
function bitString(b: Uint8Array, d: Der, what: string): Uint8Array {
  expectTag(d, 0x03, what);
  if (d.end === d.start || b[d.start] !== 0)
    throw new CodecError('ERR_TLS_CERT', `a certificate whose ${what} has unused bits`);
  return b.subarray(d.start + 1, d.end);
}

/** What a signature check needs from a DER certificate, as views into it. */
export interface CertificateParts {
  /** The TBSCertificate, tag and length included: what the issuer signed. */
  tbs: Uint8Array;
  /** signatureAlgorithm (outside) and signature (inside the TBSCertificate): RFC 5280 §4.1.1.2 wants them equal. */
  signatureAlgorithm: { oid: string; params: boolean };
  tbsSignatureAlgorithm: { oid: string; params: boolean };
  signature: Uint8Array;
  /** subjectPublicKeyInfo's algorithm and key bits. */
  keyAlgorithm: { oid: string; params: boolean };
  publicKey: Uint8Array;
}

/**
 * Splits a DER certificate (RFC 5280 §4.1) into the parts a signature check needs, for keys
 * node:crypto cannot read (ML-DSA on Node 20). Throws a CodecError (ERR_TLS_CERT) naming the part
 * that is malformed; reads nothing past `der`'s end and at most {@link MAX_CERTIFICATE_BYTES}.
 *
 * ```
 * Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING }
 * TBSCertificate ::= SEQUENCE { [0] version OPTIONAL, serialNumber, signature, issuer, validity,
 *                               subject, subjectPublicKeyInfo SEQUENCE { algorithm, BIT STRING }, ... }
 * ```
 */
export function decodeCertificateParts(b: Uint8Array): CertificateParts {
  if (b.length > MAX_CERTIFICATE_BYTES)
    throw new CodecError('ERR_TLS_CERT', `a certificate over ${MAX_CERTIFICATE_BYTES} bytes`);
  const cert = expectTag(der(b, 0, b.length, 'Certificate'), 0x30, 'Certificate');
  if (cert.end !== b.length)
    throw new CodecError('ERR_TLS_CERT', 'a certificate with bytes after its end');
  const tbs = expectTag(der(b, cert.start, cert.end, 'TBSCertificate'), 0x30, 'TBSCertificate');
  const sigAlg = der(b, tbs.end, cert.end, 'signatureAlgorithm');
  const sig = der(b, sigAlg.end, cert.end, 'signatureValue');
  if (sig.end !== cert.end)
    throw new CodecError('ERR_TLS_CERT', 'a certificate with extra fields after its signature');
  let p = tbs.start;
  const next = (what: string): Der => {
    const d = der(b, p, tbs.end, what);
    p = d.end;
    return d;
  };
  let first = next('serialNumber');
  if (first.tag === 0xa0) first = next('serialNumber');
  expectTag(first, 0x02, 'serialNumber');
  const tbsSigAlg = next('signature');
  expectTag(next('issuer'), 0x30, 'issuer');
  expectTag(next('validity'), 0x30, 'validity');
  expectTag(next('subject'), 0x30, 'subject');
  const spki = expectTag(next('subjectPublicKeyInfo'), 0x30, 'subjectPublicKeyInfo');
  const keyAlg = der(b, spki.start, spki.end, 'subjectPublicKeyInfo algorithm');
  const key = der(b, keyAlg.end, spki.end, 'subjectPublicKey');
  return {
    tbs: b.subarray(tbs.at, tbs.end),
    signatureAlgorithm: algorithm(b, sigAlg, 'signatureAlgorithm'),
    tbsSignatureAlgorithm: algorithm(b, tbsSigAlg, 'signature'),
    signature: bitString(b, sig, 'signatureValue'),
    keyAlgorithm: algorithm(b, keyAlg, 'subjectPublicKeyInfo algorithm'),
    publicKey: bitString(b, key, 'subjectPublicKey'),
  };
}
