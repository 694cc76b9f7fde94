/**
 * Sensitive-period blanket measures (docs/censorship-techniques.md §17): `udp-drop` drops all UDP to outside addresses
 * except port 53; `allowlist` lets TLS through only to allow-listed SNIs (and drops every other
 * outbound TCP flow once it shows its first payload); `port443-reset` reproduces 2025-08-20, when a
 * SYN (inside→out) or a SYN+ACK on port 443 drew three RST+ACK to both ends.
 * @module
 */
import { TCP_FLAG } from '../packet/l4.js';
import { parseClientHello } from '../packet/tls-client-hello.js';
import type { CensorContext, CensorModule, Flow, Packet, Verdict } from '../censor/types.js';
import { nameMatcher } from './names.js';

export class UdpDropModule implements CensorModule {
  readonly name = 'udp-drop';
  watch(flow: Flow): boolean {
    return flow.proto === 'udp' && flow.outbound && flow.server.port !== 53;
  }
  onPacket(_p: Packet, flow: Flow, ctx: CensorContext): Verdict {
    if (!flow.scratch.has(this.name)) {
      flow.scratch.set(this.name, true);
      ctx.emit({ module: this.name, action: 'drop' }, flow);
    }
    return 'drop';
  }
}

export interface AllowlistParams {
  readonly sni: readonly string[];
}

export class AllowlistModule implements CensorModule {
  readonly name = 'allowlist';
  readonly #match: (n: string) => boolean;
  constructor(params: Partial<AllowlistParams> = {}) {
    this.#match = nameMatcher(params.sni ?? []);
  }
  watch(flow: Flow): boolean {
    return flow.proto === 'tcp' && flow.outbound;
  }
  onPacket(p: Packet, flow: Flow, ctx: CensorContext): Verdict {
    if (!p.c2s || p.payload.length === 0) return undefined;
    const ch = parseClientHello(flow.c2sData);
    if (ch === null) return undefined;
    flow.watchers.delete(this);
    if (ch && ch.sni !== undefined && this.#match(ch.sni)) return undefined;
    ctx.blockFlow(flow, 'both');
    ctx.emit(
      { module: this.name, action: 'drop', detail: ch ? 'SNI not allow-listed' : 'not TLS' },
      flow,
    );
    return 'drop';
  }
}

export class Port443ResetModule implements CensorModule {
  readonly name = 'port443-reset';
  watch(flow: Flow): boolean {
    return flow.proto === 'tcp' && flow.server.port === 443;
  }
  onPacket(p: Packet, flow: Flow, ctx: CensorContext): Verdict {
    const f = p.tcp!.flags;
    const syn = (f & (TCP_FLAG.SYN | TCP_FLAG.ACK)) === TCP_FLAG.SYN && p.c2s && flow.outbound;
    const synAck = (f & (TCP_FLAG.SYN | TCP_FLAG.ACK)) === (TCP_FLAG.SYN | TCP_FLAG.ACK);
    if (!syn && !synAck) return undefined;
    ctx.resetBoth(flow, p, 'II');
    if (!flow.scratch.has(this.name)) {
      flow.scratch.set(this.name, true);
      ctx.emit({ module: this.name, action: 'reset' }, flow);
    }
    return undefined;
  }
}

export interface ThrottleParams {
  /** Flows that carried more than this many bytes (both ways) are throttled. */
  readonly bytesThreshold: number;
  readonly lossP: number;
  readonly delayMs: number;
}

/** §16: loss and delay on heavy flows (the line-slowing reports; thresholds are [U] defaults). */
export class ThrottleModule implements CensorModule {
  readonly name = 'throttle';
  readonly #p: ThrottleParams;
  constructor(params: Partial<ThrottleParams> = {}) {
    this.#p = { bytesThreshold: 10 * 1024 * 1024, lossP: 0.02, delayMs: 40, ...params };
  }
  watch(flow: Flow): boolean {
    return flow.outbound;
  }
  onPacket(_p: Packet, flow: Flow, ctx: CensorContext): Verdict {
    if (flow.c2sBytes + flow.s2cBytes < this.#p.bytesThreshold) return undefined;
    if (!flow.scratch.has(this.name)) {
      flow.scratch.set(this.name, true);
      ctx.emit({ module: this.name, action: 'throttle' }, flow);
    }
    if (ctx.random() < this.#p.lossP) return 'drop';
    return { delayMs: this.#p.delayMs };
  }
}
