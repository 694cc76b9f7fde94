/**
 * Active probing of suspected proxies (docs/censorship-techniques.md §2; Alice et al., IMC 2020,
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
import { connect as tlsConnect } from 'node:tls';
import type { CensorContext, CensorModule, Flow, Packet, Verdict } from '../censor/types.js';
import { parseClientHello } from '../packet/tls-client-hello.js';

export type Reaction = 'TIMEOUT' | 'RST' | 'FIN' | 'DATA';

/** Where a probe's payload goes: straight into TCP, or inside a TLS session the prober opens. */
export type ProbeLayer = 'tcp' | 'tls';

export interface ProbeResult {
  readonly probe: string;
  readonly length: number;
  readonly reaction: Reaction;
  readonly layer?: ProbeLayer;
  /** What the server sent before the prober gave up (at most {@link MAX_REPLY_BYTES}). */
  readonly reply?: Buffer;
}

export interface ProbeOutcome {
  readonly reaction: Reaction;
  readonly reply: Buffer;
}

/** Sends one probe and reports how the server reacted. */
export type ProbeSender = (
  target: { host: string; port: number },
  payload: Uint8Array,
  timeoutMs: number,
  sourceAddress: string | undefined,
  layer: ProbeLayer,
  servername: string | undefined,
) => Promise<ProbeOutcome>;

export interface ProberParams {
  /**
   * Which flows draw probes: `fet` only those FET flagged (§1, §2), `entropy` also 160–999 B first
   * payloads with entropy > 7 bits/byte (§2), `all` every outbound server's first flow (a stress
   * test of a transport's probe resistance; the GFW is not known to do this).
   */
  readonly trigger: 'fet' | 'entropy' | 'all';
  /** @deprecated the same as trigger 'entropy'. */
  readonly entropyTrigger: boolean;
  readonly proberAddresses: readonly string[];
  readonly proberTimeoutS: number;
  readonly blockScope: 'port' | 'ip';
  /** Random probes (NR1 lengths and NR2) sent per flagged server. */
  readonly randomProbes: number;
  /** Random probes of a uniform length in 1..2000 (the lab's length sweep). */
  readonly randomLengthProbes: number;
  /**
   * For a server whose first payload was a TLS ClientHello: probes sent inside a TLS session the
   * prober opens (as the Tor prober speaks TLS, §12): random lengths 1..2000 and an HTTP request.
   */
  readonly tlsProbes: number;
  /** Upper bound on any wait before a probe, in lab seconds (after the time factor). */
  readonly maxDelayS: number;
}

export const PROBER_DEFAULTS: ProberParams = {
  trigger: 'fet',
  entropyTrigger: false,
  proberAddresses: [],
  proberTimeoutS: 10,
  blockScope: 'port',
  randomProbes: 8,
  randomLengthProbes: 4,
  tlsProbes: 4,
  maxDelayS: Infinity,
};

/** NR1 length trios (§2), centred on 8, 12, 16, 22, 33, 41, 49. */
export const NR1_LENGTHS = [
  7, 8, 9, 11, 12, 13, 15, 16, 17, 21, 22, 23, 32, 33, 34, 40, 41, 42, 48, 49, 50,
] as const;
export const NR2_LENGTH = 221;
/** The longest random probe of the length sweep. */
export const MAX_RANDOM_PROBE_LENGTH = 2000;
/** Reply bytes a probe keeps. */
export const MAX_REPLY_BYTES = 64 * 1024;
/** After the first reply bytes, the prober reads this long before it closes (§2: it ACKs, then FINs). */
const REPLY_SETTLE_MS = 300;

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

function randomPayload(len: number, random: () => number): Buffer {
  const b = Buffer.alloc(len);
  for (let j = 0; j < len; j++) b[j] = Math.floor(random() * 256);
  return b;
}

export interface PlannedProbe {
  readonly name: string;
  readonly payload: Buffer;
  readonly layer: ProbeLayer;
  /** Sent only if R1 or R2 drew data (R3–R5, §2 staging). */
  readonly afterReplyData?: boolean;
}

/**
 * The probes one campaign sends, in order, drawn from `random` (deterministic for a seed, so the same
 * campaign can be sent to two servers and the reactions compared).
 */
