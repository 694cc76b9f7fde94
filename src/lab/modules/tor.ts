/**
 * Tor's TLS fingerprint and the bridge prober (docs/censorship-techniques.md §12; Ensafi et al.
 * 2015, Winter and Lindskog 2012).
 *
 * Trigger: an outbound ClientHello (first record, TCP reassembled, SYN seen) whose JA3 hash is in
 * `fingerprints` — by default the hash of the ClientHello Debian's tor 0.4.9.11 sends
 * (test/vectors/tor.json: Tor's own cipher list, an empty-ALPN hello with P-224 among its groups).
 *
 * Action: the server's ip:port is probed from a prober address: the prober opens TLS to it and sends
 * a VERSIONS cell (tor-spec §4, link protocols 3–5). A server that answers with a VERSIONS cell
 * speaks Tor: its server→client traffic on that port is null-routed (one successful probe is enough,
 * §2 "A single probe is enough to block Tor"). It is probed again every 12 h (× the lab time factor)
 * and unblocked once it no longer answers like Tor. A server that does not is left alone.
 *
 * The probe delay is not published for Tor ([U]): `probeDelayS` (default 1 s) × time factor.
 * @module
 */
import type { CensorContext, CensorModule, Flow, Packet, Verdict } from '../censor/types.js';
import { parseClientHello } from '../packet/tls-client-hello.js';
import { versionsCell, versionsReply } from '../packet/tor-cell.js';
import { ja3Hash } from './tls-fingerprint.js';
import { tcpProbe, type ProbeOutcome, type ProbeSender } from './prober.js';

/**
 * JA3 hashes of recorded Tor ClientHellos: Debian tor 0.4.9.11 with OpenSSL 3.0.19 (the
 * `ja3Hash` of test/vectors/tor.json; a unit test holds the two equal).
 */
export const TOR_JA3_HASHES: readonly string[] = ['5e6627dc19afa982e6b46b97808cb718'];

export interface TorParams {
  /** JA3 MD5 hashes (hex) that draw a probe. */
  readonly fingerprints: readonly string[];
  readonly proberAddresses: readonly string[];
  /** The prober gives up on a server after this long (lab seconds are shortened as in `probe`). */
  readonly proberTimeoutS: number;
  /** Wait before the first probe, in seconds (× time factor). */
  readonly probeDelayS: number;
  /** A blocked server is probed again after this many hours (× time factor), §12: 12 h. */
  readonly reprobeHours: number;
  /** Upper bound on any wait, in lab seconds (after the time factor); the report card caps it. */
  readonly maxDelayS: number;
}

export const TOR_DEFAULTS: TorParams = {
  fingerprints: TOR_JA3_HASHES,
  proberAddresses: [],
  proberTimeoutS: 10,
  probeDelayS: 1,
  reprobeHours: 12,
  maxDelayS: Infinity,
};

/**
 * Is this the start of a Tor client's TCP stream? True if it holds a ClientHello (first record)
 * whose JA3 hash is in `fingerprints`; false otherwise, including a ClientHello not yet whole.
 */
export function isTorClientHello(
  stream: Uint8Array,
  fingerprints: readonly string[] = TOR_JA3_HASHES,
): boolean {
  const ch = parseClientHello(stream);
  if (!ch) return false;
  const hash = ja3Hash(ch);
  return fingerprints.some((f) => f.toLowerCase() === hash);
}

/** Does a reply to the VERSIONS probe show a Tor server (a VERSIONS cell first)? */
export function speaksTor(reply: Uint8Array): boolean {
  return versionsReply(reply) !== undefined;
}

/** One Tor probe: TLS to the server from `source`, a VERSIONS cell, the server's reaction. */
export function torProbe(
  target: { host: string; port: number },
  timeoutMs: number,
  source: string | undefined,
  servername: string | undefined,
  send: ProbeSender = tcpProbe,
): Promise<ProbeOutcome> {
  return send(target, versionsCell(), timeoutMs, source, 'tls', servername);
}

export class TorModule implements CensorModule {
  readonly name = 'tor';
  readonly #p: TorParams;
  readonly #send: ProbeSender;
  readonly #fingerprints: Set<string>;
  /** Servers ("ip port") with a campaign under way, and those null-routed. */
  readonly #pending = new Set<string>();
  readonly #blocked = new Set<string>();
  readonly #timers = new Set<NodeJS.Timeout>();
  #source = 0;

