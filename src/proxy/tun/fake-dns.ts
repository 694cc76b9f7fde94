/**
 * Fake-IP DNS for the TUN front: every A query is answered at once, locally, with an address from a
 * reserved range that stands for the name; a connection to that address is later dialled by the
 * name, so the name travels to the server and is resolved there. No query ever leaves the machine,
 * and no answer from a (possibly poisoned) resolver is ever used.
 *
 * - A: an address from the pool (one per name, kept while used; the least recently used name gives
 *   up its address when the pool's table is full). Names the client itself must reach for real (its
 *   servers' host names) are answered with their real addresses, resolved before routing changed.
 * - AAAA and every other type: NOERROR with no answer, so apps use IPv4 (IPv6 is not carried,
 *   docs/tun.md).
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

/** The default fake range: inside 100.64.0.0/10 (RFC 6598 shared address space), not 198.18/15. */
export const DEFAULT_FAKE_RANGE = '100.96.0.0/12';
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
    if (q.class !== DNS_CLASS_IN || q.type !== DNS_TYPE.A || q.name === '')
      return reply(DNS_RCODE.NOERROR);
    try {
      const pinned = this.#pinned.get(q.name.toLowerCase().replace(/\.$/, ''));
      const addresses = pinned ?? [u32ToIpv4(this.addressOf(q.name))];
      return reply(
        DNS_RCODE.NOERROR,
        addresses
          .filter((a) => a.includes('.'))
          .map((data) => ({
            name: q.name,
            type: DNS_TYPE.A,
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
