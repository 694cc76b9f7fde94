/**
 * The path emulator's model: what a long, lossy, narrow link does to each packet, one direction at
 * a time. This kernel has no `sch_netem` (`tc qdisc add … netem` answers "Specified qdisc kind is
 * unknown"), so the wall does it in user space: the censor hands every packet it forwards to a
 * {@link PathLink} per direction, which decides drop or departure time, and the emulator
 * (path-emulator.ts) writes the packet back to the TUN at that time.
 *
 * Per packet, in the order a real link applies them (as netem does):
 *
 * ```text
 *   loss ─▶ drop-tail queue ─▶ serialisation at `rateBps` ─▶ propagation delay ± jitter ─▶ out
 *   (random or Gilbert–Elliott)  (`queueBytes`; full = drop)                    (optional reorder)
 * ```
 *
 * - Random loss drops each packet with probability `p`. Gilbert–Elliott loss is a two-state Markov
 *   chain (Gilbert 1960, Elliott 1963; the "gemodel" of netem): good → bad with probability `p`, bad
 *   → good with `r`, per packet; a packet is lost with probability `lossBad` in the bad state and
 *   `lossGood` in the good. Mean loss is `π_bad·lossBad + π_good·lossGood` with `π_bad = p/(p+r)`;
 *   the mean bad run lasts `1/r` packets. With a bandwidth cap the chain also steps through the
 *   time the link is idle, once per full-size packet's serialisation time ({@link GE_SLOT_BYTES}):
 *   a burst is a congestion episode a few packet times long, so a packet sent after a pause meets
 *   the chain's long-run state rather than the state the last packet left. A chain that steps per
 *   packet only (netem's) keeps a burst on across any pause: a lone flow's retransmission after a
 *   timeout is then lost with probability `1 − r` (2/3 for bursts of 3), so the timeout backs off
 *   again and again (a stall, or a SYN retried past a dial's deadline) where a real path loses it
 *   at the mean rate.
 * - The queue holds the bytes not yet serialised: `(linkFreeAt - now)·rate`. A packet that would
 *   take it past `queueBytes` is dropped (drop-tail).
 * - Delay is `delayMs` plus jitter uniform in ±`jitterMs`; packets keep their order (a packet leaves
 *   no earlier than the one before it) unless reordering picks it: then it skips the ordering and
 *   leaves `reorderGapMs` earlier than its turn would have been.
 *
 * Pure: time and randomness are arguments, so tests drive it with a fake clock and a seed.
 * @module
 */
import { ConfigError } from '../errors.js';

export type LossModel =
  | { readonly kind: 'none' }
  | { readonly kind: 'random'; readonly p: number }
  | {
      readonly kind: 'gilbert-elliott';
      /** Probability per packet of going from the good state to the bad. */
      readonly p: number;
      /** Probability per packet of going from the bad state back to the good. */
      readonly r: number;
      /** Loss probability in the bad state (1 in the Gilbert model). */
      readonly lossBad: number;
      /** Loss probability in the good state (0 in the Gilbert model). */
      readonly lossGood: number;
    };

/** One direction of a path. */
export interface LinkParams {
  /** One-way propagation delay. */
  readonly delayMs: number;
  /** Jitter: the delay varies uniformly in ±jitterMs (never below 0). */
  readonly jitterMs: number;
  readonly loss: LossModel;
  /** Bandwidth cap in bit/s; 0 = unlimited (and no queue). */
  readonly rateBps: number;
  /** Drop-tail queue in bytes in front of the bandwidth cap. */
  readonly queueBytes: number;
  /** Probability that a packet is reordered (sent ahead of its turn). */
  readonly reorder: number;
  /** How much earlier than its turn a reordered packet leaves. */
  readonly reorderGapMs: number;
}

/** A path: the client → abroad direction ("up") and the abroad → client direction ("down"). */
export interface PathParams {
  readonly up: LinkParams;
  readonly down: LinkParams;
}

export const PATH_PROFILES = ['path-good', 'path-cn-us', 'path-cn-peak'] as const;
export type PathProfileName = (typeof PATH_PROFILES)[number];

/**
 * Gilbert–Elliott parameters (lossBad 1, lossGood 0) for a mean loss rate and a mean burst length
 * in packets: r = 1/burst, π_bad = p/(p+r) = rate ⇒ p = rate·r/(1 − rate).
 */
