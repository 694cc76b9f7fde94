/**
 * Russia's TSPU as reported 2024–2026 (reference censorship-2024-2026.md, "Russia"). Each class is
 * one technique; each is a pure packet policy over the engine's flow state.
 *
 * - `byte-budget` — the "16 KB curse" (net4people/bbs#490, since about June 2025): TCP connections
 *   to foreign hosting ranges (Cloudflare, Hetzner, DigitalOcean, OVH, later Oracle and AWS) freeze
 *   after 15–20 KB from the server; the reported range is 14–32 KB. No RST: every later
 *   server→client packet of the flow is dropped, so the client waits until its own timeout. The
 *   budget of a flow is drawn uniformly from [minBytes, maxBytes]. n4p#490 also reports that the
 *   rule does not look at the protocol (plain iperf3 TCP is frozen too) and that some SNIs are
 *   exempt (n4p#662: a small SNI whitelist for sites behind Cloudflare): `exemptSni`.
 * - `whitelist` — mobile whitelist mode (n4p#516, #579, #650, since about September 2025): only
 *   approved SNIs (in a TLS ClientHello or a QUIC v1 Initial) and approved address ranges pass; every
 *   other outbound flow is dropped silently at its first payload (TCP) or first datagram (UDP).
 * - `conn-count` — connection-count policing (n4p#546, November 2025; XTLS/Xray-core#5332 advises at
 *   most 6 connections): a client with more than N concurrent TLS connections to one server address
 *   has the new connection cut (RST to both ends); since May 2026 N depends on the ClientHello's
 *   fingerprint (Xray-core PR #6181), here by JA3 hash (`perFingerprint`).
 * - `hello-score` — ClientHello scoring (XTLS/Xray-core#6293, June 2026): the server's range, the
 *   SNI and the fingerprint each add to a score; at or above the threshold the connection is
 *   frozen (both directions dropped, no RST).
 * - `tls-in-tls-ru` — the TSPU's rule against Shadowsocks and VMess (n4p#363, since 2024-04-25): in a
 *   flow whose first client payload is not TLS (a fully encrypted tunnel), 3 or more client packets
 *   of at least 411 bytes among the first `window` client packets — the size of an inner TLS
 *   ClientHello and the requests after it — freeze the flow.
 *
 * The byte-budget and whitelist figures are users' measurements, not a paper's; the lab's defaults
 * take the published range, and everything is a parameter.
 * @module
 */
import { TCP_FLAG } from '../packet/l4.js';
import { joinHandshakeRecords, parseClientHello } from '../packet/tls-client-hello.js';
import type { CensorContext, CensorModule, Flow, Packet, Verdict } from '../censor/types.js';
import { prefixMatcher } from '../censor/engine.js';
import { nameMatcher } from './names.js';
import { quicInitialSni } from './quic.js';
import { ja3Hash } from './tls-fingerprint.js';
import { decodeClientHello, ja4 } from '../../codec/tls-client-hello.js';

/** A predicate over addresses for a list of CIDR prefixes. */
export function rangeMatcher(cidrs: readonly string[]): (addr: string) => boolean {
  const ms = cidrs.map(prefixMatcher);
  return (addr) => ms.some((m) => m(addr));
}

// ---------------------------------------------------------------------------------------------
// byte budget

export interface ByteBudgetParams {
  /** "Foreign hosting" prefixes whose flows get a budget. */
  readonly ranges: readonly string[];
  readonly minBytes: number;
  readonly maxBytes: number;
  /** SNIs exempt from the budget (n4p#662). */
  readonly exemptSni: readonly string[];
}

export const BYTE_BUDGET_DEFAULTS: ByteBudgetParams = {
  ranges: [],
  minBytes: 14 * 1024,
  maxBytes: 32 * 1024,
  exemptSni: [],
};

/** The budget of a new flow, uniform in [min, max] (pure given `u` in [0, 1)). */
export function drawBudget(u: number, p: Pick<ByteBudgetParams, 'minBytes' | 'maxBytes'>): number {
  return p.minBytes + Math.floor(u * (p.maxBytes - p.minBytes + 1));
}

interface BudgetState {
  readonly budget: number;
  exempt: boolean | undefined;
  stalled: boolean;
}

export class ByteBudgetModule implements CensorModule {
  readonly name = 'byte-budget';
  readonly #p: ByteBudgetParams;
  readonly #inRange: (a: string) => boolean;
  readonly #exempt: (n: string) => boolean;

  constructor(params: Partial<ByteBudgetParams> = {}) {
    this.#p = { ...BYTE_BUDGET_DEFAULTS, ...params };
    this.#inRange = rangeMatcher(this.#p.ranges);
    this.#exempt = nameMatcher(this.#p.exemptSni);
  }

