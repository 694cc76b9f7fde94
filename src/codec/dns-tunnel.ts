/**
 * The DNS tunnel's wire format: a byte stream carried in DNS queries (client → server, in the
 * QNAME) and their TXT answers (server → client), through any recursive resolver that can reach
 * the tunnel domain's authoritative server. The same idea as dnstt (bamsoftware.com/software/dnstt,
 * its protocol notes), with Ladder's own small header and no crypto: the stream inside is a
 * Shadowsocks 2022 stream, which authenticates and encrypts. Pure: no I/O, randomness passed in.
 *
 * ```text
 * packet   | SESSION (32) | FLAGS (8) | SEQ (32) | ACK (32) | DATA ... |      13-byte header
 *            SESSION  the client's random session id
 *            FLAGS    0x01 FIN: the sender's stream ends after DATA (the FIN takes one offset)
 *                     0x02 RST: the session is unknown or refused (server → client only)
 *                     0x04 GAP: the sender holds data past ACK (something before it was lost)
 *            SEQ      the stream offset of DATA's first byte
 *            ACK      the next offset the sender expects from its peer (cumulative; FIN counts 1)
 * query    QNAME = base32(NONCE (4) | packet), lower case, no padding, in labels of ≤ 63
 *          characters, then the tunnel domain; QTYPE TXT, QCLASS IN, RD; an EDNS0 OPT record
 *          (RFC 6891) offering a {@link EDNS_PAYLOAD_BYTES}-byte answer. The nonce makes every
 *          name new, so no resolver answers from its cache.
 * answer   the question echoed; one TXT record (name: a pointer to the question, TTL 0) whose
 *          character-strings (≤ 255 bytes each, RFC 1035 §3.3.14) concatenated are the packet;
 *          an OPT record if the query had one.
 * ```
 *
 * Names are limited by RFC 1035 §2.3.4 (labels ≤ 63, names ≤ 255 on the wire, 253 as text); the
 * base32 of RFC 4648 §6 survives resolvers that change the case of names (0x20 mixing) and is
 * decoded whatever the case. Decoders are bounded by the message they are given and throw
 * CodecError on anything malformed.
 * @module
 */
import { CodecError } from '../errors.js';
import {
  decodeDnsMessage,
  dnsMessageBytes,
  DNS_CLASS_IN,
  DNS_FLAG,
  DNS_HEADER_BYTES,
  DNS_RCODE,
  DNS_TYPE,
  type DnsMessage,
} from './dns.js';

/** SESSION (4) + FLAGS (1) + SEQ (4) + ACK (4). */
export const TUNNEL_HEADER_BYTES = 4 + 1 + 4 + 4;
/** Random bytes before the packet in each query name. */
export const TUNNEL_NONCE_BYTES = 4;
export const TUNNEL_FLAG = { FIN: 0x01, RST: 0x02, GAP: 0x04 } as const;
const KNOWN_FLAGS = TUNNEL_FLAG.FIN | TUNNEL_FLAG.RST | TUNNEL_FLAG.GAP;
/**
 * The UDP payload size the client offers in EDNS0: 1232 bytes, the size the DNS flag day 2020
 * settled on (fits a 1280-byte IPv6 MTU without fragmentation).
 */
export const EDNS_PAYLOAD_BYTES = 1232;
/** RFC 1035 §4.2.1: the answer size without EDNS. */
const PLAIN_PAYLOAD_BYTES = 512;
/** A domain name as text, without the trailing dot: at most 253 characters. */
const MAX_NAME_TEXT = 253;
const MAX_LABEL = 63;
/** Root name (1) + TYPE (2) + CLASS (2) + TTL (4) + RDLENGTH (2). */
const OPT_RECORD_BYTES = 1 + 2 + 2 + 4 + 2;
/** The answer's name as a pointer (2) + TYPE (2) + CLASS (2) + TTL (4) + RDLENGTH (2). */
const ANSWER_FIXED_BYTES = 2 + 2 + 2 + 4 + 2;
const TXT_STRING_MAX = 255;