export function burstyLoss(rate: number, meanBurst: number): LossModel {
  const r = 1 / meanBurst;
  return { kind: 'gilbert-elliott', p: (rate * r) / (1 - rate), r, lossBad: 1, lossGood: 0 };
}

/** The long-run loss rate a loss model produces. */
export function meanLossRate(m: LossModel): number {
  if (m.kind === 'none') return 0;
  if (m.kind === 'random') return m.p;
  const bad = m.p / (m.p + m.r);
  return bad * m.lossBad + (1 - bad) * m.lossGood;
}

/**
 * A queue of about one bandwidth-delay product of the RTT, at least 64 KiB: a typical provisioned
 * bottleneck buffer (the "rule of thumb" of Villamizar and Song 1994).
 */
function bdpQueue(rateBps: number, rttMs: number): number {
  return Math.max(64 * 1024, Math.round(((rateBps / 8) * rttMs) / 1000));
}

function symmetric(rttMs: number, jitterMs: number, loss: LossModel, rateBps: number): PathParams {
  const link: LinkParams = {
    delayMs: rttMs / 2,
    jitterMs,
    loss,
    rateBps,
    queueBytes: bdpQueue(rateBps, rttMs),
    reorder: 0,
    reorderGapMs: 0,
  };
  return { up: link, down: link };
}

/**
 * The named paths. Loss applies to each direction (as measured by one-way probes on the path);
 * a ping's round trip therefore loses about twice the figure.
 *
 * - `path-good`: 40 ms RTT, no loss, 200 Mbit/s — a good route to a nearby region.
 * - `path-cn-us`: 180 ms RTT ± 5 ms, 1 % random loss, 50 Mbit/s — China to the US west coast
 *   off-peak.
 * - `path-cn-peak`: 250 ms RTT ± 10 ms, 5 % bursty loss (Gilbert–Elliott, bursts of 3 packets on
 *   average), 20 Mbit/s — the same route at the evening peak.
 */
export function pathProfile(name: string): PathParams {
  switch (name) {
    case 'path-good':
      return symmetric(40, 1, { kind: 'none' }, 200e6);
    case 'path-cn-us':
      return symmetric(180, 5, { kind: 'random', p: 0.01 }, 50e6);
    case 'path-cn-peak':
      return symmetric(250, 10, burstyLoss(0.05, 3), 20e6);
    default:
      throw new ConfigError(
        'ERR_CONFIG',
        `unknown path profile '${name}' (known: ${PATH_PROFILES.join(', ')})`,
      );
  }
}

const prob = (x: unknown) => typeof x === 'number' && x >= 0 && x <= 1;
const nonNeg = (x: unknown) => typeof x === 'number' && Number.isFinite(x) && x >= 0;

/** Checks path parameters read from a policy file; names the first bad field. */
export function checkPathParams(raw: unknown, where = 'path'): PathParams {
  if (typeof raw !== 'object' || raw === null)
    throw new ConfigError('ERR_CONFIG', `${where}: expected an object with "up" and "down"`);
  for (const dir of ['up', 'down'] as const) {
    const l = (raw as Record<string, unknown>)[dir] as Record<string, unknown> | undefined;
    const at = `${where}.${dir}`;
    if (typeof l !== 'object' || l === null)
      throw new ConfigError('ERR_CONFIG', `${at}: missing (give both "up" and "down")`);
    for (const f of ['delayMs', 'jitterMs', 'rateBps', 'queueBytes', 'reorderGapMs'])
      if (!nonNeg(l[f])) throw new ConfigError('ERR_CONFIG', `${at}.${f}: must be a number ≥ 0`);
    if (!prob(l.reorder)) throw new ConfigError('ERR_CONFIG', `${at}.reorder: must be in 0..1`);
    const loss = l.loss as Record<string, unknown> | undefined;
    const kind = loss?.kind;
    if (kind === 'none') continue;
    if (kind === 'random' && prob(loss!.p)) continue;
    if (
      kind === 'gilbert-elliott' &&
      prob(loss!.p) &&
      prob(loss!.r) &&
      (loss!.r as number) > 0 &&
      prob(loss!.lossBad) &&
      prob(loss!.lossGood)
    )
      continue;
    throw new ConfigError(
      'ERR_CONFIG',
      `${at}.loss: expected {"kind":"none"}, {"kind":"random","p":0..1} or ` +
        `{"kind":"gilbert-elliott","p","r">0,"lossBad","lossGood"} (probabilities in 0..1)`,
    );
  }
  return raw as PathParams;
}

