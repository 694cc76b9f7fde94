/**
 * Which IP addresses a proxy server must not dial for its clients: the special-purpose ranges of
 * RFC 6890 as the IANA IPv4 and IPv6 Special-Purpose Address Registries list them today, multicast,
 * and every IPv6 address outside global unicast 2000::/3 (the IANA IPv6 Address Space registry
 * reserves the rest). Forms that carry an IPv4 address inside an IPv6 one are judged by the IPv4
 * address they reach: IPv4-mapped `::ffff:a.b.c.d` (the kernel connects it as IPv4), the NAT64
 * well-known prefix `64:ff9b::/96` (RFC 6052 §3.1: it embeds global IPv4 only; an IPv6-only server
 * behind DNS64 reaches the IPv4 internet through it) and 6to4 `2002:AABB:CCDD::/48`.
 *
 * Pure: no resolver, no sockets. `parseAddress` also reads the numeric spellings that
 * `inet_aton(3)`, and so getaddrinfo and `net.connect`, accept for IPv4 (`2130706433`, `0x7f.1`,
 * `017700000001`, `127.1`), bracketed IPv6 and zone ids, so that a caller can judge a host before
 * any lookup. The guarded dialer (guarded-dialer.ts) also judges every address a lookup returns.
 * @module
 */

/** One special-purpose block: where it is, what it is, the document that defines it. */
export interface SpecialRange {
  readonly prefix: string;
  readonly bits: number;
  readonly name: string;
  readonly rfc: string;
  /** For IPv6 blocks that embed an IPv4 address: judge that address instead of blocking the block. */
  readonly embedsV4?: 'last32' | '6to4';
}

/** IANA IPv4 Special-Purpose Address Registry, plus multicast (RFC 5771). */
export const SPECIAL_IPV4: readonly SpecialRange[] = [
  { prefix: '0.0.0.0', bits: 8, name: 'this network', rfc: 'RFC 791' },
  { prefix: '10.0.0.0', bits: 8, name: 'private use', rfc: 'RFC 1918' },
  { prefix: '100.64.0.0', bits: 10, name: 'shared address space (CGNAT)', rfc: 'RFC 6598' },
  { prefix: '127.0.0.0', bits: 8, name: 'loopback', rfc: 'RFC 1122' },
  { prefix: '169.254.0.0', bits: 16, name: 'link local', rfc: 'RFC 3927' },
  { prefix: '172.16.0.0', bits: 12, name: 'private use', rfc: 'RFC 1918' },
  { prefix: '192.0.0.0', bits: 24, name: 'IETF protocol assignments', rfc: 'RFC 6890' },
  { prefix: '192.0.2.0', bits: 24, name: 'documentation (TEST-NET-1)', rfc: 'RFC 5737' },
  { prefix: '192.31.196.0', bits: 24, name: 'AS112-v4', rfc: 'RFC 7535' },
  { prefix: '192.52.193.0', bits: 24, name: 'AMT', rfc: 'RFC 7450' },
  { prefix: '192.88.99.0', bits: 24, name: 'deprecated 6to4 relay anycast', rfc: 'RFC 7526' },
  { prefix: '192.168.0.0', bits: 16, name: 'private use', rfc: 'RFC 1918' },
  { prefix: '192.175.48.0', bits: 24, name: 'direct delegation AS112', rfc: 'RFC 7534' },
  { prefix: '198.18.0.0', bits: 15, name: 'benchmarking', rfc: 'RFC 2544' },
  { prefix: '198.51.100.0', bits: 24, name: 'documentation (TEST-NET-2)', rfc: 'RFC 5737' },
  { prefix: '203.0.113.0', bits: 24, name: 'documentation (TEST-NET-3)', rfc: 'RFC 5737' },
  { prefix: '224.0.0.0', bits: 4, name: 'multicast', rfc: 'RFC 5771' },
  { prefix: '240.0.0.0', bits: 4, name: 'reserved, and limited broadcast', rfc: 'RFC 1112' },
];

/**
 * IANA IPv6 Special-Purpose Address Registry, the ranges RFC 4291 and RFC 3879 reserve, and the
 * IPv4-embedding forms (judged by their IPv4 address). Searched in order: embedding forms first, then
 * the narrower block before the wider one that holds it, so that the reason names the narrower.
 */
