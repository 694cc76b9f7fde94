/**
 * Passive detection of fully encrypted traffic and dynamic blocking (docs/censorship-techniques.md §1; Wu et al.,
 * USENIX Security 2023, Algorithm 1 as in `gfw-report/usenixsecurity23-artifact:
 * artifacts/utils/detect.py`). Deployed November 2021, ceased March 2023.
 *
 * Only the first TCP payload the client sends is inspected. It is exempt if any of Ex1–Ex5 holds;
 * otherwise, for a server in a target prefix, the connection is blocked with probability p (0.263):
 * the flow's later client packets are dropped and the 3-tuple (C_ip, S_ip, S_port) is null-routed
 * for 180 s, SYNs included, with no RST.
 * @module
 */
import { prefixMatcher } from '../censor/engine.js';
import type { CensorContext, CensorModule, Flow, Packet, Verdict } from '../censor/types.js';

export interface FetParams {
  /** Blocking probability for an eligible non-exempt connection (§1: 26.3%). */
  readonly p: number;
  readonly residualSeconds: number;
  /** Ex1: exempt when mean set bits per byte ≤ popLo or ≥ popHi. */
  readonly popLo: number;
  readonly popHi: number;
  /** Ex2: exempt when the first prefixLen bytes are printable. */
  readonly prefixLen: number;
  /** Ex3: exempt when more than this fraction of bytes is printable. */
  readonly fracPrintable: number;
  /** Ex4: exempt when a run of printable bytes is longer than this. */
  readonly runLen: number;
  /** Ex5: highest TLS minor version byte d[2] that counts as TLS (paper 0x09; detect.py 0x0f). */
  readonly tlsMinorMax: number;
  readonly httpVerbs: readonly string[];
  /** Server prefixes subject to blocking (§1: popular VPS ranges). Empty means every server. */
  readonly targetPrefixes: readonly string[];
  /** Inspect only connections from inside to outside (§0: FET observed inside→outside). */
  readonly outboundOnly: boolean;
  /**
   * Drop the triggering first payload too (default), not only the flow's later client packets as
   * the reference's emulator spec words it. With the trigger dropped the server never sees that
   * first packet, so a prober's later identical replay (§2) is the first time the server sees its
   * salt: replay filters cannot catch it (the lab's gfw-2022 card shows Ladder's server confirmed
   * that way). `false` delivers the trigger and drops from the next client packet on.
   */
  readonly dropTrigger: boolean;
}

export const FET_DEFAULTS: FetParams = {
  p: 0.263,
  residualSeconds: 180,
  popLo: 3.4,
  popHi: 4.6,
  prefixLen: 6,
  fracPrintable: 0.5,
  runLen: 20,
  tlsMinorMax: 0x09,
  httpVerbs: ['GET ', 'PUT ', 'POST ', 'HEAD '],
  targetPrefixes: [],
  outboundOnly: true,
  dropTrigger: true,
};

export type FetRule = 'Ex1' | 'Ex2' | 'Ex3' | 'Ex4' | 'Ex5';

const isPrintable = (b: number) => b >= 0x20 && b <= 0x7e;

/** Algorithm 1: the first exemption rule that `d` meets, or undefined if it meets none. */
export function fetExemption(d: Uint8Array, params: FetParams = FET_DEFAULTS): FetRule | undefined {
  if (d.length === 0) return undefined;
  let bits = 0;
  let printable = 0;
  let run = 0;
  let longest = 0;
  for (const b of d) {
    bits += POPCOUNT[b]!;
    if (isPrintable(b)) {
      printable++;
      run++;
      if (run > longest) longest = run;
    } else run = 0;
  }
  const pop = bits / d.length;
  if (pop <= params.popLo || pop >= params.popHi) return 'Ex1';
  if (d.length >= params.prefixLen && d.subarray(0, params.prefixLen).every(isPrintable))
    return 'Ex2';
  if (printable / d.length > params.fracPrintable) return 'Ex3';
  if (longest > params.runLen) return 'Ex4';
  if (isTlsOrHttp(d, params)) return 'Ex5';
  return undefined;
}

function isTlsOrHttp(d: Uint8Array, params: FetParams): boolean {
  if (
    d.length >= 3 &&
    (d[0] === 0x16 || d[0] === 0x17) &&
    d[1] === 0x03 &&
    d[2]! <= params.tlsMinorMax
  )
    return true;
  const head = String.fromCharCode(...d.subarray(0, 5));
  return params.httpVerbs.some((v) => head.startsWith(v));
}

const POPCOUNT = Uint8Array.from({ length: 256 }, (_, i) => {
  let n = 0;
  for (let x = i; x; x >>= 1) n += x & 1;
  return n;
});

export class FetModule implements CensorModule {
  readonly name = 'fet';
  readonly #p: FetParams;
  readonly #targets: ((a: string) => boolean)[];

  constructor(params: Partial<FetParams> = {}) {
    this.#p = { ...FET_DEFAULTS, ...params };
    this.#targets = this.#p.targetPrefixes.map(prefixMatcher);
  }

  watch(flow: Flow): boolean {
    if (flow.proto !== 'tcp') return false;
    if (this.#p.outboundOnly && !flow.outbound) return false;
    return this.#targets.length === 0 || this.#targets.some((m) => m(flow.server.addr));
  }

  onPacket(p: Packet, flow: Flow, ctx: CensorContext): Verdict {
    const trigger = flow.scratch.get('fet-trigger');
    if (trigger !== undefined) return p.c2s && p !== trigger ? 'drop' : undefined;
    if (!p.c2s || p.payload.length === 0) return undefined;
    flow.watchers.delete(this); // only the first payload is inspected (§1)
    const rule = fetExemption(p.payload, this.#p);
    if (rule !== undefined) return undefined;
    if (ctx.random() >= this.#p.p) {
      ctx.emit({ module: this.name, action: 'spared', detail: 'non-exempt, not sampled' }, flow);
      return undefined;
    }
    ctx.addResidual(flow.key3, this.name, this.#p.residualSeconds, 'drop');
    ctx.emit({ module: this.name, action: 'block', detail: 'null-route 3-tuple' }, flow);
    flow.scratch.set('flagged', 'fet');
    if (!this.#p.dropTrigger) {
      // keep watching: the flow's later client packets are dropped, this one travels on (re-adding
      // to the set being iterated calls this again for the same packet, which the check above passes)
      flow.scratch.set('fet-trigger', p);
      flow.watchers.add(this);
      return undefined;
    }
    ctx.blockFlow(flow, 'c2s');
    return 'drop';
  }
}
