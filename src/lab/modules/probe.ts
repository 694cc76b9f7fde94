/**
 * Active probing of suspected proxies (reference §2; Alice et al., IMC 2020,
 * `gfw-report/imc20-shadowsocks:paper/shadowsocks.tex` §3–§7).
 *
 * Trigger: a flow flagged by FET detection, or (configurable) a first client payload of 160–999
 * bytes with entropy above 7 bits per byte. The first payload is recorded, and probes are sent from
 * a separate prober address: R1 (identical replay) and R2 (byte 0 changed); R3 (bytes 0–7 and 62–63
 * changed), R4 (byte 16) and R5 (bytes 6 and 16) only after the server answered R1 or R2 with data;
 * NR1 (random, lengths from the published trios) and NR2 (random, 221 bytes). Delays follow the
 * published replay-delay distribution multiplied by the lab time factor. Each probe waits up to
 * `proberTimeoutS` and records TIMEOUT, RST, FIN or DATA.
 *
 * Classification (§2): the server is confirmed if it answers an identical replay with data, or if
 * its reaction changes with probe length at a threshold (as AEAD servers that time out below 51
 * bytes and reset from 51 do). A confirmed server's S→C traffic is null-routed (port or whole IP).
 * @module
 */
import { connect } from 'node:net';
import type { CensorContext, CensorModule, Flow, Packet, Verdict } from '../censor/types.js';

export type Reaction = 'TIMEOUT' | 'RST' | 'FIN' | 'DATA';

export interface ProbeResult {
  readonly probe: string;
  readonly length: number;
  readonly reaction: Reaction;
}

/** Sends one probe and reports how the server reacted. */
export type ProbeSender = (
  target: { host: string; port: number },
  payload: Uint8Array,
  timeoutMs: number,
  sourceAddress: string | undefined,
) => Promise<Reaction>;

export interface ProbeParams {
  /** Also probe high-entropy first payloads of 160–999 bytes, not only FET-flagged flows. */
  readonly entropyTrigger: boolean;
  readonly proberAddresses: readonly string[];
  readonly proberTimeoutS: number;
  readonly blockScope: 'port' | 'ip';
  /** Random probes (NR1 lengths and NR2) sent per flagged server. */
  readonly randomProbes: number;
}

export const PROBE_DEFAULTS: ProbeParams = {
  entropyTrigger: false,
  proberAddresses: [],
  proberTimeoutS: 10,
  blockScope: 'port',
  randomProbes: 8,
};

/** NR1 length trios (§2), centred on 8, 12, 16, 22, 33, 41, 49. */
export const NR1_LENGTHS = [
  7, 8, 9, 11, 12, 13, 15, 16, 17, 21, 22, 23, 32, 33, 34, 40, 41, 42, 48, 49, 50,
] as const;
export const NR2_LENGTH = 221;

/** The replay variants R1–R5 of a recorded first payload (§2 probe catalogue). */
export function replayProbes(
  d: Uint8Array,
  random: () => number,
): { name: string; payload: Buffer }[] {
  const change = (offsets: number[]) => {
    const b = Buffer.from(d);
    for (const o of offsets)
      if (o < b.length) b[o] = (b[o]! + 1 + Math.floor(random() * 255)) & 0xff;
    return b;
  };
  return [
    { name: 'R1', payload: Buffer.from(d) },
    { name: 'R2', payload: change([0]) },
    { name: 'R3', payload: change([0, 1, 2, 3, 4, 5, 6, 7, 62, 63]) },
    { name: 'R4', payload: change([16]) },
    { name: 'R5', payload: change([6, 16]) },
  ];
}

/**
 * Draws the delay of a first replay, in seconds, from the published distribution (§2): about 20%
 * within 1 s (minimum 0.28 s), 50% within a minute, 75% within 15 minutes, and a long tail (hours).
 */
export function replayDelayS(random: () => number): number {
  const u = random();
  const r = random();
  if (u < 0.2) return 0.28 + r * 0.72;
  if (u < 0.5) return 1 + r * 59;
  if (u < 0.75) return 60 + r * 840;
  return 900 + r * 6 * 3600;
}

/** Shannon entropy of `d`, in bits per byte. */
export function entropy(d: Uint8Array): number {
  const counts = new Array<number>(256).fill(0);
  for (const b of d) counts[b]!++;
  let h = 0;
  for (const c of counts) if (c > 0) h -= (c / d.length) * Math.log2(c / d.length);
  return h;
}

/** §2 classification of a server from its probe results. */
export function classifyServer(results: readonly ProbeResult[]): {
  confirmed: boolean;
  reason: string;
} {
  const r1 = results.find((r) => r.probe === 'R1');
  if (r1?.reaction === 'DATA')
    return { confirmed: true, reason: 'answered an identical replay with data' };
  // A length threshold: sort by length; the reaction switches once and stays.
  const sorted = [...results]
    .filter((r) => r.probe.startsWith('NR'))
    .sort((a, b) => a.length - b.length);
  const kinds = new Set(sorted.map((r) => r.reaction));
  if (kinds.size === 2 && sorted.length >= 4) {
    let switches = 0;
    for (let i = 1; i < sorted.length; i++)
      if (sorted[i]!.reaction !== sorted[i - 1]!.reaction) switches++;
    if (switches === 1)
      return { confirmed: true, reason: 'reaction changes at a length threshold' };
  }
  return { confirmed: false, reason: 'uniform reactions' };
}

