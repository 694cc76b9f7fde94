/**
 * IP and IP:port blocking (docs/censorship-techniques.md §3): null routes of server-to-client traffic or of both
 * directions, RST injection on any data to an IP:port (three RSTs with equal sequence numbers, as
 * as published for a public resolver's port 443), and resetting any TLS ClientHello to an address whatever its SNI.
 * Entries are static (from the policy) or added at run time by other modules (the prober, §2).
 * @module
 */
import { looksLikeTlsHandshake } from '../packet/tls-client-hello.js';
import type { CensorContext, CensorModule, Flow, Packet, Verdict } from '../censor/types.js';

export type IpBlockMode = 'nullroute-s2c' | 'nullroute-both' | 'rst-on-data' | 'tls-reset-any';

export interface IpBlockRule {
  readonly ip: string;
  /** Omit for the whole address. */
  readonly port?: number;
  readonly mode: IpBlockMode;
}

export interface IpBlockParams {
  readonly rules: readonly IpBlockRule[];
}

export class IpBlockModule implements CensorModule {
  readonly name: string;
  readonly #rules: IpBlockRule[];

  constructor(params: Partial<IpBlockParams> = {}, name = 'ipblock') {
    this.name = name;
    this.#rules = [...(params.rules ?? [])];
  }

  /** Adds a rule at run time (e.g. after active probing confirmed a server). */
  add(rule: IpBlockRule): void {
    this.#rules.push(rule);
  }

  #rule(flow: Flow): IpBlockRule | undefined {
    return this.#rules.find(
      (r) => r.ip === flow.server.addr && (r.port === undefined || r.port === flow.server.port),
    );
  }

  watch(flow: Flow): boolean {
    return this.#rule(flow) !== undefined || this.#rules.length > 0;
  }

  onPacket(p: Packet, flow: Flow, ctx: CensorContext): Verdict {
    const r = this.#rule(flow);
    if (!r) {
      flow.watchers.delete(this);
      return undefined;
    }
    switch (r.mode) {
      case 'nullroute-both':
        this.#once(flow, ctx, r.mode);
        return 'drop';
      case 'nullroute-s2c':
        // §3: the server still receives SYNs (it sits in SYN_RECV), its replies are dropped.
        if (p.c2s) return undefined;
        this.#once(flow, ctx, r.mode);
        return 'drop';
      case 'rst-on-data':
        if (!p.tcp || !p.c2s || p.payload.length === 0) return undefined;
        ctx.resetBoth(flow, p, 'II'); // three RST+ACK with equal sequence numbers
        ctx.blockFlow(flow, 'both');
        ctx.emit({ module: this.name, action: 'reset', detail: r.mode }, flow);
        return 'drop';
      case 'tls-reset-any':
        if (!p.tcp || !p.c2s || p.payload.length === 0) return undefined;
        flow.watchers.delete(this);
        if (!looksLikeTlsHandshake(flow.c2sData)) return undefined;
        ctx.resetBoth(flow, p, 'II');
        ctx.blockFlow(flow, 'both');
        ctx.emit({ module: this.name, action: 'reset', detail: r.mode }, flow);
        return 'drop';
    }
  }

  #once(flow: Flow, ctx: CensorContext, mode: string): void {
    if (flow.scratch.has(this.name)) return;
    flow.scratch.set(this.name, true);
    ctx.emit({ module: this.name, action: 'drop', detail: mode }, flow);
  }
}
