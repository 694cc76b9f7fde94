/**
 * The parts of DNS (RFC 1035 §4.1) that the injector reads and writes, following the GFW's
 * injector as `gfw-report/ndss25-wallbleed:blackbox/blackbox.c` shows it (docs/censorship-techniques.md §4).
 *
 * ```text
 * header: | ID (16) | QR opcode AA TC RD | RA Z RCODE | QDCOUNT | ANCOUNT | NSCOUNT | ARCOUNT |
 * question: QNAME (labels, 0-terminated) | QTYPE (16) | QCLASS (16)
 * forged answer: C0 0C | TYPE | 00 01 | TTL (32) | RDLENGTH (16) | RDATA
 * ```
 * @module
 */
import { CodecError } from '../../errors.js';

export const DNS_HEADER_LENGTH = 12;
import { DNS_TYPE } from '../../codec/dns.js';

/** The record types, from the one DNS codec (codec/dns.ts). */
export { DNS_TYPE };
export const DNS_CLASS_IN = 1;

export interface DnsQuestion {
  readonly id: number;
  /** Flags word (QR, opcode, AA, TC, RD, RA, Z, RCODE). */
  readonly flags: number;
  /** QNAME flattened to dotted form, lower-cased, without the trailing dot. */
  readonly name: string;
  readonly qtype: number;
  readonly qclass: number;
  /** Offset just past QCLASS: the question section's end. */
  readonly questionEnd: number;
}

/**
 * Reads the header and the first question of a DNS message, as the injector does: QDCOUNT and the
 * other counts are ignored and exactly one question is assumed (§4). Returns null when the message
 * is shorter than 12 bytes or ends inside the question; throws CodecError for a compression pointer
 * or a label over 63 bytes in QNAME.
 */
export function decodeDnsQuestion(
  buf: Uint8Array,
  offset: number,
  end = buf.length,
): { value: DnsQuestion; bytesRead: number } | null {
  if (end - offset < DNS_HEADER_LENGTH) return null;
  const labels: string[] = [];
  let o = offset + DNS_HEADER_LENGTH;
  for (;;) {
    if (o >= end) return null;
    const len = buf[o]!;
    if (len === 0) {
      o++;
      break;
    }
    if (len > 63) throw new CodecError('ERR_CODEC', 'DNS: compressed or oversized label in QNAME');
    if (o + 1 + len > end) return null;
    labels.push(String.fromCharCode(...buf.subarray(o + 1, o + 1 + len)).toLowerCase());
    o += 1 + len;
  }
  if (end - o < 4) return null;
  const qtype = (buf[o]! << 8) | buf[o + 1]!;
  const qclass = (buf[o + 2]! << 8) | buf[o + 3]!;
  o += 4;
  return {
    value: {
      id: (buf[offset]! << 8) | buf[offset + 1]!,
      flags: (buf[offset + 2]! << 8) | buf[offset + 3]!,
      name: labels.join('.'),
      qtype,
      qclass,
      questionEnd: o - offset,
    },
    bytesRead: o - offset,
  };
}

/** True if the flags word has QR=0 (a query). */
export function isQuery(flags: number): boolean {
  return (flags & 0x8000) === 0;
}

/**
 * Builds the GFW's forged answer to `query` (the message bytes from its ID to its QCLASS):
 * FLAGS 0x8180 if RD was set else 0x8400; QD=1 AN=1 NS=0 AR=0; one answer `C0 0C` that is AAAA
 * with 16 bytes if QTYPE is AAAA and otherwise an A record of 4 bytes, whatever QTYPE was (§4).
 */
export function buildForgedAnswer(
  query: Uint8Array,
  q: DnsQuestion,
  rdata: Uint8Array,
  ttl: number,
): Buffer {
  const type = q.qtype === DNS_TYPE.AAAA ? DNS_TYPE.AAAA : DNS_TYPE.A;
  if (rdata.length !== (type === DNS_TYPE.AAAA ? 16 : 4))
    throw new CodecError(
      'ERR_CODEC',
      `forged ${type === DNS_TYPE.A ? 'A' : 'AAAA'} needs ${type === DNS_TYPE.A ? 4 : 16} bytes`,
    );
  const out = Buffer.alloc(q.questionEnd + 12 + rdata.length);
  out.set(query.subarray(0, q.questionEnd), 0);
  out.writeUInt16BE((q.flags & 0x0100) !== 0 ? 0x8180 : 0x8400, 2);
  out.writeUInt16BE(1, 4); // QDCOUNT
  out.writeUInt16BE(1, 6); // ANCOUNT
  out.writeUInt16BE(0, 8);
  out.writeUInt16BE(0, 10);
  let o = q.questionEnd;
  out[o++] = 0xc0; // pointer to the QNAME at offset 12
  out[o++] = 0x0c;
  out.writeUInt16BE(type, o);
  out.writeUInt16BE(DNS_CLASS_IN, o + 2);
  out.writeUInt32BE(ttl >>> 0, o + 4);
  out.writeUInt16BE(rdata.length, o + 8);
  out.set(rdata, o + 10);
  return out;
}

