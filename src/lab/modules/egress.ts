/**
 * The lab's own safety check, not a censorship technique: every TCP or UDP flow the wall forwards
 * must have both ends in the lab's address space (198.18.0.0/15, 2001:2::/48). A flow with an end
 * outside it is dropped and reported (`egress/outside`, with the protocol and server port only, never
 * the address). Tests that run third-party software in the lab (Tor, test/lab/tor.test.ts) switch it
 * on and assert that it never fires. The lab has no route out anyway; this shows that nothing tried.
 * Packets that are neither TCP nor UDP are not flows and are not seen here.
 * @module
 */
import { prefixMatcher } from '../censor/engine.js';
import type { CensorContext, CensorModule, Flow, Verdict } from '../censor/types.js';

export interface EgressParams {
  /** The address space flows must stay in. */
  readonly prefixes: readonly string[];
}

export const LAB_ADDRESS_SPACE = ['198.18.0.0/15', '2001:2::/48'] as const;

export const EGRESS_DEFAULTS: EgressParams = { prefixes: LAB_ADDRESS_SPACE };

/** True if `addr` is in one of `prefixes` (pure). */
export function inAddressSpace(
  addr: string,
  prefixes: readonly string[] = LAB_ADDRESS_SPACE,
): boolean {
  return prefixes.some((p) => prefixMatcher(p)(addr));
}

export class EgressModule implements CensorModule {
  readonly name = 'egress';
  readonly #inSpace: ((addr: string) => boolean)[];

  constructor(params: Partial<EgressParams> = {}) {
    this.#inSpace = (params.prefixes ?? EGRESS_DEFAULTS.prefixes).map(prefixMatcher);
  }

  watch(flow: Flow, ctx: CensorContext): boolean {
    const inside = (a: string) => this.#inSpace.some((m) => m(a));
    if (inside(flow.client.addr) && inside(flow.server.addr)) return false;
    ctx.emit(
      { module: this.name, action: 'outside', detail: 'a flow left the lab address space' },
      flow,
    );
    return true;
  }

  onPacket(): Verdict {
    return 'drop';
  }
}