export interface TunnelPacket {
  readonly session: number;
  readonly flags: number;
  readonly seq: number;
  readonly ack: number;
  readonly data: Uint8Array;
}

function fail(what: string): never {
  throw new CodecError('ERR_CODEC', `DNS tunnel: ${what}`);
}

/** Bytes {@link encodeTunnelPacket} writes. */
export function tunnelPacketLength(p: TunnelPacket): number {
  return TUNNEL_HEADER_BYTES + p.data.length;
}

/** Writes `p` at `offset`; returns the bytes written. */
export function encodeTunnelPacket(p: TunnelPacket, out: Uint8Array, offset: number): number {
  const len = tunnelPacketLength(p);
  if (out.length - offset < len) fail('output buffer too small');
  if ((p.flags & ~KNOWN_FLAGS) !== 0) fail(`unknown flags 0x${p.flags.toString(16)}`);
  const v = new DataView(out.buffer, out.byteOffset + offset, len);
  v.setUint32(0, p.session >>> 0);
  v.setUint8(4, p.flags);
  v.setUint32(5, p.seq >>> 0);
  v.setUint32(9, p.ack >>> 0);
  out.set(p.data, offset + TUNNEL_HEADER_BYTES);
  return len;
}

/** Reads one packet filling `buf` from `offset` to its end (DATA is a view). */
export function decodeTunnelPacket(buf: Uint8Array, offset: number): TunnelPacket {
  if (buf.length - offset < TUNNEL_HEADER_BYTES) fail('a packet shorter than its header');
  const v = new DataView(buf.buffer, buf.byteOffset + offset, TUNNEL_HEADER_BYTES);
  const flags = v.getUint8(4);
  if ((flags & ~KNOWN_FLAGS) !== 0) fail(`unknown flags 0x${flags.toString(16)}`);
  return {
    session: v.getUint32(0),
    flags,
    seq: v.getUint32(5),
    ack: v.getUint32(9),
    data: buf.subarray(offset + TUNNEL_HEADER_BYTES),
  };
}

const B32 = 'abcdefghijklmnopqrstuvwxyz234567';
const B32_VALUE = new Int8Array(128).fill(-1);
for (let i = 0; i < 32; i++) {
  B32_VALUE[B32.charCodeAt(i)] = i;
  B32_VALUE[B32.toUpperCase().charCodeAt(i)] = i;
}

/** RFC 4648 §6 base32, lower case, without padding. */
export function base32Encode(bytes: Uint8Array): string {
  let out = '';
  let acc = 0;
  let bits = 0;
  for (const b of bytes) {
    acc = ((acc << 8) | b) & 0xfff;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += B32[(acc >>> bits) & 31];
    }
  }
  if (bits > 0) out += B32[(acc << (5 - bits)) & 31];
  return out;
}

/** Decodes unpadded base32 in either case; throws on a character outside the alphabet. */
export function base32Decode(text: string): Uint8Array {
  // RFC 4648 §6: 8 characters carry 5 bytes; a tail of 1, 3 or 6 characters cannot be whole bytes.
  const tail = text.length % 8;
  if (tail === 1 || tail === 3 || tail === 6) fail('base32 text of an impossible length');
  const out = new Uint8Array(Math.floor((text.length * 5) / 8));
  let acc = 0;
  let bits = 0;
  let o = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const v = c < 128 ? B32_VALUE[c]! : -1;
    if (v < 0) fail('a query name with a character outside base32');
    acc = ((acc << 5) | v) & 0xfff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >>> bits) & 0xff;
    }
  }
  return out;
}

/**
 * The tunnel domain in canonical form (lower case, no trailing dot), checked: 1 to 63-character
 * labels of letters, digits and hyphens, short enough to leave room for data in a name.
 */
