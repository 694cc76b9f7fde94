/**
 * Fake-IP DNS for the TUN front: every A query is answered at once, locally, with an address from a
 * reserved range that stands for the name; a connection to that address is later dialled by the
 * name, so the name travels to the server and is resolved there. No query ever leaves the machine,
 * and no answer from a (possibly poisoned) resolver is ever used.
 *
 * - A: an address from the pool (one per name, kept while used; the least recently used name gives
 *   up its address when the pool's table is full). Names the client itself must reach for real (its
 *   servers' host names) are answered with their real addresses, resolved before routing changed.
 * - AAAA, when IPv6 is carried (`range6` given): an address from the IPv6 range with the same
 *   offset as the name's IPv4 one, so one table serves both; pinned names get their real IPv6
 *   addresses. Without `range6`: NOERROR with no answer, so apps use IPv4.
 * - Every other type: NOERROR with no answer.
 * - Anything that is not one standard query with one IN question: FORMERR / NOTIMP, or nothing for
 *   bytes that are not a DNS query at all.
 * No I/O: the front hands the query bytes in and writes the answer bytes out.
 * @module
 */
import {
  DNS_CLASS_IN,
  DNS_FLAG,
  DNS_RCODE,
  DNS_TYPE,
  decodeDnsMessage,
  dnsMessageBytes,
  type DnsMessage,
  type DnsRecord,
} from '../../codec/dns.js';
import { ipv4ToU32, u32ToIpv4 } from '../../codec/ip-packet.js';
import { bytesToIPv6, ipv6ToBytes } from '../../codec/socks-addr.js';

/** The default fake range: inside 100.64.0.0/10 (RFC 6598 shared address space), not 198.18/15. */
export const DEFAULT_FAKE_RANGE = '100.96.0.0/12';
/**
 * The default IPv6 fake range: a /64 of the unique local /48 fd4c:6164:6472::/48 (RFC 4193: fd00::/8
 * is never routed on the internet, so no fake address can stand in for a real destination, as
 * 100.64.0.0/10 for IPv4; the 40-bit global ID is fixed for Ladder so that the range is the same on
 * every machine and documented). The device's own /126 is fd4c:6164:6472::/126 (tun-routing.ts).
 * A fake address is the /64 followed by 32 zero bits and the name's 32-bit offset.
 */
export const DEFAULT_FAKE_RANGE6 = 'fd4c:6164:6472:1::/64';
/** Short, so that an address given up to another name is not used from an app's cache for long. */
export const FAKE_TTL_S = 10;
/** Names kept at once (and so addresses handed out); the least recently used is recycled. */
export const DEFAULT_MAX_NAMES = 65_536;

export interface FakeDnsOptions {
  /** CIDR of the fake range (default {@link DEFAULT_FAKE_RANGE}). */
  range?: string;
  maxNames?: number;
  /** Lower-case names answered with real addresses (the client's servers). */
  pinned?: ReadonlyMap<string, readonly string[]>;
  /** An IPv6 /64 (`x:x:x:x::/64`) to answer AAAA from; without it AAAA gets no answer. */
  range6?: string;
}

/** Parses an IPv6 `/64` into its 8 prefix bytes; throws Error with the fix for anything else. */
export function parseIpv6Prefix64(text: string): Uint8Array {
  // Up to four groups of 1 to 4 hex digits, then '::' (the interface half is the fake offsets').
  const m = /^((?:[0-9a-fA-F]{1,4}:){1,4}):\/64$/.exec(text);
  if (!m) throw new Error(`'${text.slice(0, 50)}' must be an IPv6 range x:x:x:x::/64`);
  return ipv6ToBytes(`${m[1]!}:`).slice(0, 8);
}

/** Parses `a.b.c.d/n` into a base and size; throws Error with the fix for anything else. */
export function parseIpv4Cidr(text: string): { base: number; size: number } {
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(text);
  const bits = m ? Number(m[2]) : -1;
  if (!m || bits < 8 || bits > 24)
    throw new Error(`'${text.slice(0, 40)}' must be an IPv4 range a.b.c.d/n with n from 8 to 24`);
  const size = 2 ** (32 - bits);
  const base = ipv4ToU32(m[1]!);
  if (base % size !== 0) throw new Error(`'${text}': the address is not the start of a /${bits}`);
  return { base, size };
}

export class FakeDns {
  readonly #base: number;
  readonly #size: number;
  readonly #max: number;
  readonly #pinned: ReadonlyMap<string, readonly string[]>;
  readonly #prefix6: Uint8Array | undefined;
  /** name → offset in the range; Map order is recency (re-inserted on use). */
  readonly #byName = new Map<string, number>();
  readonly #byOffset = new Map<number, string>();
  #next = 1;

