/**
 * ML-DSA signature checks (FIPS 204) for the fp=chrome client, which offers ML-DSA-44/65/87 in
 * signature_algorithms as Chrome does: Node 20's OpenSSL 3.0 cannot read ML-DSA keys, so
 * @noble/post-quantum verifies. Only the pure variant with an empty context, the one TLS 1.3
 * (draft-ietf-tls-mldsa) and X.509 (RFC 9881) use.
 * @module
 */
import { ml_dsa44, ml_dsa65, ml_dsa87 } from '@noble/post-quantum/ml-dsa.js';

export interface MlDsaParams {
  /** The TLS SignatureScheme (draft-ietf-tls-mldsa). */
  scheme: number;
  /** id-ml-dsa-* (NIST CSOR), in X.509's AlgorithmIdentifier with parameters absent. */
  oid: string;
  name: string;
  publicKeyBytes: number;
  signatureBytes: number;
  verify(sig: Uint8Array, msg: Uint8Array, publicKey: Uint8Array): boolean;
}

export const ML_DSA: readonly MlDsaParams[] = [
  {
    scheme: 0x0904,
    oid: '2.16.840.1.101.3.4.3.17',
    name: 'ML-DSA-44',
    publicKeyBytes: 1312,
    signatureBytes: 2420,
    verify: ml_dsa44.verify,
  },
  {
    scheme: 0x0905,
    oid: '2.16.840.1.101.3.4.3.18',
    name: 'ML-DSA-65',
    publicKeyBytes: 1952,
    signatureBytes: 3309,
    verify: ml_dsa65.verify,
  },
  {
    scheme: 0x0906,
    oid: '2.16.840.1.101.3.4.3.19',
    name: 'ML-DSA-87',
    publicKeyBytes: 2592,
    signatureBytes: 4627,
    verify: ml_dsa87.verify,
  },
];

export const mlDsaByScheme = (scheme: number): MlDsaParams | undefined =>
  ML_DSA.find((p) => p.scheme === scheme);
export const mlDsaByOid = (oid: string): MlDsaParams | undefined =>
  ML_DSA.find((p) => p.oid === oid);

/**
 * Verifies a pure ML-DSA signature with an empty context; false for a key or signature of the
 * wrong size or a signature that does not verify (never throws).
 */
export function mlDsaVerify(
  p: MlDsaParams,
  publicKey: Uint8Array,
  msg: Uint8Array,
  sig: Uint8Array,
): boolean {
  if (publicKey.length !== p.publicKeyBytes || sig.length !== p.signatureBytes) return false;
  try {
    return p.verify(sig, msg, publicKey);
  } catch {
    return false;
  }
}