  watch(flow: Flow, ctx: CensorContext): boolean {
    if (flow.proto !== 'tcp' || !flow.outbound || !this.#inRange(flow.server.addr)) return false;
    const st: BudgetState = {
      budget: drawBudget(ctx.random(), this.#p),
      exempt: this.#p.exemptSni.length === 0 ? false : undefined,
      stalled: false,
    };
    flow.scratch.set(this.name, st);
    return true;
  }

  onPacket(p: Packet, flow: Flow, ctx: CensorContext): Verdict {
    const st = flow.scratch.get(this.name) as BudgetState;
    if (st.exempt === undefined && p.c2s && p.payload.length > 0) {
      const ch = parseClientHello(flow.c2sData);
      if (ch !== null) st.exempt = ch?.sni !== undefined && this.#exempt(ch.sni);
    }
    if (st.exempt) {
      flow.watchers.delete(this);
      return undefined;
    }
    if (p.c2s || flow.s2cBytes <= st.budget) return undefined;
    if (!st.stalled) {
      st.stalled = true;
      ctx.blockFlow(flow, 's2c');
      ctx.emit({ module: this.name, action: 'stall', detail: `budget ${st.budget} bytes` }, flow);
    }
    return 'drop';
  }
}

// ---------------------------------------------------------------------------------------------
// whitelist mode

export interface WhitelistParams {
  /** SNIs allowed in TLS ClientHellos and QUIC Initials (GFW-style suffix match, names.ts). */
  readonly sni: readonly string[];
  /** Server prefixes that pass whatever they carry. */
  readonly ranges: readonly string[];
  /** Let DNS (port 53) pass: the resolver of a mobile network sits inside it. */
  readonly allowDns: boolean;
}

export const WHITELIST_DEFAULTS: WhitelistParams = { sni: [], ranges: [], allowDns: true };

export class WhitelistModule implements CensorModule {
  readonly name = 'whitelist';
  readonly #p: WhitelistParams;
  readonly #sni: (n: string) => boolean;
  readonly #range: (a: string) => boolean;

  constructor(params: Partial<WhitelistParams> = {}) {
    this.#p = { ...WHITELIST_DEFAULTS, ...params };
    this.#sni = nameMatcher(this.#p.sni);
    this.#range = rangeMatcher(this.#p.ranges);
  }

  watch(flow: Flow): boolean {
    if (!flow.outbound || this.#range(flow.server.addr)) return false;
    return !(this.#p.allowDns && flow.server.port === 53);
  }

  onPacket(p: Packet, flow: Flow, ctx: CensorContext): Verdict {
    if (!p.c2s || p.payload.length === 0) return undefined;
    let why: string;
    if (flow.proto === 'udp') {
      const sni = quicInitialSni(p.payload, false);
      if (sni !== undefined && this.#sni(sni)) {
        flow.watchers.delete(this);
        return undefined;
      }
      why = sni === undefined ? 'UDP without an allowed QUIC SNI' : 'QUIC SNI not allowed';
    } else {
      const ch = parseClientHello(flow.c2sData);
      if (ch === null) return undefined;
      if (ch?.sni !== undefined && this.#sni(ch.sni)) {
        flow.watchers.delete(this);
        return undefined;
      }
      why = ch ? 'SNI not allowed' : 'not TLS';
    }
    flow.watchers.delete(this);
    ctx.blockFlow(flow, 'both');
    ctx.emit({ module: this.name, action: 'drop', detail: why }, flow);
    return 'drop';
  }
}

// ---------------------------------------------------------------------------------------------
// connection-count policing

export interface ConnCountParams {
  /** Concurrent TLS connections a client may hold to one server address. */
  readonly maxConnections: number;
  /** Limits by JA3 hash of the ClientHello (a stricter N for a suspicious fingerprint). */
  readonly perFingerprint: Readonly<Record<string, number>>;
  /** A connection idle this long (ms × timeFactor) no longer counts. */
  readonly idleMs: number;
}

export const CONN_COUNT_DEFAULTS: ConnCountParams = {
  maxConnections: 6,
  perFingerprint: {},
  idleMs: 60_000,
};

interface Live {
  readonly flow: Flow;
}

export class ConnCountModule implements CensorModule {
  readonly name = 'conn-count';
  readonly #p: ConnCountParams;
  /** Live TLS connections by "client server" address pair. */
  readonly #live = new Map<string, Set<Live>>();

  constructor(params: Partial<ConnCountParams> = {}) {
    this.#p = { ...CONN_COUNT_DEFAULTS, ...params };
  }

  /** Live connections of a pair now (for tests and events). */
  count(client: string, server: string): number {
    return this.#live.get(`${client} ${server}`)?.size ?? 0;
  }

  watch(flow: Flow): boolean {
    return flow.proto === 'tcp' && flow.outbound && flow.sawSyn;
  }

  onPacket(p: Packet, flow: Flow, ctx: CensorContext): Verdict {
    const key = `${flow.client.addr} ${flow.server.addr}`;
    const mine = flow.scratch.get(this.name) as Live | undefined;
    if (p.tcp && p.tcp.flags & (TCP_FLAG.FIN | TCP_FLAG.RST)) {
      if (mine) this.#remove(key, mine);
      flow.watchers.delete(this);
      return undefined;
    }
    if (mine || !p.c2s || p.payload.length === 0) return undefined;
    const ch = parseClientHello(flow.c2sData);
    if (ch === null) return undefined;
    if (!ch) {
      flow.watchers.delete(this); // only TLS connections count
      return undefined;
    }
    const set = this.#prune(key, ctx);
    const limit = this.#p.perFingerprint[ja3Hash(ch)] ?? this.#p.maxConnections;
    if (set.size + 1 > limit) {
      flow.watchers.delete(this);
      ctx.resetBoth(flow, p, 'II');
      ctx.blockFlow(flow, 'both');
      ctx.emit(
        { module: this.name, action: 'reset', detail: `${set.size + 1} > ${limit} connections` },
        flow,
      );
      return 'drop';
    }
    const live = { flow };
    set.add(live);
    flow.scratch.set(this.name, live);
    return undefined;
  }

  #prune(key: string, ctx: CensorContext): Set<Live> {
    let set = this.#live.get(key);
    if (!set) {
      set = new Set();
      this.#live.set(key, set);
    }
    const idle = this.#p.idleMs * ctx.timeFactor;
    for (const l of set) if (ctx.now() - l.flow.lastSeen > idle) set.delete(l);
    return set;
  }

  #remove(key: string, l: Live): void {
    const set = this.#live.get(key);
    set?.delete(l);
    if (set && set.size === 0) this.#live.delete(key);
  }
}

// ---------------------------------------------------------------------------------------------
// ClientHello scoring

export interface HelloScoreParams {
  /** Server prefixes and what each adds (e.g. foreign hosting ASNs). */
  readonly ranges: readonly { readonly cidr: string; readonly score: number }[];
  /** SNIs on the allowlist subtract `allowedSniScore`; any other SNI adds `otherSniScore`. */
  readonly allowedSni: readonly string[];
  readonly allowedSniScore: number;
  readonly otherSniScore: number;
  /**
   * Browsers' fingerprints as they are now, JA3 hashes or JA4 strings: anything else adds
   * `unknownFingerprintScore`. Chrome permutes its extensions in every hello, so its JA3 changes
   * with each connection and only its JA4 (extensions sorted) can be listed.
   */
  readonly knownFingerprints: readonly string[];
  readonly unknownFingerprintScore: number;
  /**
   * Fingerprints (JA3 or JA4) known to stand out (a stale Chrome, a Chrome hello with its PQ share
   * removed).
   */
  readonly badFingerprints: readonly string[];
  readonly badFingerprintScore: number;
  readonly threshold: number;
}

export const HELLO_SCORE_DEFAULTS: HelloScoreParams = {
  ranges: [],
  allowedSni: [],
  allowedSniScore: -2,
  otherSniScore: 1,
  knownFingerprints: [],
  unknownFingerprintScore: 1,
  badFingerprints: [],
  badFingerprintScore: 2,
  threshold: 3,
};

/**
 * The score of a ClientHello to a server address, with its parts (pure). The fingerprint lists are
 * matched against the hello's JA3 hash and, when given, its JA4.
 */
export function helloScore(
  sni: string | undefined,
  ja3: string,
  serverAddr: string,
  p: HelloScoreParams = HELLO_SCORE_DEFAULTS,
  ja4?: string,
): { score: number; parts: string[] } {
  const on = (list: readonly string[]) =>
    list.includes(ja3) || (ja4 !== undefined && list.includes(ja4));
  const parts: string[] = [];
  let score = 0;
  for (const r of p.ranges)
    if (prefixMatcher(r.cidr)(serverAddr)) {
      score += r.score;
      parts.push(`range ${r.cidr} ${r.score}`);
    }
  const allowed = sni !== undefined && nameMatcher(p.allowedSni)(sni);
  const s = allowed ? p.allowedSniScore : p.otherSniScore;
  score += s;
  parts.push(`${allowed ? 'allowed' : 'other'} SNI ${s}`);
  if (on(p.badFingerprints)) {
    score += p.badFingerprintScore;
    parts.push(`bad fingerprint ${p.badFingerprintScore}`);
  } else if (!on(p.knownFingerprints)) {
    score += p.unknownFingerprintScore;
    parts.push(`unknown fingerprint ${p.unknownFingerprintScore}`);
  }
  return { score, parts };
}

export class HelloScoreModule implements CensorModule {
  readonly name = 'hello-score';
  readonly #p: HelloScoreParams;

  constructor(params: Partial<HelloScoreParams> = {}) {
    this.#p = { ...HELLO_SCORE_DEFAULTS, ...params };
  }

  watch(flow: Flow): boolean {
    return flow.proto === 'tcp' && flow.outbound && flow.sawSyn;
  }

  onPacket(p: Packet, flow: Flow, ctx: CensorContext): Verdict {
    if (!p.c2s || p.payload.length === 0) return undefined;
    // The TSPU reassembles before fingerprinting (teleproxy#39), so records are joined here.
    const joined = joinHandshakeRecords(flow.c2sData);
    const ch = joined ? parseClientHello(joined) : joined;
    if (ch === null && flow.c2sData.length < 16 * 1024) return undefined;
    flow.watchers.delete(this);
    if (!ch) return undefined;
    const { score, parts } = helloScore(
      ch.sni,
      ja3Hash(ch),
      flow.server.addr,
      this.#p,
      joined ? helloJa4(joined) : undefined,
    );
    if (score < this.#p.threshold) return undefined;
    ctx.blockFlow(flow, 'both');
    ctx.emit(
      { module: this.name, action: 'freeze', detail: `score ${score}: ${parts.join(', ')}` },
      flow,
    );
    return 'drop';
  }
}

/** The JA4 of a (joined) ClientHello record, or undefined when the codec cannot read it. */
function helloJa4(record: Uint8Array): string | undefined {
  try {
    const ch = decodeClientHello(record)?.value;
    return ch ? ja4(ch) : undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// the TSPU's TLS-in-TLS rule

export interface RuTlsInTlsParams {
  readonly minSize: number;
  readonly minPackets: number;
  /** Client payload packets looked at, from the first. */
  readonly window: number;
}

export const RU_TLS_IN_TLS_DEFAULTS: RuTlsInTlsParams = { minSize: 411, minPackets: 3, window: 16 };

/** The rule on a list of client payload sizes (pure): index of the packet that trips it, or -1. */
export function ruTlsInTls(
  sizes: readonly number[],
  p: RuTlsInTlsParams = RU_TLS_IN_TLS_DEFAULTS,
): number {
  let n = 0;
  for (let i = 0; i < Math.min(sizes.length, p.window); i++)
    if (sizes[i]! >= p.minSize && ++n >= p.minPackets) return i;
  return -1;
}

export class RuTlsInTlsModule implements CensorModule {
  readonly name = 'tls-in-tls-ru';
  readonly #p: RuTlsInTlsParams;

  constructor(params: Partial<RuTlsInTlsParams> = {}) {
    this.#p = { ...RU_TLS_IN_TLS_DEFAULTS, ...params };
  }

  watch(flow: Flow): boolean {
    return flow.proto === 'tcp' && flow.outbound;
  }

  onPacket(p: Packet, flow: Flow, ctx: CensorContext): Verdict {
    if (!p.c2s || p.payload.length === 0) return undefined;
    let sizes = flow.scratch.get(this.name) as number[] | undefined;
    if (!sizes) {
      // Any TLS record type (CCS, alert, handshake, application data): a flow first seen mid-way,
      // such as a long-lived multiplexed connection, is TLS outside too.
      if (p.payload[0]! >= 0x14 && p.payload[0]! <= 0x17 && p.payload[1] === 0x03) {
        flow.watchers.delete(this); // TLS outside: not a fully encrypted tunnel
        return undefined;
      }
      sizes = [];
      flow.scratch.set(this.name, sizes);
    }
    sizes.push(p.payload.length);
    if (ruTlsInTls(sizes, this.#p) < 0) {
      if (sizes.length >= this.#p.window) flow.watchers.delete(this);
      return undefined;
    }
    flow.watchers.delete(this);
    ctx.blockFlow(flow, 'both');
    ctx.emit(
      {
        module: this.name,
        action: 'freeze',
        detail: `${this.#p.minPackets} client packets ≥ ${this.#p.minSize} bytes`,
      },
      flow,
    );
    return 'drop';
  }
}
