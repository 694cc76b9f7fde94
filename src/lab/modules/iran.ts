/**
 * Iran after the June 2025 shutdown (reference censorship-2024-2026.md, "Iran"): net4people/bbs#489
 * reports IPv6 off, QUIC off and unidentified UDP blocked, and on two major ISPs (MCI, TCI) the
 * server's TLS ServerHello dropped; n4p#630 and #586 report the 2026 allowlist, where only about
 * 2,000 of 11.7 M Iranian addresses could reach abroad at all.
 *
 * One module, `iran`, with each measure a parameter:
 * - `serverHelloDrop`: server prefixes ("chosen paths") whose TLS ServerHello is dropped, every
 *   retransmission too: the client's handshake hangs, the ClientHello itself passes. An empty list
 *   means every outside server.
 * - `blockUdp`: outbound UDP other than DNS (port 53) is dropped, QUIC with it.
 * - `blockIpv6`: every outbound IPv6 flow is dropped.
 * - `clientAllowlist`: if set, only these inside prefixes reach abroad at all.
 * @module
 */
import type { CensorContext, CensorModule, Flow, Packet, Verdict } from '../censor/types.js';
import { rangeMatcher } from './tspu.js';

export interface IranParams {
  readonly serverHelloDrop: boolean;
  readonly serverHelloPaths: readonly string[];
  readonly blockUdp: boolean;
  readonly blockIpv6: boolean;
  readonly clientAllowlist: readonly string[] | undefined;
}

export const IRAN_DEFAULTS: IranParams = {
  serverHelloDrop: true,
  serverHelloPaths: [],
  blockUdp: true,
  blockIpv6: true,
  clientAllowlist: undefined,
};

/** True if a server→client payload starts with a TLS handshake record holding a ServerHello. */
export function isServerHello(d: Uint8Array): boolean {
  return d.length >= 6 && d[0] === 0x16 && d[1] === 0x03 && d[5] === 0x02;
}

export class IranModule implements CensorModule {
  readonly name = 'iran';
  readonly #p: IranParams;
  readonly #path: (a: string) => boolean;
  readonly #client: ((a: string) => boolean) | undefined;

  constructor(params: Partial<IranParams> = {}) {
    this.#p = { ...IRAN_DEFAULTS, ...params };
    const paths = this.#p.serverHelloPaths;
    this.#path = paths.length === 0 ? () => true : rangeMatcher(paths);
    this.#client = this.#p.clientAllowlist ? rangeMatcher(this.#p.clientAllowlist) : undefined;
  }

  watch(flow: Flow, ctx: CensorContext): boolean {
    if (!flow.outbound) return false;
    const why = this.#blockWhy(flow);
    if (why) {
      ctx.blockFlow(flow, 'both');
      ctx.emit({ module: this.name, action: 'drop', detail: why }, flow);
      return true; // the packet that opened the flow is dropped in onPacket
    }
    return flow.proto === 'tcp' && this.#p.serverHelloDrop && this.#path(flow.server.addr);
  }

  #blockWhy(flow: Flow): string | undefined {
    if (this.#client && !this.#client(flow.client.addr)) return 'client not on the allowlist';
    if (this.#p.blockIpv6 && flow.client.addr.includes(':')) return 'IPv6';
    if (this.#p.blockUdp && flow.proto === 'udp' && flow.server.port !== 53) return 'UDP';
    return undefined;
  }

  onPacket(p: Packet, flow: Flow, ctx: CensorContext): Verdict {
    if (flow.scratch.get(this.name) === 'blocked' || this.#blockWhy(flow)) {
      flow.scratch.set(this.name, 'blocked');
      return 'drop';
    }
    if (p.c2s || p.payload.length === 0) return undefined;
    if (!isServerHello(p.payload)) {
      // The first server payload was something else: not a TLS server, nothing more to do.
      if (!flow.scratch.has(this.name)) flow.watchers.delete(this);
      return undefined;
    }
    if (!flow.scratch.has(this.name)) {
      flow.scratch.set(this.name, 'serverhello');
      ctx.emit({ module: this.name, action: 'drop-serverhello' }, flow);
    }
    return 'drop';
  }
}
