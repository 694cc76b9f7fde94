/**
 * DNS messages as a stub resolver writes and reads them (RFC 1035 §4.1), and the two-byte length
 * framing of DNS over TCP (RFC 1035 §4.2.2, RFC 7766 §8). Pure: no I/O.
 *
 * ```text
 * header    | ID (16) | QR(1) OPCODE(4) AA(1) TC(1) RD(1) | RA(1) Z(3) RCODE(4) |
 *           | QDCOUNT (16) | ANCOUNT (16) | NSCOUNT (16) | ARCOUNT (16) |          12 bytes
 * question  | QNAME (labels) | QTYPE (16) | QCLASS (16) |
 * record    | NAME (labels, or a C0xx pointer) | TYPE (16) | CLASS (16) | TTL (32) |
 *           | RDLENGTH (16) | RDATA |
 * name      ( LEN (8, 1..63) LABEL )* ( 00 | 11xxxxxx xxxxxxxx pointer )           RFC 1035 §4.1.4
 * TCP frame | LENGTH (16) | message |                                             RFC 1035 §4.2.2
 * ```
 *
 * Decoding is strict about bounds and lenient about content: a message that ends early is `null`
 * (need more bytes), one that cannot be right (a pointer that does not point backwards, a label over
 * 63 bytes, a name over 255 bytes, an A record that is not 4 bytes) is a CodecError. Names are kept
 * as sent (case too); the resolver compares them lower-cased. Encoding never compresses names.
 * @module
 */
import { isIPv4, isIPv6 } from 'node:net';
import { CodecError } from '../errors.js';
import type { Decoded } from './socks-addr.js';
import { bytesToIPv6, ipv6ToBytes } from './socks-addr.js';

export const DNS_HEADER_BYTES = 12;
/** RFC 1035 §2.3.4: labels of at most 63 octets, names of at most 255. */
export const MAX_LABEL_BYTES = 63;
export const MAX_NAME_BYTES = 255;
/** RFC 1035 §2.3.4: UDP messages of at most 512 octets unless EDNS says otherwise. */
export const MAX_UDP_MESSAGE_BYTES = 512;
/** The largest message the two-byte TCP length can frame. */
export const MAX_TCP_MESSAGE_BYTES = 0xffff;

export const DNS_TYPE = {
  A: 1,
  NS: 2,
  CNAME: 5,
  PTR: 12,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  OPT: 41,
  HTTPS: 65,
} as const;
export const DNS_CLASS_IN = 1;
/** RFC 1035 §4.1.1 and RFC 6895: the response codes a stub resolver tells apart. */
export const DNS_RCODE = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
} as const;
export const DNS_FLAG = { QR: 0x8000, AA: 0x0400, TC: 0x0200, RD: 0x0100, RA: 0x0080 } as const;

export interface DnsQuestion {
  /** Dotted, without the trailing dot; '' is the root. */
  readonly name: string;
  readonly type: number;
  readonly class: number;
}

/**
 * One resource record. `data` is the address text for A and AAAA, the target name for CNAME, NS and
 * PTR, and the raw RDATA for every other type.
 */
export interface DnsRecord {
  readonly name: string;
  readonly type: number;
  readonly class: number;
  readonly ttl: number;
  readonly data: string | Uint8Array;
}

export interface DnsMessage {
  readonly id: number;
  /** The whole flags word: QR, OPCODE, AA, TC, RD, RA, Z and RCODE. */
  readonly flags: number;
  readonly questions: readonly DnsQuestion[];
  readonly answers: readonly DnsRecord[];
  readonly authorities: readonly DnsRecord[];
  readonly additionals: readonly DnsRecord[];
}

/** RCODE from a flags word. */
export function dnsRcode(flags: number): number {
  return flags & 0x000f;
}

/** The text name of a record type, for reports (`TYPE65` for the ones without a name here). */
export function dnsTypeName(type: number): string {
  for (const [k, v] of Object.entries(DNS_TYPE)) if (v === type) return k;
  return `TYPE${type}`;
}