  constructor(o: FakeDnsOptions = {}) {
    const r = parseIpv4Cidr(o.range ?? DEFAULT_FAKE_RANGE);
    this.#base = r.base;
    this.#size = r.size;
    // Offsets 0 and size-1 (network and broadcast of the range) are never handed out.
    this.#max = Math.min(o.maxNames ?? DEFAULT_MAX_NAMES, r.size - 2);
    this.#pinned = o.pinned ?? new Map();
    this.#prefix6 = o.range6 === undefined ? undefined : parseIpv6Prefix64(o.range6);
  }

  /** True if IPv6 fake addresses are handed out. */
  get carriesIpv6(): boolean {
    return this.#prefix6 !== undefined;
  }

  /** True if the 16 bytes `ip` are in the IPv6 fake range. */
  isFake6(ip: Uint8Array): boolean {
    const p = this.#prefix6;
    if (!p) return false;
    for (let i = 0; i < 12; i++) if (ip[i] !== (i < 8 ? p[i] : 0)) return false;
    return true;
  }

  /** The name an IPv6 fake address stands for, or undefined. */
  nameOf6(ip: Uint8Array): string | undefined {
    if (!this.isFake6(ip)) return undefined;
    const offset = ((ip[12]! << 24) | (ip[13]! << 16) | (ip[14]! << 8) | ip[15]!) >>> 0;
    return this.#byOffset.get(offset);
  }

  /** The IPv6 fake address (16 bytes) for `name`; throws if no IPv6 range was given. */
  addressOf6(name: string): Uint8Array {
    const p = this.#prefix6;
    if (!p) throw new Error('no IPv6 fake range');
    const offset = this.addressOf(name) - this.#base;
    const out = new Uint8Array(16);
    out.set(p, 0);
    out[12] = offset >>> 24;
    out[13] = (offset >>> 16) & 0xff;
    out[14] = (offset >>> 8) & 0xff;
    out[15] = offset & 0xff;
    return out;
  }

  /** True if `ip` (u32) is in the fake range. */
  isFake(ip: number): boolean {
    return ip - this.#base >= 0 && ip - this.#base < this.#size;
  }

  /** The name a fake address stands for, or undefined if it stands for none (now). */
  nameOf(ip: number): string | undefined {
    return this.#byOffset.get(ip - this.#base);
  }

  /** The fake address (u32) for `name`, handing one out (or recycling one) if it has none. */
  addressOf(name: string): number {
    const key = name.toLowerCase().replace(/\.$/, '');
    const have = this.#byName.get(key);
    if (have !== undefined) {
      this.#byName.delete(key);
      this.#byName.set(key, have);
      return this.#base + have;
    }
    let offset: number;
    if (this.#byName.size >= this.#max) {
      const [oldest, off] = this.#byName.entries().next().value as [string, number];
      this.#byName.delete(oldest);
      offset = off;
    } else {
      offset = this.#next++;
    }
    this.#byName.set(key, offset);
    this.#byOffset.set(offset, key);
    return this.#base + offset;
  }

  /** The answer to a DNS query message, or null for bytes that are not a query to answer. */
  answer(query: Uint8Array): Buffer | null {
    let m: DnsMessage;
    try {
      const d = decodeDnsMessage(query, 0);
      if (!d) return null;
      m = d.value;
    } catch {
      return null;
    }
    if (m.flags & DNS_FLAG.QR) return null; // a response, not a query
    const reply = (rcode: number, answers: DnsRecord[] = []): Buffer =>
      dnsMessageBytes({
        id: m.id,
        flags: DNS_FLAG.QR | (m.flags & DNS_FLAG.RD) | DNS_FLAG.RA | rcode,
        questions: m.questions,
        answers,
        authorities: [],
        additionals: [],
      });
    const opcode = (m.flags >> 11) & 0x0f;
    if (opcode !== 0) return reply(DNS_RCODE.NOTIMP);
    const q = m.questions[0];
    if (m.questions.length !== 1 || !q) return reply(DNS_RCODE.FORMERR);
    const v6 = q.type === DNS_TYPE.AAAA && this.#prefix6 !== undefined;
    if (q.class !== DNS_CLASS_IN || (q.type !== DNS_TYPE.A && !v6) || q.name === '')
      return reply(DNS_RCODE.NOERROR);
    try {
      const pinned = this.#pinned.get(q.name.toLowerCase().replace(/\.$/, ''));
      const fake = (): string =>
        v6 ? bytesToIPv6(this.addressOf6(q.name)) : u32ToIpv4(this.addressOf(q.name));
      const addresses = pinned ?? [fake()];
      return reply(
        DNS_RCODE.NOERROR,
        addresses
          .filter((a) => (v6 ? a.includes(':') : a.includes('.')))
          .map((data) => ({
            name: q.name,
            type: v6 ? DNS_TYPE.AAAA : DNS_TYPE.A,
            class: DNS_CLASS_IN,
            ttl: FAKE_TTL_S,
            data,
          })),
      );
    } catch {
      return reply(DNS_RCODE.FORMERR);
    }
  }
}