export type LinkVerdict =
  { readonly drop: 'loss' | 'queue' } | { readonly drop?: undefined; readonly at: number };

export interface LinkStats {
  packets: number;
  lost: number;
  queueDrops: number;
  reordered: number;
  sent: number;
}

/**
 * The Gilbert–Elliott chain's time step on a link with a bandwidth cap: one full-size Ethernet
 * packet's serialisation time.
 */
export const GE_SLOT_BYTES = 1500;

/**
 * The chance that a two-state chain (good → bad `p`, bad → good `r`) is in its bad state `steps`
 * steps after being in `bad`: `π + (x₀ − π)·(1 − p − r)^steps` with `π = p/(p+r)`.
 */
export function badAfter(bad: boolean, p: number, r: number, steps: number): number {
  const pi = p / (p + r);
  return pi + ((bad ? 1 : 0) - pi) * Math.pow(1 - p - r, steps);
}

/** One direction's state: the loss chain, the link's busy time and the last departure. */
export class PathLink {
  readonly params: LinkParams;
  readonly #random: () => number;
  #bad = false;
  /** When the loss chain last stepped (the last packet offered), or null before the first. */
  #chainAt: number | null = null;
  #linkFreeAt = 0;
  #lastDeparture = 0;
  readonly stats: LinkStats = { packets: 0, lost: 0, queueDrops: 0, reordered: 0, sent: 0 };

  constructor(params: LinkParams, random: () => number) {
    this.params = params;
    this.#random = random;
  }

  /** Bytes waiting for the link at `now`. */
  backlog(now: number): number {
    const { rateBps } = this.params;
    if (rateBps === 0) return 0;
    return Math.max(0, ((this.#linkFreeAt - now) * rateBps) / 8000);
  }

  /** Whether the loss model is in its bad state (Gilbert–Elliott only). */
  get inBadState(): boolean {
    return this.#bad;
  }

  /** Decides the fate of a packet of `size` bytes offered at `now` (ms). */
  offer(now: number, size: number): LinkVerdict {
    const p = this.params;
    this.stats.packets++;
    if (this.#lost(now)) {
      this.stats.lost++;
      return { drop: 'loss' };
    }
    let leaveLink = now;
    if (p.rateBps > 0) {
      if (this.backlog(now) + size > p.queueBytes) {
        this.stats.queueDrops++;
        return { drop: 'queue' };
      }
      const start = Math.max(now, this.#linkFreeAt);
      this.#linkFreeAt = start + (size * 8000) / p.rateBps;
      leaveLink = this.#linkFreeAt;
    }
    const jitter = p.jitterMs > 0 ? (this.#random() * 2 - 1) * p.jitterMs : 0;
    let at = leaveLink + Math.max(0, p.delayMs + jitter);
    if (p.reorder > 0 && this.#random() < p.reorder) {
      this.stats.reordered++;
      at = Math.max(now, Math.max(at, this.#lastDeparture) - p.reorderGapMs);
    } else {
      at = Math.max(at, this.#lastDeparture);
      this.#lastDeparture = at;
    }
    this.stats.sent++;
    return { at };
  }

  #lost(now: number): boolean {
    const m = this.params.loss;
    if (m.kind === 'none') return false;
    if (m.kind === 'random') return m.p > 0 && this.#random() < m.p;
    // The slots the link sat idle since the last packet (that packet's own slot not counted).
    const rate = this.params.rateBps;
    const since = this.#chainAt === null ? 0 : now - this.#chainAt;
    const idle = rate > 0 ? Math.floor((since * rate) / (GE_SLOT_BYTES * 8000)) - 1 : 0;
    this.#chainAt = now;
    if (idle > 0) this.#bad = this.#random() < badAfter(this.#bad, m.p, m.r, idle);
    // state transition first, then loss in the new state (netem's gemodel order)
    this.#bad = this.#bad ? this.#random() >= m.r : this.#random() < m.p;
    const pl = this.#bad ? m.lossBad : m.lossGood;
    return pl > 0 && this.#random() < pl;
  }
}
