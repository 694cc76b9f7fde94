/**
 * TLS SNI filtering over TCP (docs/censorship-techniques.md §6; sp25 §4.3–4.4). The filter needs the client's SYN,
 * reassembles TCP but reads the ClientHello only from the first TLS record, on any port. On a match
 * it injects RSTs toward both ends (injector types I/II/III, §0) and resets every later connection
 * on the 3-tuple for 180 s at its first data packet.
 *
 * With `reassemble` the filter is stateful the way Russia's TSPU became in mid-2026 (teleproxy#39:
 * an MSS clamped to 88 bytes was still blocked) and China's CERNET is (n4p#550: a first record split
 * into 400 fragments was still reset): TLS records are joined before the ClientHello is read, so
 * record fragmentation no longer hides the SNI.
 * @module
 */
import { joinHandshakeRecords, parseClientHello } from '../packet/tls-client-hello.js';
import type {
  CensorContext,
  CensorModule,
  Flow,
  InjectorType,
  Packet,
  Verdict,
} from '../censor/types.js';
import { nameMatcher } from './names.js';

export interface SniParams {
  readonly blocklist: readonly string[];
  readonly residualSeconds: number;
  readonly injector: InjectorType;
  readonly requireSyn: boolean;
  /** Trigger on traffic from outside to inside too (§0: mostly bidirectional). */
  readonly bidirectional: boolean;
  /** Join the ClientHello's TLS records before reading it (a stateful filter). */
  readonly reassemble: boolean;
}

export const SNI_DEFAULTS: SniParams = {
  blocklist: [],
  residualSeconds: 180,
  injector: 'II',
  requireSyn: true,
  bidirectional: true,
  reassemble: false,
};

export class SniModule implements CensorModule {
  readonly name = 'sni';
  readonly #p: SniParams;
  readonly #match: (n: string) => boolean;

  constructor(params: Partial<SniParams> = {}) {
    this.#p = { ...SNI_DEFAULTS, ...params };
    this.#match = nameMatcher(this.#p.blocklist);
  }

  watch(flow: Flow): boolean {
    if (flow.proto !== 'tcp') return false;
    if (this.#p.requireSyn && !flow.sawSyn) return false;
    return this.#p.bidirectional || flow.outbound;
  }

  onPacket(p: Packet, flow: Flow, ctx: CensorContext): Verdict {
    if (!p.c2s || p.payload.length === 0) return undefined;
    const joined = this.#p.reassemble ? joinHandshakeRecords(flow.c2sData) : flow.c2sData;
    const ch = joined ? parseClientHello(joined) : joined;
    if (ch === null && flow.c2sData.length < 16 * 1024) return undefined; // first record incomplete
    flow.watchers.delete(this);
    if (!ch || ch.sni === undefined || !this.#match(ch.sni)) return undefined;
    ctx.resetBoth(flow, p, this.#p.injector);
    ctx.blockFlow(flow, 'both');
    ctx.addResidual(flow.key3, this.name, this.#p.residualSeconds, 'reset', 'c2s');
    ctx.emit({ module: this.name, action: 'reset', detail: 'blocked SNI' }, flow);
    return undefined; // the trigger packet itself travels on, as past an on-path box
  }
}
