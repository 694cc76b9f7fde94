/**
 * OpenVPN fingerprinting (docs/censorship-techniques.md §10; Xue et al., USENIX Security 2022, as re-implemented in
 * stanford-esrg/iris `examples/open_vpn/src/{opcodes.rs,ack_timer.rs}`).
 *
 * Opcode fingerprint (Alg. 1): the opcode byte is the first byte after the 2-byte length on TCP
 * and the first byte on UDP, opcode = byte >> 3. Over the first 100 payload packets, CRST and SRST
 * are the first bytes of the client's and the server's first packets; flag when 4..10 distinct
 * opcode values appear and neither CRST nor SRST comes back after the handshake.
 * ACK fingerprint (Table 2): ack_len = size of the client's 2nd payload packet; count client packets
 * of exactly ack_len in bins of 10 over the first 100; flag if bin1 ∈ [1,3], bin2 ∈ [2,5],
 * bins 3–5 ≤ 5 each and bins 6–10 ≤ 1 each.
 * @module
 */
import type { CensorContext, CensorModule, Flow, Packet, Verdict } from '../censor/types.js';

export interface OpenVpnParams {
  /** Payload packets examined (§10: 100). */
  readonly window: number;
  readonly minOpcodes: number;
  readonly maxOpcodes: number;
  /** Which fingerprint flags a flow. */
  readonly require: 'opcode' | 'ack' | 'either' | 'both';
  readonly residualSeconds: number;
}

export const OPENVPN_DEFAULTS: OpenVpnParams = {
  window: 100,
  minOpcodes: 4,
  maxOpcodes: 10,
  require: 'opcode',
  residualSeconds: 180,
};

interface State {
  n: number;
  opcodes: Set<number>;
  crst: number;
  srst: number;
  resetAgain: boolean;
  clientN: number;
  ackLen: number;
  clientSizes: number[];
}

/** Pure scorer over a sequence of (direction, payload) pairs; exported for recorded-packet tests. */
export class OpenVpnScorer {
  readonly #s: State = {
    n: 0,
    opcodes: new Set(),
    crst: -1,
    srst: -1,
    resetAgain: false,
    clientN: 0,
    ackLen: -1,
    clientSizes: [],
  };
  readonly #tcp: boolean;
  readonly #window: number;
  constructor(tcp: boolean, window = OPENVPN_DEFAULTS.window) {
    this.#tcp = tcp;
    this.#window = window;
  }
  get done(): boolean {
    return this.#s.n >= this.#window;
  }
  add(c2s: boolean, d: Uint8Array): void {
    const s = this.#s;
    if (s.n >= this.#window || d.length === 0) return;
    const pos = this.#tcp ? 2 : 0;
    if (d.length <= pos) return;
    const b = d[pos]!;
    if (c2s && s.crst < 0) s.crst = b;
    else if (!c2s && s.srst < 0) s.srst = b;
    else if (b === s.crst || b === s.srst) s.resetAgain = true;
    s.opcodes.add(b >> 3);
    if (c2s) {
      s.clientN++;
      if (s.clientN === 2) s.ackLen = d.length;
      s.clientSizes.push(d.length);
    }
    s.n++;
  }
  opcodeMatch(p: OpenVpnParams = OPENVPN_DEFAULTS): boolean {
    const s = this.#s;
    return (
      s.opcodes.size >= p.minOpcodes &&
      s.opcodes.size <= p.maxOpcodes &&
      !s.resetAgain &&
      s.srst >= 0
    );
  }
  ackMatch(): boolean {
    const s = this.#s;
    if (s.ackLen < 0) return false;
    // bins of 10 over the first 100 payload packets (client packets counted by their index overall
    // would need both directions; the client-side sequence is what carries the ACKs)
    const bins = Array.from({ length: 10 }, () => 0);
    s.clientSizes.forEach((len, i) => {
      if (len === s.ackLen && i < 100) bins[Math.floor(i / 10)]!++;
    });
    const [b1, b2, b3, b4, b5, ...rest] = bins as [
      number,
      number,
      number,
      number,
      number,
      ...number[],
    ];
    return (
      b1 >= 1 &&
      b1 <= 3 &&
      b2 >= 2 &&
      b2 <= 5 &&
      b3 <= 5 &&
      b4 <= 5 &&
      b5 <= 5 &&
      rest.every((b) => b <= 1)
    );
  }
}

export class OpenVpnModule implements CensorModule {
  readonly name = 'openvpn';
  readonly #p: OpenVpnParams;
  constructor(params: Partial<OpenVpnParams> = {}) {
    this.#p = { ...OPENVPN_DEFAULTS, ...params };
  }
  watch(flow: Flow): boolean {
    return flow.outbound;
  }
  onPacket(p: Packet, flow: Flow, ctx: CensorContext): Verdict {
    if (p.payload.length === 0) return undefined;
    let sc = flow.scratch.get(this.name) as OpenVpnScorer | undefined;
    if (!sc) {
      sc = new OpenVpnScorer(flow.proto === 'tcp', this.#p.window);
      flow.scratch.set(this.name, sc);
    }
    sc.add(p.c2s, p.payload);
    if (!sc.done) return undefined;
    flow.watchers.delete(this);
    const op = sc.opcodeMatch(this.#p);
    const ack = sc.ackMatch();
    const hit =
      this.#p.require === 'opcode'
        ? op
        : this.#p.require === 'ack'
          ? ack
          : this.#p.require === 'both'
            ? op && ack
            : op || ack;
    if (!hit) return undefined;
    ctx.blockFlow(flow, 'both');
    ctx.addResidual(flow.key3, this.name, this.#p.residualSeconds, 'drop');
    ctx.emit(
      {
        module: this.name,
        action: 'block',
        detail: [op && 'opcode', ack && 'ack'].filter(Boolean).join('+'),
      },
      flow,
    );
    return 'drop';
  }
}