export function checkTunnelDomain(domain: string): string {
  const d = (domain.endsWith('.') ? domain.slice(0, -1) : domain).toLowerCase();
  const labels = d.split('.');
  if (d.length === 0 || labels.some((l) => !/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(l)))
    throw new CodecError(
      'ERR_CODEC',
      `DNS tunnel: the domain '${domain.slice(0, 80)}' is not a host name (labels of letters, digits and hyphens, e.g. t.example.com)`,
    );
  if (maxUpstreamData(d) < 16)
    throw new CodecError(
      'ERR_CODEC',
      `DNS tunnel: the domain '${d.slice(0, 80)}' is too long to leave room for data in a name (keep it under 150 characters)`,
    );
  return d;
}

/** Base32 characters that fit in a name under `domain` (labels of ≤ 63, each with its dot). */
function maxDataChars(domain: string): number {
  const avail = MAX_NAME_TEXT - domain.length - 1;
  if (avail <= 0) return 0;
  // n characters take n + ceil(n / 63) with the dots; the largest n that fits.
  let n = avail - Math.ceil(avail / (MAX_LABEL + 1));
  while (n + Math.ceil(n / MAX_LABEL) > avail) n--;
  // Only lengths that decode to whole bytes with no spare character.
  while (n > 0 && [1, 3, 6].includes(n % 8)) n--;
  return Math.max(0, n);
}

/** Stream bytes one query can carry under `domain` (after the nonce and the packet header). */
export function maxUpstreamData(domain: string): number {
  return Math.floor((maxDataChars(domain) * 5) / 8) - TUNNEL_NONCE_BYTES - TUNNEL_HEADER_BYTES;
}

/**
 * A query carrying `packet` under `domain` (canonical, from {@link checkTunnelDomain}), with DNS ID
 * `id` and the name's `nonce` ({@link TUNNEL_NONCE_BYTES} random bytes).
 */
export function encodeTunnelQuery(
  domain: string,
  packet: TunnelPacket,
  id: number,
  nonce: Uint8Array,
): Buffer {
  if (nonce.length !== TUNNEL_NONCE_BYTES) fail('a nonce of the wrong length');
  if (packet.data.length > maxUpstreamData(domain)) fail('too much data for one query');
  const raw = new Uint8Array(TUNNEL_NONCE_BYTES + tunnelPacketLength(packet));
  raw.set(nonce, 0);
  encodeTunnelPacket(packet, raw, TUNNEL_NONCE_BYTES);
  const text = base32Encode(raw);
  const labels: string[] = [];
  for (let i = 0; i < text.length; i += MAX_LABEL) labels.push(text.slice(i, i + MAX_LABEL));
  const m: DnsMessage = {
    id,
    flags: DNS_FLAG.RD,
    questions: [{ name: `${labels.join('.')}.${domain}`, type: DNS_TYPE.TXT, class: DNS_CLASS_IN }],
    answers: [],
    authorities: [],
    // RFC 6891 §6.1.2: the OPT record's CLASS is the requestor's UDP payload size.
    additionals: [
      { name: '', type: DNS_TYPE.OPT, class: EDNS_PAYLOAD_BYTES, ttl: 0, data: new Uint8Array(0) },
    ],
  };
  return dnsMessageBytes(m);
}

/** A query the tunnel server read: its packet, or why it carries none. */
export type TunnelQuery =
  | {
      readonly kind: 'tunnel';
      readonly message: DnsMessage;
      readonly packet: TunnelPacket;
      /** The largest answer the asker takes (EDNS0 payload size, clamped to 512..1232). */
      readonly answerLimit: number;
    }
  /** A query for a name under the domain that carries no packet (e.g. QNAME minimisation). */
  | { readonly kind: 'other'; readonly message: DnsMessage; readonly answerLimit: number }
  /** A query for a name outside the domain. */
  | { readonly kind: 'foreign'; readonly message: DnsMessage; readonly answerLimit: number };