/** A recursive query for one name and type (RD set), as a stub resolver sends it. */
export function dnsQuery(id: number, name: string, type: number): DnsMessage {
  return {
    id,
    flags: DNS_FLAG.RD,
    questions: [{ name, type, class: DNS_CLASS_IN }],
    answers: [],
    authorities: [],
    additionals: [],
  };
}

function labelsOf(name: string): string[] {
  const trimmed = name.endsWith('.') ? name.slice(0, -1) : name;
  return trimmed === '' ? [] : trimmed.split('.');
}

function nameLength(name: string): number {
  const labels = labelsOf(name);
  let n = 1;
  for (const l of labels) {
    const len = Buffer.byteLength(l, 'latin1');
    if (len === 0 || len > MAX_LABEL_BYTES)
      throw new CodecError('ERR_CODEC', `DNS: label '${l.slice(0, 70)}' must be 1 to 63 bytes`);
    n += 1 + len;
  }
  if (n > MAX_NAME_BYTES) throw new CodecError('ERR_CODEC', 'DNS: name longer than 255 bytes');
  return n;
}

function encodeName(name: string, out: Uint8Array, offset: number): number {
  let o = offset;
  for (const l of labelsOf(name)) {
    out[o++] = l.length;
    for (let i = 0; i < l.length; i++) out[o++] = l.charCodeAt(i) & 0xff;
  }
  out[o++] = 0;
  return o - offset;
}

function rdataLength(r: DnsRecord): number {
  const d = r.data;
  switch (r.type) {
    case DNS_TYPE.A:
      if (typeof d !== 'string' || !isIPv4(d))
        throw new CodecError('ERR_CODEC', 'DNS: an A record needs an IPv4 address');
      return 4;
    case DNS_TYPE.AAAA:
      if (typeof d !== 'string' || !isIPv6(d))
        throw new CodecError('ERR_CODEC', 'DNS: an AAAA record needs an IPv6 address');
      return 16;
    case DNS_TYPE.CNAME:
    case DNS_TYPE.NS:
    case DNS_TYPE.PTR:
      if (typeof d !== 'string')
        throw new CodecError('ERR_CODEC', 'DNS: a CNAME, NS or PTR record needs a name');
      return nameLength(d);
    default:
      if (typeof d === 'string')
        throw new CodecError('ERR_CODEC', `DNS: type ${r.type} takes raw RDATA bytes`);
      return d.length;
  }
}

function recordLength(r: DnsRecord): number {
  return nameLength(r.name) + 10 + rdataLength(r);
}

/** Bytes {@link encodeDnsMessage} writes for `m`. */
export function dnsMessageLength(m: DnsMessage): number {
  let n = DNS_HEADER_BYTES;
  for (const q of m.questions) n += nameLength(q.name) + 4;
  for (const list of [m.answers, m.authorities, m.additionals])
    for (const r of list) n += recordLength(r);
  return n;
}

function put16(out: Uint8Array, o: number, v: number): void {
  out[o] = (v >>> 8) & 0xff;
  out[o + 1] = v & 0xff;
}

function get16(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}

