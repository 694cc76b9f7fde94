/**
 * Certificates the server makes for itself: key generation and the clock live here, the encoding in
 * codec/x509.ts. The default self-signed certificate looks like the one a freshly installed Debian
 * web server has (ssl-cert's snakeoil: RSA 2048, CN and subjectAltName the host name, ten years
 * from the moment it is made, a random 20-byte serial), so that it tells a prober no more than
 * "a web server nobody bothered to give a real certificate".
 * @module
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { encodeCertificate, type EncodeOptions, type IssuedCertificate } from '../codec/x509.js';

export type { IssuedCertificate } from '../codec/x509.js';

/** The snakeoil certificate's validity: make-ssl-cert's default, 3650 days. */
export const SNAKEOIL_DAYS = 3650;

export interface IssueOptions extends Omit<
  EncodeOptions,
  'subjectKey' | 'notBefore' | 'days' | 'profile'
> {
  /** Validity start and length (default: now − 1 h, 825 days). */
  notBefore?: Date;
  days?: number;
  /** RSA with this many bits instead of ECDSA P-256 (the lab uses RSA chains, src/lab/lab.ts). */
  rsaBits?: number;
}

function keyPair(rsaBits: number | undefined): EncodeOptions['subjectKey'] {
  return rsaBits !== undefined
    ? generateKeyPairSync('rsa', { modulusLength: rsaBits })
    : generateKeyPairSync('ec', { namedCurve: 'P-256' });
}

/** Issues an ECDSA P-256 certificate (or RSA with `rsaBits`): the lab's CA and chains, tests. */
export function issueCertificate(o: IssueOptions): IssuedCertificate {
  const { rsaBits, notBefore, days, ...rest } = o;
  return encodeCertificate({
    ...rest,
    subjectKey: keyPair(rsaBits),
    notBefore: notBefore ?? new Date(Date.now() - 3600_000),
    days: days ?? 825,
  });
}

/** The host name a fresh install would put in its certificate. */
export function machineHostName(): string {
  const h = hostname().trim();
  return /^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/.test(h) ? h : 'localhost';
}

/**
 * A certificate like Debian's snakeoil: RSA 2048, SHA-256, CN and DNS subjectAltName `host`,
 * valid from `now` (whole seconds) for 3650 days, a random serial.
 */
export function snakeoilCertificate(
  host: string = machineHostName(),
  now: number = Date.now(),
): IssuedCertificate {
  return encodeCertificate({
    commonName: host,
    altNames: [host],
    subjectKey: keyPair(2048),
    notBefore: new Date(Math.floor(now / 1000) * 1000),
    days: SNAKEOIL_DAYS,
    serial: randomBytes(20),
    profile: 'snakeoil',
  });
}