export const SPECIAL_IPV6: readonly SpecialRange[] = [
  { prefix: '::ffff:0:0', bits: 96, name: 'IPv4-mapped', rfc: 'RFC 4291', embedsV4: 'last32' },
  {
    prefix: '64:ff9b::',
    bits: 96,
    name: 'NAT64 well-known prefix',
    rfc: 'RFC 6052',
    embedsV4: 'last32',
  },
  { prefix: '2002::', bits: 16, name: '6to4', rfc: 'RFC 3056', embedsV4: '6to4' },
  { prefix: '::', bits: 128, name: 'unspecified', rfc: 'RFC 4291' },
  { prefix: '::1', bits: 128, name: 'loopback', rfc: 'RFC 4291' },
  { prefix: '::', bits: 96, name: 'IPv4-compatible (deprecated)', rfc: 'RFC 4291' },
  { prefix: '::ffff:0:0:0', bits: 96, name: 'IPv4-translated (SIIT)', rfc: 'RFC 2765' },
  { prefix: '64:ff9b:1::', bits: 48, name: 'NAT64 local-use prefix', rfc: 'RFC 8215' },
  { prefix: '100::', bits: 64, name: 'discard-only', rfc: 'RFC 6666' },
  { prefix: '100:0:0:1::', bits: 64, name: 'dummy IPv6 prefix', rfc: 'RFC 9780' },
  { prefix: '2001::', bits: 32, name: 'Teredo', rfc: 'RFC 4380' },
  { prefix: '2001:2::', bits: 48, name: 'benchmarking', rfc: 'RFC 5180' },
  { prefix: '2001::', bits: 23, name: 'IETF protocol assignments', rfc: 'RFC 2928' },
  { prefix: '2001:db8::', bits: 32, name: 'documentation', rfc: 'RFC 3849' },
  { prefix: '2620:4f:8000::', bits: 48, name: 'direct delegation AS112', rfc: 'RFC 7534' },
  { prefix: '3fff::', bits: 20, name: 'documentation', rfc: 'RFC 9637' },
  { prefix: '5f00::', bits: 16, name: 'segment routing SIDs', rfc: 'RFC 9602' },
  { prefix: 'fc00::', bits: 7, name: 'unique local', rfc: 'RFC 4193' },
  { prefix: 'fe80::', bits: 10, name: 'link local', rfc: 'RFC 4291' },
  { prefix: 'fec0::', bits: 10, name: 'site local (deprecated)', rfc: 'RFC 3879' },
  { prefix: 'ff00::', bits: 8, name: 'multicast', rfc: 'RFC 4291' },
];

/** Everything in IPv6 outside 2000::/3 is reserved by the IETF (IANA IPv6 Address Space). */
const NOT_GLOBAL_UNICAST: SpecialRange = {
  prefix: '2000::',
  bits: 3,
  name: 'outside global unicast 2000::/3',
  rfc: 'RFC 4291',
};

/** An address as bytes: 4 for IPv4, 16 for IPv6. */
export interface ParsedAddress {
  readonly family: 4 | 6;
  readonly bytes: Uint8Array;
}

/** One inet_aton part: decimal, 0-octal or 0x-hex; null if not a number. */
function atonPart(s: string): number | null {
  let n: number;
  if (/^0[xX][0-9a-fA-F]*$/.test(s)) n = s.length === 2 ? 0 : parseInt(s.slice(2), 16);
  else if (/^0[0-7]*$/.test(s)) n = parseInt(s, 8);
  else if (/^[1-9][0-9]*$/.test(s)) n = parseInt(s, 10);
  else return null;
  return Number.isSafeInteger(n) ? n : null;
}

/**
 * IPv4 as `inet_aton(3)` reads it: 1 to 4 parts, each decimal, octal (leading 0) or hex (0x); the
 * last part fills the remaining bytes (`127.1` is 127.0.0.1, `2130706433` is 127.0.0.1).
 */
export function parseInetAton(s: string): Uint8Array | null {
  if (s.length === 0 || s.length > 64) return null;
  const parts = s.split('.');
  if (parts.length > 4) return null;
  const nums: number[] = [];
  for (const p of parts) {
    const n = atonPart(p);
    if (n === null) return null;
    nums.push(n);
  }
  const last = nums.pop()!;
  for (const n of nums) if (n > 0xff) return null;
  const lastBytes = 4 - nums.length;
  if (last >= 2 ** (8 * lastBytes)) return null;
  const out = new Uint8Array(4);
  nums.forEach((n, i) => (out[i] = n));
  for (let i = 0; i < lastBytes; i++) out[3 - i] = Math.floor(last / 2 ** (8 * i)) & 0xff;
  return out;
}