export function planProbes(
  first: Uint8Array,
  random: () => number,
  params: Pick<ProberParams, 'randomProbes' | 'randomLengthProbes' | 'tlsProbes'>,
): PlannedProbe[] {
  const out: PlannedProbe[] = [];
  const replays = replayProbes(first, random);
  replays.forEach((r, i) =>
    out.push({ ...r, layer: 'tcp', ...(i >= 2 ? { afterReplyData: true } : {}) }),
  );
  for (let i = 0; i < params.randomProbes; i++) {
    const nr2 = i % 4 === 3;
    const len = nr2 ? NR2_LENGTH : NR1_LENGTHS[Math.floor(random() * NR1_LENGTHS.length)]!;
    out.push({ name: nr2 ? 'NR2' : 'NR1', payload: randomPayload(len, random), layer: 'tcp' });
  }
  for (let i = 0; i < params.randomLengthProbes; i++) {
    const len = 1 + Math.floor(random() * MAX_RANDOM_PROBE_LENGTH);
    out.push({ name: 'NR3', payload: randomPayload(len, random), layer: 'tcp' });
  }
  if (isClientHello(first) && params.tlsProbes > 0) {
    const host = parseClientHello(first)?.sni ?? 'localhost';
    out.push({
      name: 'T-HTTP',
      payload: Buffer.from(`GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`),
      layer: 'tls',
    });
    for (let i = 1; i < params.tlsProbes; i++) {
      const len = 1 + Math.floor(random() * MAX_RANDOM_PROBE_LENGTH);
      out.push({ name: 'T-NR3', payload: randomPayload(len, random), layer: 'tls' });
    }
  }
  return out;
}

function isClientHello(d: Uint8Array): boolean {
  return d.length > 5 && d[0] === 0x16 && d[1] === 0x03 && d[5] === 0x01;
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

/**
 * §2 classification of a server from its probe results. An identical replay answered with data
 * confirms a server, unless the replayed first payload was a TLS ClientHello: every HTTPS server
 * answers one, and the GFW does not block them all. A TLS server is confirmed instead when nothing it
 * says inside TLS looks like a web server's HTTP reply (the prober spoke TLS, as against Tor, §12).
 */
export function classifyServer(
  results: readonly ProbeResult[],
  firstWasTls = false,
): {
  confirmed: boolean;
  reason: string;
} {
  const r1 = results.find((r) => r.probe === 'R1');
  if (r1?.reaction === 'DATA' && !firstWasTls)
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
  const inside = results.filter((r) => r.layer === 'tls');
  if (
    inside.length > 0 &&
    !inside.some(
      (r) =>
        r.reply !== undefined && /^HTTP\/1\.[01] \d{3} /.test(r.reply.toString('latin1', 0, 16)),
    )
  )
    return { confirmed: true, reason: 'a TLS server that does not answer like a web server' };
  return { confirmed: false, reason: 'uniform reactions' };
}

/**
 * Connects (over TLS for layer 'tls', without verifying the certificate, as a prober would), sends,
 * and records the server's reaction: data (read for a short while more, then the prober closes), a
 * reset, a FIN, or nothing before the timeout.
 */
export const tcpProbe: ProbeSender = (
  target,
  payload,
  timeoutMs,
  sourceAddress,
  layer,
  servername,
) =>
  new Promise((resolve) => {
    const parts: Buffer[] = [];
    let got = 0;
    const raw = connect({ host: target.host, port: target.port, localAddress: sourceAddress });
    const s =
      layer === 'tls'
        ? tlsConnect({
            socket: raw,
            ...(servername ? { servername } : {}),
            rejectUnauthorized: false,
            ALPNProtocols: ['http/1.1'],
          })
        : raw;
    raw.on('error', () => {}); // reported through `s`
    let done = false;
    let settle: NodeJS.Timeout | undefined;
    const finish = (r: Reaction) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearTimeout(settle);
      s.destroy();
      raw.destroy();
      resolve({ reaction: got > 0 ? 'DATA' : r, reply: Buffer.concat(parts) });
    };
    const timer = setTimeout(() => finish('TIMEOUT'), timeoutMs);
    s.on(layer === 'tls' ? 'secureConnect' : 'connect', () => s.write(payload));
    s.on('data', (d: Buffer) => {
      if (got < MAX_REPLY_BYTES) parts.push(d.subarray(0, MAX_REPLY_BYTES - got));
      got += d.length;
      settle ??= setTimeout(() => finish('DATA'), REPLY_SETTLE_MS);
    });
    s.on('end', () => finish('FIN'));
    s.on('error', (err: NodeJS.ErrnoException) =>
      finish(err.code === 'ECONNRESET' ? 'RST' : 'TIMEOUT'),
    );
  });

