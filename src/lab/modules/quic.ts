/**
 * QUIC SNI filtering (docs/censorship-techniques.md §8; Zohaib et al., USENIX Security 2025, active since 2024-04-07).
 *
 * Trigger: the first UDP datagram of a 4-tuple flow (flow state lasts 60 s, engine UDP_IDLE_MS) is a
 * QUIC v1 Initial that decrypts and authenticates with the keys derived from its DCID, whose first
 * frame is CRYPTO (PING/PADDING first is not inspected), whose ClientHello names a listed SNI, with
 * source port > destination port, travelling inside→outside (only outbound since 2025-03-13).
 * Action: the Initial itself is delivered; every later UDP datagram on the 3-tuple (src IP, dst IP,
 * dst port) from the client is dropped for 180 s, whatever its source port.
 *
 * Load shedding (§8; gfw-report/usenixsecurity25-quic-sni: blocking degrades under load): with
 * `capacityPerSecond`, Initials beyond that many in one second of the engine's clock are not
 * inspected. QUIC v2 (another version number) and ECH (the outer SNI is the public name) pass by
 * construction: only v1 Initials are opened, and the SNI read is the outer one.
 * @module
 */
import type { CensorContext, CensorModule, Flow, Packet, Verdict } from '../censor/types.js';
import { parseClientHello } from '../packet/tls-client-hello.js';
import { asTlsRecord, openQuicInitial, readInitialFrames } from '../packet/quic.js';
import { nameMatcher } from './names.js';

export interface QuicParams {
  readonly blocklist: readonly string[];
  readonly residualSeconds: number;
  readonly requireSportGtDport: boolean;
  readonly requireCryptoFirst: boolean;
  /** Inspect outside→inside too (before 2025-03-13). */
  readonly bidirectional: boolean;
  /** Initials inspected per second at most; the rest pass (load shedding). */
  readonly capacityPerSecond: number;
}

export const QUIC_DEFAULTS: QuicParams = {
  blocklist: [],
  residualSeconds: 180,
  requireSportGtDport: true,
  requireCryptoFirst: true,
  bidirectional: false,
  capacityPerSecond: Infinity,
};

/** The SNI of a QUIC v1 client Initial as the GFW reads it (§8), or undefined. */
export function quicInitialSni(
  d: Uint8Array,
  requireCryptoFirst = QUIC_DEFAULTS.requireCryptoFirst,
): string | undefined {
  const opened = openQuicInitial(d);
  if (!opened) return undefined;
  const frames = readInitialFrames(opened.payload);
  const first = frames[0];
  if (!first || (requireCryptoFirst && first.type !== 0x06)) return undefined;
  const crypto = frames.find((f) => f.type === 0x06 && f.offset === 0);
  if (!crypto?.data) return undefined;
  return parseClientHello(asTlsRecord(crypto.data))?.sni;
}

export class QuicModule implements CensorModule {
  readonly name = 'quic';
  readonly #p: QuicParams;
  readonly #match: (n: string) => boolean;
  #second = -1;
  #inspected = 0;

  constructor(params: Partial<QuicParams> = {}) {
    this.#p = { ...QUIC_DEFAULTS, ...params };
    this.#match = nameMatcher(this.#p.blocklist);
  }

  watch(flow: Flow): boolean {
    if (flow.proto !== 'udp') return false;
    if (!this.#p.bidirectional && !flow.outbound) return false;
    return !this.#p.requireSportGtDport || flow.client.port > flow.server.port;
  }

  onPacket(p: Packet, flow: Flow, ctx: CensorContext): Verdict {
    flow.watchers.delete(this); // only the flow's first datagram is inspected (§8)
    if (!p.c2s) return undefined;
    const second = Math.floor(ctx.now() / 1000);
    if (second !== this.#second) {
      this.#second = second;
      this.#inspected = 0;
    }
    if (++this.#inspected > this.#p.capacityPerSecond) {
      if (this.#inspected === Math.floor(this.#p.capacityPerSecond) + 1)
        ctx.emit({ module: this.name, action: 'shed' }, flow);
      return undefined;
    }
    const sni = quicInitialSni(p.payload, this.#p.requireCryptoFirst);
    if (sni === undefined || !this.#match(sni)) return undefined;
    ctx.addResidual(flow.key3, this.name, this.#p.residualSeconds, 'drop', 'c2s');
    ctx.emit({ module: this.name, action: 'block', detail: 'blocked SNI in QUIC Initial' }, flow);
    return undefined; // the triggering Initial is delivered (§8)
  }
}
