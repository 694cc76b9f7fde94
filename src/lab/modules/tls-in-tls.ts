/**
 * TLS-in-TLS detection (docs/censorship-techniques.md §14) on an outer TLS flow (first client payload `16|17 03`).
 *
 * From the client's ChangeCipherSpec record (14 03 03 00 01 01) on, the payload bytes are summed in
 * direction runs r0 (client→server, starting with the packet that carries the CCS, as both
 * XTLS/Trojan-killer main.go and apernet/OpenGFW trojan.go count it), r1 (server→client), r2, r3:
 * the four runs OpenGFW's analyzer collects.
 *
 * - **Rule A** (Trojan-killer): up = r0, down = r1, decided when the client sends again: flag if
 *   650 ≤ up ≤ 750 and (170 ≤ down ≤ 180 or 3000 ≤ down ≤ 7500) — an inner ClientHello followed by
 *   an inner server flight.
 * - **Rule B** (the lab's, decided once r3 is complete): rule A's windows on (r0, r1) or on (r2, r3),
 *   that is, an inner handshake in the first or the second exchange — behind the outer server's
 *   TLS 1.3 NewSessionTickets, which end r0 before a client that waits for its tunnel has sent its
 *   inner ClientHello. The reference's rule B is OpenGFW's decision tree, trained on 20K Trojan and
 *   30K other flows; Ladder does not reproduce it (another project's code), and a policy cannot load
 *   it either. Rule B here is a stand-in that covers the one gap rule A is known to have in the lab.
 *
 * Action on a match of a rule in `rules`: `score` only reports (the authors advise against blocking
 * on it alone, and the GFW is not known to), `reset` resets the flow as in the October 2022 TLS-proxy
 * sweep (§17, sp.tls-sweep). `measure` reports every decided flow's runs and both rules' verdicts,
 * and, when the censor stops, the runs of every flow still open (`measure` with `open`), so that a
 * measurement counts every flow whether or not it ended while the censor ran.
 * @module
 */
import { TCP_FLAG } from '../packet/l4.js';
import type { CensorContext, CensorModule, Flow, Packet, Verdict } from '../censor/types.js';

export type TlsInTlsRule = 'A' | 'B';

export interface TlsInTlsParams {
  readonly action: 'score' | 'reset';
  /** Rules that act (both are always computed for `measure`). */
  readonly rules: readonly TlsInTlsRule[];
  readonly up: readonly [number, number];
  readonly down: readonly (readonly [number, number])[];
  /** Report each decided flow's runs and verdicts (event `measure`), to calibrate. */
  readonly measure: boolean;
}

export const TLS_IN_TLS_DEFAULTS: TlsInTlsParams = {
  action: 'score',
  rules: ['A'],
  up: [650, 750],
  down: [
    [170, 180],
    [3000, 7500],
  ],
  measure: false,
};

const CCS = Buffer.from('140303000101', 'hex');

/** Rule A on the two byte counts. */
export function trojanKiller(
  up: number,
  down: number,
  p: Pick<TlsInTlsParams, 'up' | 'down'> = TLS_IN_TLS_DEFAULTS,
): boolean {
  return up >= p.up[0] && up <= p.up[1] && p.down.some(([lo, hi]) => down >= lo && down <= hi);
}

/** Rule B on the four runs. */
export function ruleB(
  runs: readonly number[],
  p: Pick<TlsInTlsParams, 'up' | 'down'> = TLS_IN_TLS_DEFAULTS,
): boolean {
  const [r0 = 0, r1 = 0, r2 = 0, r3 = 0] = runs;
  return trojanKiller(r0, r1, p) || trojanKiller(r2, r3, p);
}

/** The per-flow run counter; feed it every payload in order. */
export class TlsInTlsTracker {
  #counting = false;
  #lastC2s = true;
  /** Byte totals of the direction runs since the client's CCS (r0 is client→server). */
  readonly runs: number[] = [];