/** Writes `m` at `offset` (names uncompressed); returns the bytes written. */
export function encodeDnsMessage(m: DnsMessage, out: Uint8Array, offset: number): number {
  const len = dnsMessageLength(m);
  if (out.length - offset < len) throw new CodecError('ERR_CODEC', 'DNS: output buffer too small');
  const counts = [m.questions, m.answers, m.authorities, m.additionals].map((l) => l.length);
  if (counts.some((c) => c > 0xffff)) throw new CodecError('ERR_CODEC', 'DNS: too many entries');
  put16(out, offset, m.id);
  put16(out, offset + 2, m.flags);
  counts.forEach((c, i) => put16(out, offset + 4 + 2 * i, c));
  let o = offset + DNS_HEADER_BYTES;
  for (const q of m.questions) {
    o += encodeName(q.name, out, o);
    put16(out, o, q.type);
    put16(out, o + 2, q.class);
    o += 4;
  }
  for (const list of [m.answers, m.authorities, m.additionals])
    for (const r of list) {
      o += encodeName(r.name, out, o);
      put16(out, o, r.type);
      put16(out, o + 2, r.class);
      const ttl = r.ttl >>> 0;
      put16(out, o + 4, ttl >>> 16);
      put16(out, o + 6, ttl & 0xffff);
      const rdLen = rdataLength(r);
      put16(out, o + 8, rdLen);
      o += 10;
      const d = r.data;
      if (r.type === DNS_TYPE.A) {
        (d as string).split('.').forEach((x, i) => (out[o + i] = Number(x)));
      } else if (r.type === DNS_TYPE.AAAA) {
        out.set(ipv6ToBytes(d as string), o);
      } else if (typeof d === 'string') {
        encodeName(d, out, o);
      } else {
        out.set(d, o);
      }
      o += rdLen;
    }
  return o - offset;
}

/** `m` as a new buffer. */
export function dnsMessageBytes(m: DnsMessage): Buffer {
  const out = Buffer.alloc(dnsMessageLength(m));
  encodeDnsMessage(m, out, 0);
  return out;
}

/**
 * Reads a name at `at`, following compression pointers (which must point strictly backwards, to a
 * byte of the same message that starts at `base`). Returns the name and where the bytes that follow
 * it begin, or null if the message ends inside the name.
 */
function decodeName(
  buf: Uint8Array,
  base: number,
  at: number,
  end: number,
): { name: string; next: number } | null {
  const labels: string[] = [];
  let o = at;
  let next = -1;
  let total = 1;
  // Each pointer must go strictly backwards, so the walk ends; the bound is belt and braces.
  for (let hops = 0; ;) {
    if (o >= end) return null;
    const len = buf[o]!;
    if (len === 0) {
      if (next < 0) next = o + 1;
      break;
    }
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (o + 1 >= end) return null;
      const target = base + (((len & 0x3f) << 8) | buf[o + 1]!);
      if (next < 0) next = o + 2;
      if (target >= o || ++hops > 127)
        throw new CodecError('ERR_CODEC', 'DNS: a name pointer that does not point backwards');
      o = target;
      continue;
    }
    if (kind !== 0)
      throw new CodecError('ERR_CODEC', `DNS: reserved label type 0x${kind.toString(16)}`);
    if (o + 1 + len > end) return null;
    total += 1 + len;
    if (total > MAX_NAME_BYTES)
      throw new CodecError('ERR_CODEC', 'DNS: name longer than 255 bytes');
    labels.push(Buffer.from(buf.buffer, buf.byteOffset + o + 1, len).toString('latin1'));
    o += 1 + len;
  }
  return { name: labels.join('.'), next };
}

function decodeRecords(
  buf: Uint8Array,
  base: number,
  at: number,
  end: number,
  count: number,
  out: DnsRecord[],
): number | null {
  let o = at;
  for (let i = 0; i < count; i++) {
    const n = decodeName(buf, base, o, end);
    if (!n) return null;
    o = n.next;
    if (end - o < 10) return null;
    const type = get16(buf, o);
    const cls = get16(buf, o + 2);
    const ttl = ((get16(buf, o + 4) << 16) | get16(buf, o + 6)) >>> 0;
    const rdLen = get16(buf, o + 8);
    o += 10;
    if (end - o < rdLen) return null;
    let data: string | Uint8Array;
    if (type === DNS_TYPE.A) {
      if (rdLen !== 4) throw new CodecError('ERR_CODEC', `DNS: an A record of ${rdLen} bytes`);
      data = `${buf[o]}.${buf[o + 1]}.${buf[o + 2]}.${buf[o + 3]}`;
    } else if (type === DNS_TYPE.AAAA) {
      if (rdLen !== 16) throw new CodecError('ERR_CODEC', `DNS: an AAAA record of ${rdLen} bytes`);
      data = bytesToIPv6(buf.subarray(o, o + 16));
    } else if (type === DNS_TYPE.CNAME || type === DNS_TYPE.NS || type === DNS_TYPE.PTR) {
      const t = decodeName(buf, base, o, o + rdLen);
      if (!t || t.next !== o + rdLen)
        throw new CodecError('ERR_CODEC', 'DNS: a name in RDATA that does not fill it');
      data = t.name;
    } else {
      data = new Uint8Array(buf.subarray(o, o + rdLen)); // a copy, a plain Uint8Array
    }
    o += rdLen;
    out.push({ name: n.name, type, class: cls, ttl, data });
  }
  return o;
}