/** Connects, sends, and waits for the server's first reaction (or the timeout). */
export const tcpProbe: ProbeSender = (target, payload, timeoutMs, sourceAddress) =>
  new Promise((resolve) => {
    const s = connect({ host: target.host, port: target.port, localAddress: sourceAddress });
    let done = false;
    const finish = (r: Reaction) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => finish('TIMEOUT'), timeoutMs);
    s.on('connect', () => s.write(payload));
    s.on('data', () => finish('DATA'));
    s.on('end', () => finish('FIN'));
    s.on('error', (err: NodeJS.ErrnoException) =>
      finish(err.code === 'ECONNRESET' ? 'RST' : 'TIMEOUT'),
    );
  });

export class ProbeModule implements CensorModule {
  readonly name = 'probe';
  readonly #p: ProbeParams;
  readonly #send: ProbeSender;
  readonly #scheduled = new Set<string>();
  readonly #confirmed = new Set<string>();
  readonly #timers = new Set<NodeJS.Timeout>();
  #nextSource = 0;

  constructor(params: Partial<ProbeParams> = {}, send: ProbeSender = tcpProbe) {
    this.#p = { ...PROBE_DEFAULTS, ...params };
    this.#send = send;
  }

  /** Servers (ip port) the prober confirmed. */
  get confirmed(): ReadonlySet<string> {
    return this.#confirmed;
  }

  watch(flow: Flow): boolean {
    if (flow.proto !== 'tcp') return false;
    if (this.#confirmed.has(this.#blockKey(flow.server.addr, flow.server.port))) return true;
    return flow.outbound && !this.#scheduled.has(`${flow.server.addr} ${flow.server.port}`);
  }

  onPacket(p: Packet, flow: Flow, ctx: CensorContext): Verdict {
    if (this.#confirmed.has(this.#blockKey(flow.server.addr, flow.server.port))) {
      if (p.c2s) return undefined;
      // §2: null routing of server→client only
      if (!flow.scratch.has('probe-block')) {
        flow.scratch.set('probe-block', true);
        ctx.emit(
          {
            module: this.name,
            action: 'drop',
            detail: `confirmed server, ${this.#p.blockScope} null-routed`,
          },
          flow,
        );
      }
      return 'drop';
    }
    if (!p.c2s || p.payload.length === 0) return undefined;
    flow.watchers.delete(this);
    const flagged = flow.scratch.get('flagged') !== undefined;
    const suspicious =
      this.#p.entropyTrigger &&
      p.payload.length >= 160 &&
      p.payload.length <= 999 &&
      entropy(p.payload) > 7;
    if (!flagged && !suspicious) return undefined;
    const key = `${flow.server.addr} ${flow.server.port}`;
    if (this.#scheduled.has(key)) return undefined;
    this.#scheduled.add(key);
    ctx.emit(
      { module: this.name, action: 'schedule', detail: flagged ? 'fet-flagged' : 'entropy' },
      flow,
    );
    void this.#campaign(
      { host: flow.server.addr, port: flow.server.port },
      Buffer.from(p.payload),
      flow,
      ctx,
    );
    return undefined;
  }

  /** Stops pending probes (the censor is shutting down). */
  close(): void {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
  }

  #blockKey(addr: string, port: number): string {
    return this.#p.blockScope === 'ip' ? addr : `${addr} ${port}`;
  }

  #sleep(seconds: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.#timers.delete(t);
        resolve();
      }, seconds * 1000);
      t.unref();
      this.#timers.add(t);
    });
  }

  async #campaign(
    target: { host: string; port: number },
    first: Buffer,
    flow: Flow,
    ctx: CensorContext,
  ): Promise<void> {
    const tf = ctx.timeFactor;
    const timeoutMs = Math.max(500, this.#p.proberTimeoutS * 1000 * Math.min(1, tf * 10));
    const results: ProbeResult[] = [];
    const probe = async (name: string, payload: Buffer) => {
      const src =
        this.#p.proberAddresses.length > 0
          ? this.#p.proberAddresses[this.#nextSource++ % this.#p.proberAddresses.length]
          : undefined;
      const reaction = await this.#send(target, payload, timeoutMs, src);
      results.push({ probe: name, length: payload.length, reaction });
      ctx.emit(
        { module: this.name, action: 'probe', detail: `${name} ${payload.length} B: ${reaction}` },
        flow,
      );
      return reaction;
    };
    const replays = replayProbes(first, ctx.random);
    await this.#sleep(replayDelayS(ctx.random) * tf);
    const r1 = await probe('R1', replays[0]!.payload);
    await this.#sleep(replayDelayS(ctx.random) * tf * 0.1);
    const r2 = await probe('R2', replays[1]!.payload);
    if (r1 === 'DATA' || r2 === 'DATA')
      for (const r of replays.slice(2)) await probe(r.name, r.payload);
    for (let i = 0; i < this.#p.randomProbes; i++) {
      await this.#sleep((60 + ctx.random() * 600) * tf * 0.01); // drip-fed (§2): a few per hour
      const nr2 = i % 4 === 3;
      const len = nr2 ? NR2_LENGTH : NR1_LENGTHS[Math.floor(ctx.random() * NR1_LENGTHS.length)]!;
      const payload = Buffer.alloc(len);
      for (let j = 0; j < len; j++) payload[j] = Math.floor(ctx.random() * 256);
      await probe(nr2 ? 'NR2' : 'NR1', payload);
    }
    const verdict = classifyServer(results);
    ctx.emit(
      {
        module: this.name,
        action: verdict.confirmed ? 'confirm' : 'clear',
        detail: verdict.reason,
      },
      flow,
    );
    if (verdict.confirmed) this.#confirmed.add(this.#blockKey(target.host, target.port));
  }
}
