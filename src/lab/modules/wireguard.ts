/**
 * WireGuard fingerprinting (docs/censorship-techniques.md §11; message formats from the WireGuard paper, §5.4, as
 * OpenGFW's `analyzer/udp/wireguard.go` checks them). Byte 0 is the message type and bytes 1–3 are
 * zero; initiation is exactly 148 bytes, response 92, cookie reply 64, transport data ≥ 32 and a
 * multiple of 16. Sender indexes (little-endian u32 at [4:8]) are remembered, and a flow is flagged
 * once two valid messages were seen and a receiver index (response [8:12], data [4:8]) matches one
 * the other side sent.
 * @module
 */
import type { CensorContext, CensorModule, Flow, Packet, Verdict } from '../censor/types.js';

export interface WireGuardParams {
  readonly invalidThreshold: number;
  readonly rememberedIndexes: number;
  readonly residualSeconds: number;
}

export const WIREGUARD_DEFAULTS: WireGuardParams = {
  invalidThreshold: 4,
  rememberedIndexes: 6,
  residualSeconds: 180,
};

/** The WireGuard message type of `d`, or 0 if `d` is not a well-formed WireGuard message. */
export function wireGuardType(d: Uint8Array): number {
  if (d.length < 4 || d[1] !== 0 || d[2] !== 0 || d[3] !== 0) return 0;
  const t = d[0]!;
  if (t === 1 && d.length === 148) return 1;
  if (t === 2 && d.length === 92) return 2;
  if (t === 3 && d.length === 64) return 3;
  if (t === 4 && d.length >= 32 && d.length % 16 === 0) return 4;
  return 0;
}

const u32le = (d: Uint8Array, o: number) =>
  (d[o]! | (d[o + 1]! << 8) | (d[o + 2]! << 16) | (d[o + 3]! << 24)) >>> 0;

/** Pure per-flow scorer; exported for tests on recorded datagrams. */
export class WireGuardScorer {
  valid = 0;
  invalid = 0;
  matched = false;
  readonly #indexes: [number[], number[]] = [[], []];
  readonly #remember: number;
  constructor(remember = WIREGUARD_DEFAULTS.rememberedIndexes) {
    this.#remember = remember;
  }
  add(c2s: boolean, d: Uint8Array): void {
    const t = wireGuardType(d);
    if (t === 0) {
      this.invalid++;
      return;
    }
    this.valid++;
    const mine = this.#indexes[c2s ? 0 : 1];
    const theirs = this.#indexes[c2s ? 1 : 0];
    if (t === 1 || t === 2) {
      mine.push(u32le(d, 4));
      if (mine.length > this.#remember) mine.shift();
    }
    if (t === 2 && theirs.includes(u32le(d, 8))) this.matched = true;
    if (t === 4 && theirs.includes(u32le(d, 4))) this.matched = true;
  }
  get flagged(): boolean {
    return this.valid >= 2 && this.matched;
  }
}

export class WireGuardModule implements CensorModule {
  readonly name = 'wireguard';
  readonly #p: WireGuardParams;
  constructor(params: Partial<WireGuardParams> = {}) {
    this.#p = { ...WIREGUARD_DEFAULTS, ...params };
  }
  watch(flow: Flow): boolean {
    return flow.proto === 'udp' && flow.outbound;
  }
  onPacket(p: Packet, flow: Flow, ctx: CensorContext): Verdict {
    let sc = flow.scratch.get(this.name) as WireGuardScorer | undefined;
    if (!sc) {
      sc = new WireGuardScorer(this.#p.rememberedIndexes);
      flow.scratch.set(this.name, sc);
    }
    sc.add(p.c2s, p.payload);
    if (sc.invalid >= this.#p.invalidThreshold) {
      flow.watchers.delete(this);
      return undefined;
    }
    if (!sc.flagged) return undefined;
    flow.watchers.delete(this);
    ctx.blockFlow(flow, 'both');
    ctx.addResidual(flow.key3, this.name, this.#p.residualSeconds, 'drop');
    ctx.emit({ module: this.name, action: 'block' }, flow);
    return 'drop';
  }
}