  /** Counts one payload. */
  push(c2s: boolean, payload: Uint8Array): void {
    if (payload.length === 0 || this.runs.length > 4) return;
    if (!this.#counting) {
      if (!c2s) return;
      const at = Buffer.from(payload.buffer, payload.byteOffset, payload.length).indexOf(CCS);
      if (at < 0) return;
      this.#counting = true;
      this.runs.push(payload.length - at);
      return;
    }
    if (c2s === this.#lastC2s) this.runs[this.runs.length - 1]! += payload.length;
    else if (this.runs.length < 4) this.runs.push(payload.length);
    else this.runs.push(0); // a fifth run has begun: r3 is complete
    this.#lastC2s = c2s;
  }

  /** Rule A's verdict once the client has sent after r1; undefined before. */
  ruleA(p: Pick<TlsInTlsParams, 'up' | 'down'> = TLS_IN_TLS_DEFAULTS): boolean | undefined {
    return this.runs.length >= 3 ? trojanKiller(this.runs[0]!, this.runs[1]!, p) : undefined;
  }

  /** Rule B's verdict once r3 is complete; undefined before. */
  ruleB(p: Pick<TlsInTlsParams, 'up' | 'down'> = TLS_IN_TLS_DEFAULTS): boolean | undefined {
    return this.runs.length >= 5 ? ruleB(this.runs, p) : undefined;
  }

  /** r0..r3 as counted so far. */
  get counted(): number[] {
    return this.runs.slice(0, 4);
  }
}

interface State {
  readonly t: TlsInTlsTracker;
  a?: boolean;
  acted: boolean;
}

/** Open flows `measure` keeps for the report at close; beyond it the oldest is reported at once. */
const MAX_OPEN_MEASURED = 65_536;

export class TlsInTlsModule implements CensorModule {
  readonly name = 'tls-in-tls';
  readonly #p: TlsInTlsParams;
  /** With `measure`: flows not decided yet, reported at close. */
  readonly #open = new Map<Flow, { st: State; ctx: CensorContext }>();

  constructor(params: Partial<TlsInTlsParams> = {}) {
    this.#p = { ...TLS_IN_TLS_DEFAULTS, ...params };
  }

  watch(flow: Flow): boolean {
    return flow.proto === 'tcp' && flow.outbound;
  }

  onPacket(p: Packet, flow: Flow, ctx: CensorContext): Verdict {
    let st = flow.scratch.get(this.name) as State | undefined;
    const ending = p.tcp !== undefined && (p.tcp.flags & (TCP_FLAG.FIN | TCP_FLAG.RST)) !== 0;
    if (p.payload.length === 0 && !(st && ending)) return undefined;
    if (!st) {
      // only flows whose first client payload is TLS (16|17 03)
      if (!p.c2s || p.payload[0]! < 0x16 || p.payload[0]! > 0x17 || p.payload[1] !== 0x03) {
        flow.watchers.delete(this);
        return undefined;
      }
      st = { t: new TlsInTlsTracker(), acted: false };
      flow.scratch.set(this.name, st);
      if (this.#p.measure) {
        if (this.#open.size >= MAX_OPEN_MEASURED) {
          const [oldest, o] = this.#open.entries().next().value!;
          this.#open.delete(oldest);
          this.#report(oldest, o.st, o.ctx, undefined, 'open');
        }
        this.#open.set(flow, { st, ctx });
      }
    }
    st.t.push(p.c2s, p.payload);
    let hit: TlsInTlsRule | undefined;
    if (st.a === undefined) {
      st.a = st.t.ruleA(this.#p);
      if (st.a && this.#p.rules.includes('A')) hit = 'A';
    }
    const b = st.t.ruleB(this.#p);
    if (!hit && b && this.#p.rules.includes('B')) hit = 'B';
    const decided = b !== undefined || ending;
    if (decided) {
      flow.watchers.delete(this);
      if (this.#p.measure) {
        this.#open.delete(flow);
        this.#report(flow, st, ctx, b);
      }
    }
    if (!hit || st.acted) return undefined;
    st.acted = true;
    ctx.emit(
      {
        module: this.name,
        action: this.#p.action === 'reset' ? 'reset' : 'flag',
        detail: `rule ${hit}: runs ${st.t.counted.join('/')}`,
      },
      flow,
    );
    if (this.#p.action === 'reset') {
      ctx.resetBoth(flow, p, 'II');
      ctx.blockFlow(flow, 'both');
      flow.watchers.delete(this);
      this.#open.delete(flow);
      return 'drop';
    }
    return undefined;
  }

  /** Reports the flows still open (with `measure`), as they stand: the censor is stopping. */
  close(): void {
    for (const [flow, o] of this.#open)
      this.#report(flow, o.st, o.ctx, o.st.t.ruleB(this.#p), 'open');
    this.#open.clear();
  }

  #report(flow: Flow, st: State, ctx: CensorContext, b: boolean | undefined, open?: 'open'): void {
    ctx.emit(
      {
        module: this.name,
        action: 'measure',
        detail: `runs ${st.t.counted.join('/')}; A ${verdict(st.a)}; B ${verdict(b)}${open ? '; open' : ''}`,
      },
      flow,
    );
  }
}

function verdict(v: boolean | undefined): string {
  return v === undefined ? '-' : v ? 'yes' : 'no';
}