/**
 * Reads one whole DNS message from `offset` to the end of `buf` (a UDP datagram, or the body of a
 * TCP frame). Returns null if it ends early; bytes after the last record are left unread
 * (`bytesRead` tells how many were used).
 */
export function decodeDnsMessage(buf: Uint8Array, offset: number): Decoded<DnsMessage> | null {
  const end = buf.length;
  if (end - offset < DNS_HEADER_BYTES) return null;
  const id = get16(buf, offset);
  const flags = get16(buf, offset + 2);
  const [qd, an, ns, ar] = [4, 6, 8, 10].map((k) => get16(buf, offset + k)) as [
    number,
    number,
    number,
    number,
  ];
  let o = offset + DNS_HEADER_BYTES;
  const questions: DnsQuestion[] = [];
  for (let i = 0; i < qd; i++) {
    const n = decodeName(buf, offset, o, end);
    if (!n) return null;
    o = n.next;
    if (end - o < 4) return null;
    questions.push({ name: n.name, type: get16(buf, o), class: get16(buf, o + 2) });
    o += 4;
  }
  const answers: DnsRecord[] = [];
  const authorities: DnsRecord[] = [];
  const additionals: DnsRecord[] = [];
  for (const [count, list] of [
    [an, answers],
    [ns, authorities],
    [ar, additionals],
  ] as const) {
    const next = decodeRecords(buf, offset, o, end, count, list);
    if (next === null) return null;
    o = next;
  }
  return {
    value: { id, flags, questions, answers, authorities, additionals },
    bytesRead: o - offset,
  };
}

/** Bytes {@link encodeDnsTcpFrame} writes: the two-byte length and the message. */
export function dnsTcpFrameLength(message: Uint8Array): number {
  return 2 + message.length;
}

/** Frames a message for DNS over TCP (RFC 1035 §4.2.2: a two-byte length first). */
export function encodeDnsTcpFrame(message: Uint8Array, out: Uint8Array, offset: number): number {
  if (message.length > MAX_TCP_MESSAGE_BYTES)
    throw new CodecError('ERR_CODEC', 'DNS: a message over 65535 bytes cannot be framed');
  put16(out, offset, message.length);
  out.set(message, offset + 2);
  return 2 + message.length;
}

/** Reads one framed message (a view into `buf`), or null until the whole frame is there. */
export function decodeDnsTcpFrame(buf: Uint8Array, offset: number): Decoded<Uint8Array> | null {
  if (buf.length - offset < 2) return null;
  const len = get16(buf, offset);
  if (buf.length - offset - 2 < len) return null;
  return { value: buf.subarray(offset + 2, offset + 2 + len), bytesRead: 2 + len };
}

/** The A and AAAA addresses among `answers`, in order, for the question name or its CNAME chain. */
export function answerAddresses(m: DnsMessage): string[] {
  return m.answers
    .filter((r) => r.type === DNS_TYPE.A || r.type === DNS_TYPE.AAAA)
    .map((r) => r.data as string);
}
