/**
 * DNS poisoning by on-path injection (docs/censorship-techniques.md §4; `gfw-report/ndss25-wallbleed:blackbox/
 * blackbox.c`). Any UDP datagram to port 53, towards any address, that is a query (QR=0) of at
 * least 12 bytes whose flattened QNAME matches the blocklist, with QCLASS IN (since the 2024 patch),
 * gets 1–3 forged answers from the queried address that race the genuine one; the genuine answer is
 * not dropped. Answers follow the published format (dns.ts) with addresses cycled from ordered pools.
 * @module
 */
import {
  buildForgedAnswer,
  decodeDnsQuestion,
  DNS_CLASS_IN,
  DNS_TYPE,
  isQuery,
} from '../packet/dns.js';
import { ipv4Bytes, ipv6Bytes } from '../packet/ip.js';
import { buildUdpPacket } from '../packet/l4.js';
import type { CensorContext, CensorModule, Flow, Packet, Verdict } from '../censor/types.js';
import { nameMatcher } from './names.js';

export interface DnsParams {
  readonly blocklist: readonly string[];
  /** Forged answers per query: each injector answers once (§4: 1–3). */
  readonly injectors: number;
  readonly requireClassIn: boolean;
  /** Forged IPv4/IPv6 addresses, cycled in order per injector. */
  readonly poolV4: readonly string[];
  readonly poolV6: readonly string[];
  readonly bidirectional: boolean;
}

/**
 * Fake-address pools. The published pools (§4: 592 IPv4 and 30 IPv6 addresses of Injector 3,
 * largely Facebook, Twitter and Dropbox space) are real third-party addresses; the lab must never
 * send traffic to them, so the defaults here are lab addresses from 198.18.0.0/15 and 2001:2::/48
 * that nothing answers on. A policy may list the published pool to check a client's forged-answer
 * detection, since forged answers are only ever written, never connected to, by the lab.
 */
export const DNS_DEFAULTS: DnsParams = {
  blocklist: [],
  injectors: 2,
  requireClassIn: true,
  poolV4: Array.from({ length: 16 }, (_, i) => `198.18.254.${10 + i}`),
  poolV6: Array.from({ length: 4 }, (_, i) => `2001:2:0:fe::${(10 + i).toString(16)}`),
  bidirectional: true,
};

export class DnsModule implements CensorModule {
  readonly name = 'dns';
  readonly #p: DnsParams;
  readonly #match: (n: string) => boolean;
  readonly #next: number[];

  constructor(params: Partial<DnsParams> = {}) {
    this.#p = { ...DNS_DEFAULTS, ...params };
    this.#match = nameMatcher(this.#p.blocklist);
    this.#next = Array.from({ length: this.#p.injectors }, () => 0);
  }

  watch(flow: Flow): boolean {
    return (
      flow.proto === 'udp' && flow.server.port === 53 && (this.#p.bidirectional || flow.outbound)
    );
  }

  onPacket(p: Packet, flow: Flow, ctx: CensorContext): Verdict {
    if (!p.c2s || p.dstPort !== 53 || p.payload.length < 12) return undefined;
    let q;
    try {
      q = decodeDnsQuestion(p.payload, 0);
    } catch {
      return undefined;
    }
    if (!q || !isQuery(q.value.flags)) return undefined;
    if (this.#p.requireClassIn && q.value.qclass !== DNS_CLASS_IN) return undefined;
    if (!this.#match(q.value.name)) return undefined;
    const aaaa = q.value.qtype === DNS_TYPE.AAAA;
    const pool = aaaa ? this.#p.poolV6 : this.#p.poolV4;
    for (let i = 0; i < this.#p.injectors; i++) {
      const n = this.#next[i]!;
      const addr = pool[(n + i * 7) % pool.length]!;
      this.#next[i] = n + 1;
      const answer = buildForgedAnswer(
        p.payload,
        q.value,
        aaaa ? ipv6Bytes(addr) : ipv4Bytes(addr),
        60 + Math.floor(ctx.random() * 240),
      );
      // §4: one injector mirrors the query's IP TTL; the others use their own.
      const ttl = i === 0 ? p.ip.ttl : 64 + Math.floor(ctx.random() * 100);
      ctx.inject(
        buildUdpPacket({
          ip: {
            src: p.ip.dst,
            dst: p.ip.src,
            protocol: 17,
            ttl,
            id: Math.floor(ctx.random() * 0x10000),
            df: false,
          },
          srcPort: p.dstPort,
          dstPort: p.srcPort,
          payload: answer,
        }),
      );
    }
    ctx.emit({ module: this.name, action: 'forge', detail: aaaa ? 'AAAA' : 'A' }, flow);
    return undefined; // the query goes on; the genuine answer arrives after the forged ones
  }
}