function answerLimitOf(m: DnsMessage): number {
  const opt = m.additionals.find((r) => r.type === DNS_TYPE.OPT);
  if (!opt) return PLAIN_PAYLOAD_BYTES;
  return Math.min(EDNS_PAYLOAD_BYTES, Math.max(PLAIN_PAYLOAD_BYTES, opt.class));
}

/**
 * Reads a query sent to the tunnel server for `domain` (canonical). Throws CodecError for a
 * message that is not a standard query with one question; a name outside the domain, or one under
 * it that does not decode to a packet, is returned as such (the server answers those without
 * data, as an authoritative server answers names it has no records for).
 */
export function decodeTunnelQuery(buf: Uint8Array, domain: string): TunnelQuery {
  const d = decodeDnsMessage(buf, 0);
  if (!d) fail('a truncated DNS message');
  const m = d.value;
  // RFC 1035 §4.1.1: QR 0 and OPCODE 0 (a standard query), one question.
  if ((m.flags & DNS_FLAG.QR) !== 0 || ((m.flags >>> 11) & 0xf) !== 0) fail('not a standard query');
  if (m.questions.length !== 1) fail('a query without exactly one question');
  const answerLimit = answerLimitOf(m);
  const q = m.questions[0]!;
  const name = q.name.toLowerCase();
  const suffix = `.${domain}`;
  if (name !== domain && !name.endsWith(suffix))
    return { kind: 'foreign', message: m, answerLimit };
  if (q.type !== DNS_TYPE.TXT || name === domain) return { kind: 'other', message: m, answerLimit };
  const text = name.slice(0, -suffix.length).replaceAll('.', '');
  let raw: Uint8Array;
  try {
    raw = base32Decode(text);
  } catch {
    return { kind: 'other', message: m, answerLimit };
  }
  if (raw.length < TUNNEL_NONCE_BYTES + TUNNEL_HEADER_BYTES)
    return { kind: 'other', message: m, answerLimit };
  return {
    kind: 'tunnel',
    message: m,
    packet: decodeTunnelPacket(raw, TUNNEL_NONCE_BYTES),
    answerLimit,
  };
}

/** Bytes of an answer to `query` before its packet: header, question, TXT record, OPT. */
function answerOverhead(query: DnsMessage, packetBytes: number): number {
  const q = query.questions[0]!;
  const qname = q.name.length === 0 ? 1 : q.name.length + 2;
  const strings = Math.max(1, Math.ceil(packetBytes / TXT_STRING_MAX));
  const opt = query.additionals.some((r) => r.type === DNS_TYPE.OPT) ? OPT_RECORD_BYTES : 0;
  return DNS_HEADER_BYTES + qname + 4 + ANSWER_FIXED_BYTES + strings + opt;
}

/** Stream bytes an answer to `q` can carry within its asker's limit. */
export function maxDownstreamData(q: TunnelQuery): number {
  // Start from the limit and step down: the count of TXT strings depends on the length.
  let n = q.answerLimit - answerOverhead(q.message, 0) - TUNNEL_HEADER_BYTES;
  while (
    n > 0 &&
    answerOverhead(q.message, n + TUNNEL_HEADER_BYTES) + n + TUNNEL_HEADER_BYTES > q.answerLimit
  )
    n--;
  return Math.max(0, n);
}

/**
 * The answer to `query`: with `packet`, one TXT record carrying it; without, an empty answer with
 * `rcode` (NOERROR: the name exists but has no such data; REFUSED for a name outside the domain).
 */
