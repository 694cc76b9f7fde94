/**
 * A regional firewall, Henan mode (docs/censorship-techniques.md §9; Wu et al., S&P 2025,
 * `gfw-report/sp25-regional:paper/main.tex`): China Unicom Henan's device, a wall behind the wall.
 *
 * Trigger: a single client→server TCP segment leaving the region (client in `region`, server outside
 * it — other provinces too), on any port, with no handshake needed, no TCP and no TLS reassembly,
 * whose TCP header is exactly 20 bytes (no options; about 20% of real TLS packets), and which holds a
 * whole ClientHello with a listed SNI or an HTTP request head with a listed Host. Every such segment
 * triggers (p = 1).
 *
 * Action: one RST+ACK to the client only, carrying the 10-byte payload 01 02 03 04 05 06 07 08 09
 * 00, IP-ID 0x0001, DF=0, TTL 58 (as observed); the segment itself is delivered; no residual.
 *
 * Evasion (§9): any TCP option — Linux sends timestamps by default, so only a client with
 * `net.ipv4.tcp_timestamps=0` (or a stack without options) meets it.
 * @module
 */
import { prefixMatcher } from '../censor/engine.js';
import type { CensorContext, CensorModule, Flow, Packet, Verdict } from '../censor/types.js';
import { buildTcpPacket, TCP_FLAG, TCP_HEADER_LENGTH } from '../packet/l4.js';
import { IP_PROTO } from '../packet/ip.js';
import { parseClientHello } from '../packet/tls-client-hello.js';
import { looksLikeHttpRequest, parseHttpRequestHead } from '../packet/http-request.js';
import { nameMatcher } from './names.js';

export interface HenanParams {
  /** Names (domain and subdomains, or `re:` regexes) the regional list blocks. */
  readonly blocklist: readonly string[];
  /** The region's prefixes: only flows from inside to outside it are inspected. */
  readonly region: readonly string[];
}

export const HENAN_DEFAULTS: HenanParams = { blocklist: [], region: [] };

/** The injected RST's payload (§9 "Action"). */
export const HENAN_RST_PAYLOAD = Buffer.from('01020304050607080900', 'hex');

/**
 * The name a single segment shows the regional filter, or undefined: its TCP header must be 20
 * bytes, and the segment alone must hold a whole ClientHello with an SNI or a whole HTTP request
 * head with a Host (pure).
 */
export function henanName(p: Pick<Packet, 'tcp' | 'payload'>): string | undefined {
  if (!p.tcp || p.tcp.headerLength !== TCP_HEADER_LENGTH || p.payload.length === 0)
    return undefined;
  const ch = parseClientHello(p.payload);
  if (ch) return ch.truncated ? undefined : ch.sni;
  if (!looksLikeHttpRequest(p.payload)) return undefined;
  const head = parseHttpRequestHead(p.payload);
  return head ? head.host : undefined;
}

export class HenanModule implements CensorModule {
  readonly name = 'henan';
  readonly #match: (n: string) => boolean;
  readonly #region: ((a: string) => boolean)[];

  constructor(params: Partial<HenanParams> = {}) {
    const p = { ...HENAN_DEFAULTS, ...params };
    this.#match = nameMatcher(p.blocklist);
    this.#region = p.region.map(prefixMatcher);
  }

  watch(flow: Flow): boolean {
    const inRegion = (a: string) =>
      this.#region.length > 0 ? this.#region.some((m) => m(a)) : false;
    return flow.proto === 'tcp' && inRegion(flow.client.addr) && !inRegion(flow.server.addr);
  }

  onPacket(p: Packet, flow: Flow, ctx: CensorContext): Verdict {
    if (!p.c2s || !p.tcp) return undefined;
    const name = henanName(p);
    if (name === undefined || !this.#match(name)) return undefined;
    // one RST+ACK to the client only: seq = what the client expects next from the server
    ctx.inject(
      buildTcpPacket({
        ip: {
          src: flow.server.addr,
          dst: flow.client.addr,
          protocol: IP_PROTO.TCP,
          ttl: 58,
          id: 0x0001,
          df: false,
        },
        srcPort: flow.server.port,
        dstPort: flow.client.port,
        seq: p.tcp.ack,
        ack: (p.tcp.seq + p.payload.length) >>> 0,
        flags: TCP_FLAG.RST | TCP_FLAG.ACK,
        payload: HENAN_RST_PAYLOAD,
      }),
    );
    ctx.emit({ module: this.name, action: 'reset' }, flow);
    return undefined;
  }
}
