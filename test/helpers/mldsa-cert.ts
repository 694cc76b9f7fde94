/**
 * ML-DSA certificates for the fp=chrome client's tests (FIPS 204 keys, draft-ietf-lamps-dilithium-
 * certificates / RFC 9881 encoding): Node 20's OpenSSL 3.0 cannot make or sign them, so the DER is
 * built here. The keys come from @noble/post-quantum (a fresh seed per call); signatures are pure
 * ML-DSA with an empty context over the DER TBSCertificate.
 *
 * ```
 * AlgorithmIdentifier ::= SEQUENCE { id-ml-dsa-65 }          -- parameters absent
 * SubjectPublicKeyInfo ::= SEQUENCE { algorithm, BIT STRING (the 1,952-byte public key) }
 * ```
 */
import { randomBytes, sign, type KeyObject } from 'node:crypto';
import { ml_dsa44, ml_dsa65, ml_dsa87 } from '@noble/post-quantum/ml-dsa.js';

export type MlDsaLevel = 44 | 65 | 87;
const IMPL = { 44: ml_dsa44, 65: ml_dsa65, 87: ml_dsa87 } as const;
/** id-ml-dsa-44/65/87 (NIST CSOR: 2.16.840.1.101.3.4.3.17, .18, .19). */
const OID = {
  44: '2.16.840.1.101.3.4.3.17',
  65: '2.16.840.1.101.3.4.3.18',
  87: '2.16.840.1.101.3.4.3.19',
};
/** TLS SignatureScheme of each level (draft-ietf-tls-mldsa). */
export const MLDSA_SCHEME = { 44: 0x0904, 65: 0x0905, 87: 0x0906 } as const;

function len(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v >>= 8) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}
const tlv = (tag: number, ...c: Uint8Array[]): Buffer => {
  const body = Buffer.concat(c);
  return Buffer.concat([Buffer.from([tag]), len(body.length), body]);
};
const seq = (...c: Uint8Array[]): Buffer => tlv(0x30, ...c);
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
const bits = (c: Uint8Array): Buffer => tlv(0x03, Buffer.from([0]), c);
const name = (cn: string): Buffer =>
  seq(tlv(0x31, seq(oid('2.5.4.3'), tlv(0x0c, Buffer.from(cn, 'utf8')))));
const utc = (d: Date): Buffer =>
  tlv(0x17, Buffer.from(d.toISOString().replace(/[-:T]/g, '').slice(2, 14) + 'Z', 'ascii'));

/** A key that signs certificates: an ML-DSA secret key or a node:crypto ECDSA or RSA key. */
export type CertSigner =
  { level: MlDsaLevel; secretKey: Uint8Array } | { ecdsa: KeyObject } | { rsa: KeyObject };

function algorithmOf(s: CertSigner): Buffer {
  // ecdsa-with-SHA256 (RFC 5758, parameters absent); sha256WithRSAEncryption (RFC 4055, NULL).
  if ('ecdsa' in s) return seq(oid('1.2.840.10045.4.3.2'));
  if ('rsa' in s) return seq(oid('1.2.840.113549.1.1.11'), tlv(0x05));
  return seq(oid(OID[s.level]));
}
function signWith(s: CertSigner, tbs: Buffer): Uint8Array {
  if ('ecdsa' in s) return sign('sha256', tbs, { key: s.ecdsa, dsaEncoding: 'der' });
  if ('rsa' in s) return sign('sha256', tbs, s.rsa); // RSASSA-PKCS1-v1_5
  return IMPL[s.level].sign(tbs, s.secretKey);
}

export interface MlDsaCert {
  der: Buffer;
  level: MlDsaLevel;
  publicKey: Uint8Array;
  secretKey: Uint8Array;
}

/**
 * An ML-DSA certificate for `subject` (a CA with basicConstraints when `ca`, else a leaf naming
 * localhost and 127.0.0.1), valid from an hour ago for two days, signed by `issuer` (its name and
 * key) or by itself.
 */
export function mldsaCert(o: {
  level: MlDsaLevel;
  subject: string;
  ca?: boolean;
  issuer?: { name: string; signer: CertSigner };
  /** Breaks the signature (flips a bit of it) after signing. */
  tamper?: boolean;
}): MlDsaCert {
  const { publicKey, secretKey } = IMPL[o.level].keygen(randomBytes(32));
  const signer: CertSigner = o.issuer?.signer ?? { level: o.level, secretKey };
  const now = Date.now();
  const ext = o.ca
    ? seq(
        oid('2.5.29.19'),
        tlv(0x01, Buffer.from([0xff])),
        tlv(0x04, seq(tlv(0x01, Buffer.from([0xff])))),
      )
    : seq(
        oid('2.5.29.17'),
        tlv(0x04, seq(tlv(0x82, Buffer.from('localhost')), tlv(0x87, Buffer.from([127, 0, 0, 1])))),
      );
  const tbs = seq(
    tlv(0xa0, tlv(0x02, Buffer.from([2]))),
    tlv(0x02, Buffer.concat([Buffer.from([1]), randomBytes(15)])),
    algorithmOf(signer),
    name(o.issuer?.name ?? o.subject),
    seq(utc(new Date(now - 3600_000)), utc(new Date(now + 2 * 86_400_000))),
    name(o.subject),
    seq(seq(oid(OID[o.level])), bits(publicKey)),
    tlv(0xa3, seq(ext)),
  );
  const sig = Buffer.from(signWith(signer, tbs));
  if (o.tamper) sig[sig.length >> 1]! ^= 1;
  return { der: seq(tbs, algorithmOf(signer), bits(sig)), level: o.level, publicKey, secretKey };
}

/** A TLS 1.3 CertificateVerify signature with an ML-DSA key (pure, empty context). */
export function mldsaSign(c: MlDsaCert, content: Uint8Array): Uint8Array {
  return IMPL[c.level].sign(content, c.secretKey);
}
