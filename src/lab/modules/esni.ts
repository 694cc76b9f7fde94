/**
 * ESNI and ECH (docs/censorship-techniques.md §7), as historical and foreign modes.
 *
 * - `esni` (the GFW, 2020-07-29 on, [P]): a ClientHello (first record, TCP reassembled) carrying the
 *   ESNI extension 0xffce, on any port, either direction: the flow's client→server packets are
 *   dropped (no RST, whatever their flags) and the 3-tuple's client→server packets for the residual
 *   (120 or 180 s; 180 by default).
 * - `ech` in mode `tspu-ru` (Russia's TSPU, November 2024 on, [P]): a ClientHello whose SNI is
 *   `echOuter` (cloudflare-ech.com) **and** that carries the ECH extension 0xfe0d: the connection
 *   is frozen (every packet of the flow dropped, both ways); SNI alone or ECH alone is not. Mode
 *   `gfw`: nothing (the GFW has not been seen blocking ECH itself, §7).
 * @module
 */
import type { CensorContext, CensorModule, Flow, Packet, Verdict } from '../censor/types.js';
import { parseClientHello, type ClientHelloInfo } from '../packet/tls-client-hello.js';

/** encrypted_server_name (draft-ietf-tls-esni-00..06). */
export const EXT_ESNI = 0xffce;
/** encrypted_client_hello (draft-ietf-tls-esni-13 on). */
export const EXT_ECH = 0xfe0d;

export interface EsniParams {
  /** Extension types that draw the block (§7: 0xffce; 0xff02–0xff04 were also tested). */
  readonly extensions: readonly number[];
  readonly residualSeconds: number;
}

export const ESNI_DEFAULTS: EsniParams = { extensions: [EXT_ESNI], residualSeconds: 180 };

export interface EchParams {
  readonly mode: 'tspu-ru' | 'gfw';
  /** The outer SNI that, with an ECH extension, freezes the connection. */
  readonly echOuter: string;
}

export const ECH_DEFAULTS: EchParams = { mode: 'tspu-ru', echOuter: 'cloudflare-ech.com' };

/** Does a ClientHello draw the ESNI block? (pure) */
export function esniTrigger(ch: ClientHelloInfo, p: EsniParams = ESNI_DEFAULTS): boolean {
  return ch.extensions.some((e) => p.extensions.includes(e));
}

/** Does a ClientHello draw the TSPU's ECH freeze? (pure) */
export function echTrigger(ch: ClientHelloInfo, p: EchParams = ECH_DEFAULTS): boolean {
  return p.mode === 'tspu-ru' && ch.sni === p.echOuter && ch.extensions.includes(EXT_ECH);
}

/** Waits for the first record's ClientHello; returns it, or undefined once it cannot come. */
function helloOf(flow: Flow, self: CensorModule): ClientHelloInfo | null | undefined {
  const ch = parseClientHello(flow.c2sData);
  if (ch === null && flow.c2sData.length < 16 * 1024) return null;
  flow.watchers.delete(self);
  return ch ?? undefined;
}

export class EsniModule implements CensorModule {
  readonly name = 'esni';
  readonly #p: EsniParams;

  constructor(params: Partial<EsniParams> = {}) {
    this.#p = { ...ESNI_DEFAULTS, ...params };
  }

  watch(flow: Flow): boolean {
    return flow.proto === 'tcp' && flow.sawSyn;
  }

  onPacket(p: Packet, flow: Flow, ctx: CensorContext): Verdict {
    if (!p.c2s || p.payload.length === 0) return undefined;
    const ch = helloOf(flow, this);
    if (!ch || !esniTrigger(ch, this.#p)) return undefined;
    // §7: drop C→S packets, no RST, regardless of TCP flags; residual on the 3-tuple
    ctx.blockFlow(flow, 'c2s');
    ctx.addResidual(flow.key3, this.name, this.#p.residualSeconds, 'drop', 'c2s');
    ctx.emit({ module: this.name, action: 'block' }, flow);
    return 'drop';
  }
}

export class EchModule implements CensorModule {
  readonly name = 'ech';
  readonly #p: EchParams;

  constructor(params: Partial<EchParams> = {}) {
    this.#p = { ...ECH_DEFAULTS, ...params };
  }

  watch(flow: Flow): boolean {
    return this.#p.mode === 'tspu-ru' && flow.proto === 'tcp' && flow.sawSyn;
  }

  onPacket(p: Packet, flow: Flow, ctx: CensorContext): Verdict {
    if (!p.c2s || p.payload.length === 0) return undefined;
    const ch = helloOf(flow, this);
    if (!ch || !echTrigger(ch, this.#p)) return undefined;
    ctx.blockFlow(flow, 'both'); // a frozen connection: no RST, nothing passes
    ctx.emit({ module: this.name, action: 'freeze' }, flow);
    return 'drop';
  }
}
