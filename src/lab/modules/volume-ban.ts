/**
 * Turkmenistan's volume bans (reference censorship-2024-2026.md; net4people/bbs#523): an outside
 * address is banned after a moderate amount of traffic, whatever the protocol; even random UDP to
 * any address draws a ban. The threshold is not published: the default (2 MiB in both directions,
 * summed over every flow of every inside client to the address) is the lab's, and a parameter.
 * While banned, every packet to or from the address is dropped (no RST) for `banSeconds` ×
 * timeFactor.
 * @module
 */
import type { CensorContext, CensorModule, Flow, Packet, Verdict } from '../censor/types.js';

export interface VolumeBanParams {
  readonly bytes: number;
  readonly banSeconds: number;
  /** Addresses tracked at most (the oldest is forgotten beyond it). */
  readonly maxTracked: number;
}

export const VOLUME_BAN_DEFAULTS: VolumeBanParams = {
  bytes: 2 * 1024 * 1024,
  banSeconds: 24 * 3600,
  maxTracked: 65_536,
};

export class VolumeBanModule implements CensorModule {
  readonly name = 'volume-ban';
  readonly #p: VolumeBanParams;
  /** Bytes seen per outside address. */
  readonly #volume = new Map<string, number>();
  /** Ban end (engine ms) per outside address. */
  readonly #banned = new Map<string, number>();

  constructor(params: Partial<VolumeBanParams> = {}) {
    this.#p = { ...VOLUME_BAN_DEFAULTS, ...params };
  }

  /** True if the address is banned now. */
  banned(addr: string, now: number): boolean {
    const until = this.#banned.get(addr);
    if (until === undefined) return false;
    if (until > now) return true;
    this.#banned.delete(addr);
    this.#volume.delete(addr);
    return false;
  }

  watch(flow: Flow): boolean {
    return flow.outbound;
  }

  onPacket(p: Packet, flow: Flow, ctx: CensorContext): Verdict {
    const addr = flow.server.addr;
    const now = ctx.now();
    if (this.banned(addr, now)) return 'drop';
    const v = (this.#volume.get(addr) ?? 0) + p.raw.length;
    if (!this.#volume.has(addr) && this.#volume.size >= this.#p.maxTracked) {
      const oldest = this.#volume.keys().next().value;
      if (oldest !== undefined) this.#volume.delete(oldest);
    }
    this.#volume.set(addr, v);
    if (v < this.#p.bytes) return undefined;
    this.#banned.set(addr, now + this.#p.banSeconds * 1000 * ctx.timeFactor);
    ctx.emit({ module: this.name, action: 'ban', detail: `${v} bytes` }, flow);
    return 'drop';
  }
}