/** Options of one campaign run outside the censor (`ladder lab probe`, tests). */
export interface CampaignOptions {
  readonly random: () => number;
  readonly timeoutMs: number;
  readonly params: Pick<ProberParams, 'randomProbes' | 'randomLengthProbes' | 'tlsProbes'>;
  readonly sourceAddresses?: readonly string[];
  readonly send?: ProbeSender;
  /** Waits between probes (the censor passes the published delays × time factor); none by default. */
  readonly sleep?: (name: string) => Promise<void>;
  readonly onResult?: (r: ProbeResult) => void;
}

/** Sends a whole campaign to one server and returns the results in order. */
export async function runCampaign(
  target: { host: string; port: number },
  first: Uint8Array,
  o: CampaignOptions,
): Promise<ProbeResult[]> {
  const send = o.send ?? tcpProbe;
  const sni = isClientHello(first) ? (parseClientHello(first)?.sni ?? undefined) : undefined;
  const results: ProbeResult[] = [];
  let source = 0;
  let replyData = false;
  for (const p of planProbes(first, o.random, o.params)) {
    if (p.afterReplyData && !replyData) continue;
    await o.sleep?.(p.name);
    const src = o.sourceAddresses?.length
      ? o.sourceAddresses[source++ % o.sourceAddresses.length]
      : undefined;
    const out = await send(target, p.payload, o.timeoutMs, src, p.layer, sni);
    const r: ProbeResult = {
      probe: p.name,
      length: p.payload.length,
      reaction: out.reaction,
      layer: p.layer,
      reply: out.reply,
    };
    if ((p.name === 'R1' || p.name === 'R2') && out.reaction === 'DATA') replyData = true;
    results.push(r);
    o.onResult?.(r);
  }
  return results;
}

/**
 * The lab's active prober as a censor module. Its name stays `probe`: the report card's column,
 * the policy key `modules.probe` and `ladder lab probe` use it.
 */
export class ProberModule implements CensorModule {
  readonly name = 'probe';
  readonly #p: ProberParams;
  readonly #send: ProbeSender;
  readonly #scheduled = new Set<string>();
  readonly #confirmed = new Set<string>();
  readonly #timers = new Set<NodeJS.Timeout>();

  constructor(params: Partial<ProberParams> = {}, send: ProbeSender = tcpProbe) {
    this.#p = { ...PROBER_DEFAULTS, ...params };
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
    const trigger = this.#p.entropyTrigger ? 'entropy' : this.#p.trigger;
    const suspicious =
      trigger === 'all' ||
      (trigger === 'entropy' &&
        p.payload.length >= 160 &&
        p.payload.length <= 999 &&
        entropy(p.payload) > 7);
    if (!flagged && !suspicious) return undefined;
    const key = `${flow.server.addr} ${flow.server.port}`;
    if (this.#scheduled.has(key)) return undefined;
    this.#scheduled.add(key);
    ctx.emit(
      { module: this.name, action: 'schedule', detail: flagged ? 'fet-flagged' : trigger },
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
    const results = await runCampaign(target, first, {
      random: ctx.random,
      timeoutMs,
      params: this.#p,
      sourceAddresses: this.#p.proberAddresses,
      send: this.#send,
      sleep: (name) =>
        this.#sleep(
          Math.min(
            this.#p.maxDelayS,
            name === 'R1'
              ? replayDelayS(ctx.random) * tf
              : name.startsWith('R')
                ? replayDelayS(ctx.random) * tf * 0.1
                : (60 + ctx.random() * 600) * tf * 0.01, // drip-fed (§2): a few per hour
          ),
        ),
      onResult: (r) =>
        ctx.emit(
          {
            module: this.name,
            action: 'probe',
            detail: `${r.layer === 'tls' ? 'TLS ' : ''}${r.probe} ${r.length} B: ${r.reaction}`,
          },
          flow,
        ),
    });
    const verdict = classifyServer(results, isClientHello(first));
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