/** Strict dotted-quad IPv4 (decimal, as inside an IPv6 address). */
function parseDottedQuad(s: string): Uint8Array | null {
  const parts = s.split('.');
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^[0-9]{1,3}$/.test(p) || Number(p) > 255) return null;
    out[i] = Number(p);
  }
  return out;
}

/** RFC 4291 §2.2 text form, with an optional trailing dotted quad; no zone (strip it first). */
export function parseIPv6(s: string): Uint8Array | null {
  if (s.length < 2 || s.length > 45) return null;
  let tail: Uint8Array | null = null;
  let text = s;
  const lastColon = s.lastIndexOf(':');
  if (s.indexOf('.', lastColon) !== -1) {
    tail = parseDottedQuad(s.slice(lastColon + 1));
    if (!tail) return null;
    text = s.slice(0, lastColon + 1) + '0:0';
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const groups = (h: string): number[] | null => {
    if (h === '') return [];
    const out: number[] = [];
    for (const g of h.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = groups(halves[0]!);
  const rest = halves.length === 2 ? groups(halves[1]!) : [];
  if (!head || !rest) return null;
  let all: number[];
  if (halves.length === 2) {
    if (head.length + rest.length > 7) return null;
    all = [...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest];
  } else {
    if (head.length !== 8) return null;
    all = head;
  }
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  if (tail) out.set(tail, 12);
  return out;
}

/**
 * A host as an address, in every numeric spelling the resolver or `net.connect` accepts: inet_aton
 * IPv4 forms, IPv6 with or without brackets, with or without a zone id (`fe80::1%eth0`). Null for
 * a name (which a lookup must resolve; its results are judged then).
 */
export function parseAddress(host: string): ParsedAddress | null {
  let h = host.trim();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  if (h.includes(':')) {
    const zone = h.indexOf('%');
    if (zone !== -1) h = h.slice(0, zone);
    const bytes = parseIPv6(h);
    return bytes ? { family: 6, bytes } : null;
  }
  const bytes = parseInetAton(h);
  return bytes ? { family: 4, bytes } : null;
}

function inPrefix(bytes: Uint8Array, prefix: Uint8Array, bits: number): boolean {
  const whole = bits >> 3;
  for (let i = 0; i < whole; i++) if (bytes[i] !== prefix[i]) return false;
  const rem = bits & 7;
  if (rem === 0) return true;
  const mask = (0xff << (8 - rem)) & 0xff;
  return ((bytes[whole]! ^ prefix[whole]!) & mask) === 0;
}

const V4_TABLE = SPECIAL_IPV4.map((r) => ({ r, p: parseDottedQuad(r.prefix)! }));
const V6_TABLE = SPECIAL_IPV6.map((r) => ({ r, p: parseIPv6(r.prefix)! }));
const GLOBAL_UNICAST = parseIPv6(NOT_GLOBAL_UNICAST.prefix)!;

function v4Range(bytes: Uint8Array): SpecialRange | null {
  for (const { r, p } of V4_TABLE) if (inPrefix(bytes, p, r.bits)) return r;
  return null;
}

function v6Range(bytes: Uint8Array): SpecialRange | null {
  for (const { r, p } of V6_TABLE) {
    if (!inPrefix(bytes, p, r.bits)) continue;
    if (r.embedsV4 === undefined) return r;
    const v4 = r.embedsV4 === 'last32' ? bytes.subarray(12, 16) : bytes.subarray(2, 6);
    const inner = v4Range(v4);
    return inner ? { ...inner, name: `${r.name} form of ${inner.name}` } : null;
  }
  return inPrefix(bytes, GLOBAL_UNICAST, NOT_GLOBAL_UNICAST.bits) ? null : NOT_GLOBAL_UNICAST;
}

/** The special-purpose range an address is in, or null if it is an ordinary public address. */
export function rangeOf(a: ParsedAddress): SpecialRange | null {
  return a.family === 4 ? v4Range(a.bytes) : v6Range(a.bytes);
}

/**
 * True if `ip` must not be dialled: an address in a special-purpose range, in any numeric spelling
 * `parseAddress` reads. Anything that is not an address at all is blocked too (a caller that got
 * a name here has skipped the lookup).
 */
export function isBlockedAddress(ip: string): boolean {
  const a = parseAddress(ip);
  return a === null || rangeOf(a) !== null;
}