/** One resource record in an answer built by {@link buildAnswer}. */
export interface DnsRecord {
  readonly type: number;
  readonly ttl: number;
  readonly rdata: Uint8Array;
}

/**
 * Builds an ordinary authoritative answer (the lab resolver's), echoing the question: RCODE 0 with
 * `records`, or NXDOMAIN (3) when `records` is null.
 */
export function buildAnswer(
  query: Uint8Array,
  q: DnsQuestion,
  records: readonly DnsRecord[] | null,
): Buffer {
  const size = records?.reduce((n, r) => n + 12 + r.rdata.length, 0) ?? 0;
  const out = Buffer.alloc(q.questionEnd + size);
  out.set(query.subarray(0, q.questionEnd), 0);
  out.writeUInt16BE(0x8400 | (q.flags & 0x0100) | (records ? 0 : 3), 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(records?.length ?? 0, 6);
  out.writeUInt16BE(0, 8);
  out.writeUInt16BE(0, 10);
  let o = q.questionEnd;
  for (const r of records ?? []) {
    out[o++] = 0xc0;
    out[o++] = 0x0c;
    out.writeUInt16BE(r.type, o);
    out.writeUInt16BE(DNS_CLASS_IN, o + 2);
    out.writeUInt32BE(r.ttl >>> 0, o + 4);
    out.writeUInt16BE(r.rdata.length, o + 8);
    out.set(r.rdata, o + 10);
    o += 10 + r.rdata.length;
  }
  return out;
}

/** Builds a one-question query (RD set), for tests and the report card. */
export function buildQuery(id: number, name: string, qtype: number): Buffer {
  const labels = name.split('.').filter((l) => l.length > 0);
  const qnameLen = labels.reduce((n, l) => n + 1 + l.length, 1);
  const out = Buffer.alloc(DNS_HEADER_LENGTH + qnameLen + 4);
  out.writeUInt16BE(id, 0);
  out.writeUInt16BE(0x0100, 2);
  out.writeUInt16BE(1, 4);
  let o = DNS_HEADER_LENGTH;
  for (const l of labels) {
    out[o++] = l.length;
    out.write(l, o, 'latin1');
    o += l.length;
  }
  out[o++] = 0;
  out.writeUInt16BE(qtype, o);
  out.writeUInt16BE(DNS_CLASS_IN, o + 2);
  return out;
}

/** Reads the answers' TYPE and RDATA from a response (after one question); for tests and clients. */
export function decodeAnswers(buf: Uint8Array): { rcode: number; answers: DnsRecord[] } {
  const q = decodeDnsQuestion(buf, 0);
  if (!q) throw new CodecError('ERR_CODEC', 'DNS: truncated response');
  const an = (buf[6]! << 8) | buf[7]!;
  let o = q.value.questionEnd;
  const answers: DnsRecord[] = [];
  for (let i = 0; i < an; i++) {
    // name: pointer or labels
    while (o < buf.length) {
      const b = buf[o]!;
      if (b === 0) {
        o++;
        break;
      }
      if ((b & 0xc0) === 0xc0) {
        o += 2;
        break;
      }
      o += 1 + b;
    }
    if (o + 10 > buf.length) throw new CodecError('ERR_CODEC', 'DNS: truncated answer');
    const type = (buf[o]! << 8) | buf[o + 1]!;
    const ttl =
      ((buf[o + 4]! << 24) | (buf[o + 5]! << 16) | (buf[o + 6]! << 8) | buf[o + 7]!) >>> 0;
    const len = (buf[o + 8]! << 8) | buf[o + 9]!;
    if (o + 10 + len > buf.length) throw new CodecError('ERR_CODEC', 'DNS: truncated RDATA');
    answers.push({ type, ttl, rdata: buf.slice(o + 10, o + 10 + len) });
    o += 10 + len;
  }
  return { rcode: q.value.flags & 0x0f, answers };
}
