/**
 * HTTP Host and path keyword filtering (docs/censorship-techniques.md §5; Rambert et al., PETS 2021). Any TCP port.
 * Only the request-line path and the Host header are read, after %-decoding. A match triggers with
 * probability 0.75: RSTs to both ends, then a 90 s penalty box on the 3-tuple that resets a
 * fraction (0.5–0.75) of later connections even without a keyword.
 * @module
 */
import { parseHttpRequestHead } from '../packet/http-request.js';
import type {
  CensorContext,
  CensorModule,
  Flow,
  InjectorType,
  Packet,
  Verdict,
} from '../censor/types.js';
import { nameMatcher } from './names.js';

export interface HttpParams {
  /** Host names (GFW regex styles, see names.ts). */
  readonly hosts: readonly string[];
  /** Keywords matched anywhere in the path or Host. */
  readonly keywords: readonly string[];
  readonly pTrigger: number;
  readonly residualSeconds: number;
  /** Fraction of later connections on the 3-tuple that the penalty box resets. */
  readonly residualP: number;
  readonly injector: InjectorType;
}

export const HTTP_DEFAULTS: HttpParams = {
  hosts: [],
  keywords: [],
  pTrigger: 0.75,
  residualSeconds: 90,
  residualP: 0.75,
  injector: 'I',
};

export class HttpModule implements CensorModule {
  readonly name = 'http';
  readonly #p: HttpParams;
  readonly #host: (n: string) => boolean;
  readonly #box = new Map<string, number>();

  constructor(params: Partial<HttpParams> = {}) {
    this.#p = { ...HTTP_DEFAULTS, ...params };
    this.#host = nameMatcher(this.#p.hosts);
  }

  watch(flow: Flow): boolean {
    return flow.proto === 'tcp' && flow.sawSyn;
  }

  onPacket(p: Packet, flow: Flow, ctx: CensorContext): Verdict {
    if (!p.c2s || p.payload.length === 0) return undefined;
    const until = this.#box.get(flow.key3);
    if (until !== undefined && until > ctx.now()) {
      flow.watchers.delete(this);
      if (ctx.random() < this.#p.residualP) return this.#reset(p, flow, ctx, 'penalty box');
      return undefined;
    }
    const head = parseHttpRequestHead(flow.c2sData);
    if (head === null) return undefined;
    flow.watchers.delete(this);
    if (head === undefined) return undefined;
    const hit =
      (head.host !== undefined && this.#host(head.host)) ||
      this.#p.keywords.some((k) => head.path.includes(k) || (head.host ?? '').includes(k));
    if (!hit) return undefined;
    if (ctx.random() >= this.#p.pTrigger) {
      ctx.emit({ module: this.name, action: 'spared', detail: 'match not sampled' }, flow);
      return undefined;
    }
    this.#box.set(flow.key3, ctx.now() + this.#p.residualSeconds * 1000 * ctx.timeFactor);
    return this.#reset(p, flow, ctx, 'host or keyword');
  }

  #reset(p: Packet, flow: Flow, ctx: CensorContext, why: string): Verdict {
    ctx.resetBoth(flow, p, this.#p.injector);
    ctx.blockFlow(flow, 'both');
    ctx.emit({ module: this.name, action: 'reset', detail: why }, flow);
    return 'drop';
  }
}
