/**
 * TLS-in-TLS detection, the Trojan-killer heuristic (reference §14, rule A; XTLS/Trojan-killer
 * main.go): on an outer TLS flow, after the client's ChangeCipherSpec record (14 03 03 00 01 01),
 * count the client→server bytes until the server first sends (`up`), then the server→client bytes
 * until the client sends again (`down`). An inner ClientHello followed by an inner server flight
 * shows as 650 ≤ up ≤ 750 and (170 ≤ down ≤ 180 or 3000 ≤ down ≤ 7500).
 *
 * Action: `score` only reports (the authors advise against blocking on it alone, and the GFW is not
 * known to), `reset` resets the flow as in the October 2022 TLS-proxy sweep (§17, sp.tls-sweep).
 * @module
 */
import type { CensorContext, CensorModule, Flow, Packet, Verdict } from '../censor/types.js';

export interface TlsInTlsParams {
  readonly action: 'score' | 'reset';
  readonly up: readonly [number, number];
  readonly down: readonly (readonly [number, number])[];
  /** Also report the counts of flows that do not match (event `measure`), to calibrate. */
  readonly measure: boolean;
}

export const TLS_IN_TLS_DEFAULTS: TlsInTlsParams = {
  action: 'score',
  up: [650, 750],
  down: [
    [170, 180],
    [3000, 7500],
  ],
  measure: false,
};

const CCS = Buffer.from('140303000101', 'hex');

/** Rule A on the two byte counts. */
export function trojanKiller(up: number, down: number, p = TLS_IN_TLS_DEFAULTS): boolean {
  return up >= p.up[0] && up <= p.up[1] && p.down.some(([lo, hi]) => down >= lo && down <= hi);
}

/** The per-flow counter; feed it every payload in order. */
export class TlsInTlsTracker {
  #phase: 'wait-ccs' | 'up' | 'down' | 'done' = 'wait-ccs';
  up = 0;
  down = 0;

  /** Returns true once, when the flow's counts are complete and match. */
  push(c2s: boolean, payload: Uint8Array, p = TLS_IN_TLS_DEFAULTS): boolean | undefined {
    if (payload.length === 0 || this.#phase === 'done') return undefined;
    switch (this.#phase) {
      case 'wait-ccs': {
        if (!c2s) return undefined;
        const at = Buffer.from(payload.buffer, payload.byteOffset, payload.length).indexOf(CCS);
        if (at < 0) return undefined;
        this.#phase = 'up';
        // what follows the CCS in the same packet (the client's Finished) is outer handshake
        return undefined;
      }
      case 'up':
        if (c2s) this.up += payload.length;
        else {
          this.#phase = 'down';
          this.down += payload.length;
        }
        return undefined;
      case 'down':
        if (!c2s) {
          this.down += payload.length;
          return undefined;
        }
        this.#phase = 'done';
        return trojanKiller(this.up, this.down, p);
    }
  }

  get finished(): boolean {
    return this.#phase === 'done';
  }
}

export class TlsInTlsModule implements CensorModule {
  readonly name = 'tls-in-tls';
  readonly #p: TlsInTlsParams;

  constructor(params: Partial<TlsInTlsParams> = {}) {
    this.#p = { ...TLS_IN_TLS_DEFAULTS, ...params };
  }

  watch(flow: Flow): boolean {
    return flow.proto === 'tcp' && flow.outbound;
  }

  onPacket(p: Packet, flow: Flow, ctx: CensorContext): Verdict {
    if (p.payload.length === 0) return undefined;
    let t = flow.scratch.get(this.name) as TlsInTlsTracker | undefined;
    if (!t) {
      // only flows whose first client payload is TLS (16|17 03)
      if (!p.c2s || p.payload[0]! < 0x16 || p.payload[0]! > 0x17 || p.payload[1] !== 0x03) {
        flow.watchers.delete(this);
        return undefined;
      }
      t = new TlsInTlsTracker();
      flow.scratch.set(this.name, t);
    }
    const hit = t.push(p.c2s, p.payload, this.#p);
    if (t.finished) flow.watchers.delete(this);
    if (t.finished && !hit && this.#p.measure)
      ctx.emit(
        { module: this.name, action: 'measure', detail: `up ${t.up} B, down ${t.down} B` },
        flow,
      );
    if (!hit) return undefined;
    ctx.emit(
      {
        module: this.name,
        action: this.#p.action === 'reset' ? 'reset' : 'flag',
        detail: `up ${t.up} B, down ${t.down} B`,
      },
      flow,
    );
    if (this.#p.action === 'reset') {
      ctx.resetBoth(flow, p, 'II');
      ctx.blockFlow(flow, 'both');
      return 'drop';
    }
    return undefined;
  }
}