  constructor(params: Partial<TorParams> = {}, send: ProbeSender = tcpProbe) {
    this.#p = { ...TOR_DEFAULTS, ...params };
    this.#send = send;
    this.#fingerprints = new Set(this.#p.fingerprints.map((h) => h.toLowerCase()));
  }

  /** Servers ("ip port") the prober found speaking Tor and that are blocked now. */
  get blocked(): ReadonlySet<string> {
    return this.#blocked;
  }

  watch(flow: Flow): boolean {
    if (flow.proto !== 'tcp') return false;
    return this.#blocked.has(key(flow)) || (flow.outbound && flow.sawSyn);
  }

  onPacket(p: Packet, flow: Flow, ctx: CensorContext): Verdict {
    const k = key(flow);
    if (this.#blocked.has(k)) {
      if (p.c2s) return undefined;
      // §12: the IP:port is blocked by dropping server→client packets
      if (!flow.scratch.has('tor-drop')) {
        flow.scratch.set('tor-drop', true);
        ctx.emit(
          { module: this.name, action: 'drop', detail: 'Tor server, ip:port null-routed' },
          flow,
        );
      }
      return 'drop';
    }
    // a flow to a server under probe stays watched, so that a confirmation cuts it too
    if (flow.scratch.has('tor-flagged') || !p.c2s || p.payload.length === 0) return undefined;
    const ch = parseClientHello(flow.c2sData);
    if (ch === null && flow.c2sData.length < 16 * 1024) return undefined;
    const hash = ch ? ja3Hash(ch) : undefined;
    if (hash === undefined || !this.#fingerprints.has(hash)) {
      if (!this.#pending.has(k)) flow.watchers.delete(this);
      return undefined;
    }
    flow.scratch.set('tor-flagged', true);
    ctx.emit({ module: this.name, action: 'flag', detail: `JA3 ${hash}` }, flow);
    if (!this.#pending.has(k)) {
      this.#pending.add(k);
      ctx.emit({ module: this.name, action: 'schedule' }, flow);
      void this.#campaign(flow, ch?.sni, ctx);
    }
    return undefined;
  }

  /** Stops pending probes (the censor is shutting down). */
  close(): void {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
  }

  async #campaign(flow: Flow, sni: string | undefined, ctx: CensorContext): Promise<void> {
    const k = key(flow);
    const tf = ctx.timeFactor;
    await this.#sleep(this.#p.probeDelayS * tf);
    let tor = await this.#probe(flow, sni, ctx);
    if (!tor) {
      this.#pending.delete(k);
      ctx.emit({ module: this.name, action: 'clear', detail: 'no VERSIONS cell' }, flow);
      return;
    }
    this.#blocked.add(k);
    ctx.emit({ module: this.name, action: 'confirm', detail: 'answered VERSIONS' }, flow);
    // §12: blocked relays are probed again about every 12 h and unblocked when Tor is gone
    while (tor) {
      if (!(await this.#sleep(this.#p.reprobeHours * 3600 * tf))) return;
      tor = await this.#probe(flow, sni, ctx);
    }
    this.#blocked.delete(k);
    this.#pending.delete(k);
    ctx.emit({ module: this.name, action: 'unblock', detail: 'no longer answers VERSIONS' }, flow);
  }

  async #probe(flow: Flow, sni: string | undefined, ctx: CensorContext): Promise<boolean> {
    const timeoutMs = Math.max(
      500,
      this.#p.proberTimeoutS * 1000 * Math.min(1, ctx.timeFactor * 10),
    );
    const src = this.#p.proberAddresses.length
      ? this.#p.proberAddresses[this.#source++ % this.#p.proberAddresses.length]
      : undefined;
    const out = await torProbe(
      { host: flow.server.addr, port: flow.server.port },
      timeoutMs,
      src,
      sni,
      this.#send,
    );
    const versions = versionsReply(out.reply);
    ctx.emit(
      {
        module: this.name,
        action: 'probe',
        detail: `TLS VERSIONS: ${out.reaction}${versions ? `, VERSIONS ${versions.join(',')}` : ''}`,
      },
      flow,
    );
    return versions !== undefined;
  }

  /** Resolves true after `seconds` (capped by maxDelayS), or false if the module closed first. */
  #sleep(seconds: number): Promise<boolean> {
    return new Promise((resolve) => {
      const t = setTimeout(
        () => {
          this.#timers.delete(t);
          resolve(true);
        },
        Math.min(this.#p.maxDelayS, seconds) * 1000,
      );
      t.unref();
      this.#timers.add(t);
    });
  }
}

function key(flow: Flow): string {
  return `${flow.server.addr} ${flow.server.port}`;
}
