/**
 * Reads a TLS ClientHello record (RFC 8446 §4.1.2, §4.2) for the fingerprint test: cipher suites,
 * extensions in wire order, and the parts of the extensions a fingerprint is made of. Test-only and
 * strict: anything unexpected throws.
 */
import { createHash } from 'node:crypto';

export interface ClientHello {
  recordVersion: number;
  legacyVersion: number;
  sessionIdLength: number;
  ciphers: number[];
  /** Extension types in the order sent. */
  extensions: number[];
  sni?: string;
  alpn?: string[];
  groups?: number[];
  sigAlgs?: number[];
  versions?: number[];
  keyShareGroups?: number[];
  pointFormats?: number[];
  length: number;
}

export const EXT = {
  SERVER_NAME: 0x0000,
  STATUS_REQUEST: 0x0005,
  SUPPORTED_GROUPS: 0x000a,
  EC_POINT_FORMATS: 0x000b,
  SIGNATURE_ALGORITHMS: 0x000d,
  ALPN: 0x0010,
  SCT: 0x0012,
  ENCRYPT_THEN_MAC: 0x0016,
  EXTENDED_MASTER_SECRET: 0x0017,
  COMPRESS_CERTIFICATE: 0x001b,
  SESSION_TICKET: 0x0023,
  SUPPORTED_VERSIONS: 0x002b,
  PSK_KEY_EXCHANGE_MODES: 0x002d,
  KEY_SHARE: 0x0033,
  ALPS: 0x44cd,
  ECH: 0xfe0d,
  RENEGOTIATION_INFO: 0xff01,
} as const;

const u16 = (b: Buffer, p: number): number => b.readUInt16BE(p);
const list16 = (b: Buffer): number[] => {
  const out: number[] = [];
  for (let i = 0; i + 1 < b.length; i += 2) out.push(u16(b, i));
  return out;
};

export function parseClientHello(rec: Buffer): ClientHello {
  if (rec[0] !== 0x16) throw new Error('not a handshake record');
  const recordVersion = u16(rec, 1);
  const recLen = u16(rec, 3);
  const h = rec.subarray(5, 5 + recLen);
  if (h[0] !== 0x01) throw new Error('not a ClientHello');
  let p = 4;
  const legacyVersion = u16(h, p);
  p += 2 + 32; // version, random
  const sessionIdLength = h[p]!;
  p += 1 + sessionIdLength;
  const cl = u16(h, p);
  p += 2;
  const ciphers = list16(h.subarray(p, p + cl));
  p += cl;
  p += 1 + h[p]!; // compression methods
  const end = p + 2 + u16(h, p);
  p += 2;
  const out: ClientHello = {
    recordVersion,
    legacyVersion,
    sessionIdLength,
    ciphers,
    extensions: [],
    length: 5 + recLen,
  };
  while (p < end) {
    const type = u16(h, p);
    const len = u16(h, p + 2);
    const d = h.subarray(p + 4, p + 4 + len);
    p += 4 + len;
    out.extensions.push(type);
    switch (type) {
      case EXT.SERVER_NAME:
        out.sni = d.subarray(5, 5 + u16(d, 3)).toString('latin1'); // list len, type 0, name len
        break;
      case EXT.ALPN: {
        const names: string[] = [];
        for (let i = 2; i < d.length; i += 1 + d[i]!)
          names.push(d.subarray(i + 1, i + 1 + d[i]!).toString());
        out.alpn = names;
        break;
      }
      case EXT.SUPPORTED_GROUPS:
        out.groups = list16(d.subarray(2));
        break;
      case EXT.SIGNATURE_ALGORITHMS:
        out.sigAlgs = list16(d.subarray(2));
        break;
      case EXT.SUPPORTED_VERSIONS:
        out.versions = list16(d.subarray(1));
        break;
      case EXT.EC_POINT_FORMATS:
        out.pointFormats = [...d.subarray(1)];
        break;
      case EXT.KEY_SHARE: {
        const groups: number[] = [];
        for (let i = 2; i < d.length; i += 4 + u16(d, i + 2)) groups.push(u16(d, i));
        out.keyShareGroups = groups;
        break;
      }
    }
  }
  return out;
}

const hex4 = (n: number): string => n.toString(16).padStart(4, '0');
const isGrease = (n: number): boolean => (n & 0x0f0f) === 0x0a0a;
const trunc = (s: string): string => createHash('sha256').update(s).digest('hex').slice(0, 12);

/** JA4 (FoxIO, "JA4: TLS Client Fingerprinting"), TCP, from a parsed ClientHello. */
export function ja4(c: ClientHello): string {
  const ciphers = c.ciphers.filter((x) => !isGrease(x));
  const exts = c.extensions.filter((x) => !isGrease(x));
  const version = Math.max(...(c.versions ?? [c.legacyVersion]).filter((v) => !isGrease(v)));
  const v = { 0x0304: '13', 0x0303: '12' }[version] ?? '00';
  const alpn = c.alpn?.[0] ?? '';
  const a = `t${v}${c.sni !== undefined ? 'd' : 'i'}${String(Math.min(ciphers.length, 99)).padStart(2, '0')}${String(Math.min(exts.length, 99)).padStart(2, '0')}${alpn ? alpn[0]! + alpn.at(-1)! : '00'}`;
  const b = trunc(ciphers.map(hex4).sort().join(','));
  const cExts = exts
    .filter((x) => x !== EXT.SERVER_NAME && x !== EXT.ALPN)
    .map(hex4)
    .sort();
  const sig = (c.sigAlgs ?? []).filter((x) => !isGrease(x)).map(hex4);
  return `${a}_${b}_${trunc(`${cExts.join(',')}_${sig.join(',')}`)}`;
}
