/**
 * The multiplexing classifier (Xue et al., "The Discriminative Power of Cross-layer RTTs in
 * Fingerprinting Proxy Traffic", NDSS 2025; via net4people/bbs#528): a multiplexed proxy flow
 * carries many more request/response pairs than ordinary flows — its median count is above that of
 * 97% of an ISP's flows. The paper publishes the percentile, not the count; the lab's threshold
 * (`pairs`, 40 by default) stands in for the 97th percentile and is a parameter.
 *
 * A pair is a run of client→server payload followed by a run of server→client payload. A flow that
 * reaches the threshold is flagged (`score`, the default: the paper proposes a feature, not a
 * blocking rule) or reset (`reset`).
 * @module
 */
import type { CensorContext, CensorModule, Flow, Packet, Verdict } from '../censor/types.js';

export interface MuxParams {
  readonly pairs: number;
  readonly action: 'score' | 'reset';
}

export const MUX_DEFAULTS: MuxParams = { pairs: 40, action: 'score' };

/** Counts request/response pairs of a flow; feed it each payload's direction in order. */
export class PairCounter {
  pairs = 0;
  #last: 'c2s' | 's2c' | undefined;

  push(c2s: boolean): void {
    if (!c2s && this.#last === 'c2s') this.pairs++;
    this.#last = c2s ? 'c2s' : 's2c';
  }
}

export class MuxModule implements CensorModule {
  readonly name = 'mux';
  readonly #p: MuxParams;

  constructor(params: Partial<MuxParams> = {}) {
    this.#p = { ...MUX_DEFAULTS, ...params };
  }

  watch(flow: Flow): boolean {
    if (!flow.outbound) return false;
    flow.scratch.set(this.name, new PairCounter());
    return true;
  }

  onPacket(p: Packet, flow: Flow, ctx: CensorContext): Verdict {
    if (p.payload.length === 0) return undefined;
    const c = flow.scratch.get(this.name) as PairCounter;
    c.push(p.c2s);
    if (c.pairs < this.#p.pairs) return undefined;
    flow.watchers.delete(this);
    const reset = this.#p.action === 'reset';
    ctx.emit(
      { module: this.name, action: reset ? 'reset' : 'flag', detail: `${c.pairs} pairs` },
      flow,
    );
    if (!reset) return undefined;
    if (p.tcp) ctx.resetBoth(flow, p, 'II');
    ctx.blockFlow(flow, 'both');
    return 'drop';
  }
}