export function encodeTunnelAnswer(
  query: DnsMessage,
  packet: TunnelPacket | null,
  rcode: number = DNS_RCODE.NOERROR,
): Buffer {
  const q = query.questions[0];
  if (!q) fail('an answer needs the query’s question');
  const qname = q.name.length === 0 ? 1 : q.name.length + 2;
  const packetBytes = packet ? tunnelPacketLength(packet) : 0;
  const hasOpt = query.additionals.some((r) => r.type === DNS_TYPE.OPT);
  const len = packet
    ? answerOverhead(query, packetBytes) + packetBytes
    : DNS_HEADER_BYTES + qname + 4 + (hasOpt ? OPT_RECORD_BYTES : 0);
  const out = Buffer.alloc(len);
  out.writeUInt16BE(query.id, 0);
  // QR and AA; RD copied from the query (RFC 1035 §4.1.1).
  out.writeUInt16BE(DNS_FLAG.QR | DNS_FLAG.AA | (query.flags & DNS_FLAG.RD) | (rcode & 0xf), 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(packet ? 1 : 0, 6);
  out.writeUInt16BE(0, 8);
  out.writeUInt16BE(hasOpt ? 1 : 0, 10);
  let o = DNS_HEADER_BYTES;
  // The question as asked (the case too: resolvers that mix case check it comes back).
  if (q.name.length > 0)
    for (const label of q.name.split('.')) {
      out[o++] = label.length;
      o += out.write(label, o, 'latin1');
    }
  out[o++] = 0;
  out.writeUInt16BE(q.type, o);
  out.writeUInt16BE(q.class, o + 2);
  o += 4;
  if (packet) {
    // RFC 1035 §4.1.4: a pointer to the question's name, at offset 12.
    out.writeUInt16BE(0xc000 | DNS_HEADER_BYTES, o);
    out.writeUInt16BE(DNS_TYPE.TXT, o + 2);
    out.writeUInt16BE(DNS_CLASS_IN, o + 4);
    out.writeUInt32BE(0, o + 6);
    const strings = Math.max(1, Math.ceil(packetBytes / TXT_STRING_MAX));
    out.writeUInt16BE(packetBytes + strings, o + 10);
    o += ANSWER_FIXED_BYTES;
    const body = new Uint8Array(packetBytes);
    encodeTunnelPacket(packet, body, 0);
    for (let i = 0; i < strings; i++) {
      const part = body.subarray(i * TXT_STRING_MAX, (i + 1) * TXT_STRING_MAX);
      out[o++] = part.length;
      out.set(part, o);
      o += part.length;
    }
  }
  if (hasOpt) {
    out[o] = 0;
    out.writeUInt16BE(DNS_TYPE.OPT, o + 1);
    out.writeUInt16BE(EDNS_PAYLOAD_BYTES, o + 3);
    // TTL (extended RCODE, version, flags) and RDLENGTH stay 0.
    o += OPT_RECORD_BYTES;
  }
  if (o !== len) fail('answer length mismatch');
  return out;
}

/**
 * Reads an answer from the tunnel server: the DNS ID and the packet in its TXT record (null for
 * an answer that carries none: an error code, no TXT record, a resolver's failure).
 * Throws CodecError for a malformed message or TXT data.
 */
export function decodeTunnelAnswer(buf: Uint8Array): {
  id: number;
  packet: TunnelPacket | null;
} {
  const d = decodeDnsMessage(buf, 0);
  if (!d) fail('a truncated DNS message');
  const m = d.value;
  if ((m.flags & DNS_FLAG.QR) === 0) fail('not an answer');
  const txt = m.answers.find((r) => r.type === DNS_TYPE.TXT);
  if ((m.flags & 0xf) !== DNS_RCODE.NOERROR || !txt || !(txt.data instanceof Uint8Array))
    return { id: m.id, packet: null };
  // RFC 1035 §3.3.14: one or more <character-string>s, each a length byte and that many bytes.
  const rd = txt.data;
  const body = new Uint8Array(rd.length);
  let n = 0;
  for (let o = 0; o < rd.length;) {
    const len = rd[o]!;
    if (o + 1 + len > rd.length) fail('a TXT string longer than its record');
    body.set(rd.subarray(o + 1, o + 1 + len), n);
    n += len;
    o += 1 + len;
  }
  return { id: m.id, packet: decodeTunnelPacket(body.subarray(0, n), 0) };
}
