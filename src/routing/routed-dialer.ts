/**
 * Split routing: a StreamDialer and PacketDialer that send each connection direct, through the
 * tunnel (or one named transport of a ladder:// key), or refuse it, as the first matching rule says.
 * The fronts (SOCKS5, HTTP, and TUN) call it as they call any dialer, with the target's name when
 * they have one.
 *
 * DNS policy (docs/routing.md):
 * - a name routed through the tunnel is never resolved here: the name travels to the server;
 * - a name routed direct is resolved by the domestic resolver (`resolveDirect`);
 * - when a rule needs an address to decide (IP-CIDR without no-resolve, GEOIP), the name is resolved
 *   through the tunnel (`resolveRemote`), which the local censor cannot forge. If the decision is
 *   direct, the domestic answer is used only when it is trustworthy: when the rules route that
 *   answer direct too (a forged answer for a foreign name points abroad, so it fails the test), else
 *   the tunnel's answer is used. If the tunnel's resolver fails, the domestic answer decides, and a
 *   connection it routes through the tunnel still carries the name, never that answer.
 * Both resolvers sit behind bounded TTL caches (dns-cache.ts).
 *
 * Nothing is logged unless `log` is given (--log-connections); then each connection's rule and
 * route are printed, with the destination, for the user debugging their rules.
 * @module
 */
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import { DialError, LadderError } from '../errors.js';
import type { PacketDialer, PacketSession, StreamDialer, Target } from '../transport/types.js';
import { NEEDS_ADDRESS, type RouteAction, type Rule, type RuleTable } from './rules.js';
import { DnsCache, type NameLookup } from './dns-cache.js';

/** One way out: the direct dialers, the key's failover, or one transport of the key. */
export interface Route {
  readonly stream: StreamDialer;
  readonly packet?: PacketDialer;
}

export interface RoutedDialerOptions {
  readonly table: RuleTable;
  readonly direct: Route;
  /** The key's dialers (ladder:// failover): PROXY, and what no rule matches. */
  readonly proxy: Route;
  /** The transports of a ladder:// key by name, for rules whose action names one. */
  readonly transports?: ReadonlyMap<string, Route>;
  /** The domestic resolver (--dns-direct, or the system's). */
  readonly resolveDirect: NameLookup;
  /** A resolver reached through the tunnel (--dns-remote). */
  readonly resolveRemote: NameLookup;
  /** Milliseconds, monotonic (for the DNS caches; default performance.now). */
  readonly now?: () => number;
  /** --log-connections: one line per connection (or UDP destination). Off by default. */
  readonly log?: (line: string) => void;
  /** Each TCP connection's decision, for a local view of open connections (never logged). */
  readonly onDecision?: (target: Target, decision: RouteDecision) => void;
  /** Names kept by each DNS cache (default 4096). */
  readonly cacheEntries?: number;
}

/** A decision: the rule (if any), the action, and where to connect. */
export interface RouteDecision {
  readonly rule: Rule | undefined;
  readonly action: RouteAction;
  /** For direct: an address; for the tunnel: the target as given (the name travels). */
  readonly connectTo: Target;
}

const UNMATCHED: RouteAction = { kind: 'proxy' };
/** Datagrams of one UDP association waiting for a routing decision; more are dropped. */
const MAX_PENDING_DATAGRAMS = 64;
/** UDP destinations whose first datagram was logged, per association (then no more logging). */
const MAX_LOGGED_DESTINATIONS = 256;

function formatTarget(t: Target): string {
  return isIP(t.host) === 6 ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
}

function describe(a: RouteAction): string {
  if (a.kind === 'direct') return 'DIRECT';
  if (a.kind === 'reject') return 'REJECT';
  return a.transport ? `PROXY (transport ${a.transport})` : 'PROXY';
}

export class RoutedDialer implements StreamDialer, PacketDialer {
  readonly #o: RoutedDialerOptions;
  readonly #directCache: DnsCache;
  readonly #remoteCache: DnsCache;

  constructor(options: RoutedDialerOptions) {
    this.#o = options;
    const now = options.now ?? (() => performance.now());
    const maxEntries = options.cacheEntries ?? 4096;
    this.#directCache = new DnsCache({ now, maxEntries });
    this.#remoteCache = new DnsCache({ now, maxEntries });
    for (const r of options.table.rules)
      if (
        r.action.kind === 'proxy' &&
        r.action.transport &&
        !options.transports?.has(r.action.transport)
      )
        throw new LadderError(
          'ERR_RULES',
          `${r.where}: the transport '${r.action.transport}' is not in the key`,
        );
  }

  #actionOf(index: number): { rule: Rule | undefined; action: RouteAction } {
    const rule = index >= 0 ? this.#o.table.rules[index] : undefined;
    return { rule, action: rule?.action ?? UNMATCHED };
  }

  async #direct(name: string): Promise<readonly string[]> {
    const a = await this.#directCache.resolve(name, this.#o.resolveDirect);
    if (a.length === 0)
      throw new DialError('ERR_DIAL_DNS', 'the domestic resolver has no address for the name');
    return a;
  }

  /** Decides a route for `target` (resolving its name only as the DNS policy allows). */
  async decide(target: Target, network: 'tcp' | 'udp'): Promise<RouteDecision> {
    const table = this.#o.table;
    const q = { host: target.host, port: target.port, network };
    let index = table.match(q);
    let remote: readonly string[] | undefined;
    if (index === NEEDS_ADDRESS) {
      try {
        remote = await this.#remoteCache.resolve(target.host, this.#o.resolveRemote);
      } catch {
        remote = undefined;
      }
      let decideBy = remote?.[0];
      if (decideBy === undefined) {
        // The tunnel's resolver failed: the domestic answer decides. A proxied connection still
        // carries the name; a direct one uses this answer, which the rules routed direct.
        decideBy = (await this.#direct(target.host).catch(() => undefined))?.[0];
      }
      // No answer at all: address rules are passed over.
      index = table.match({ ...q, ip: decideBy ?? null });
    }
    const { rule, action } = this.#actionOf(index);
    if (action.kind !== 'direct' || isIP(target.host) !== 0)
      return { rule, action, connectTo: target };
    const local = await this.#direct(target.host);
    let address = local[0]!;
    if (remote !== undefined && remote.length > 0) {
      // Decided on the tunnel's answer: trust the domestic one only if the rules route it direct too.
      const check = this.#actionOf(table.match({ ...q, ip: address }));
      if (check.action.kind !== 'direct') address = remote[0]!;
    }
    return { rule, action, connectTo: { host: address, port: target.port } };
  }

  #routeFor(action: RouteAction): Route {
    if (action.kind === 'direct') return this.#o.direct;
    if (action.kind === 'proxy' && action.transport)
      return this.#o.transports?.get(action.transport) ?? this.#o.proxy;
    return this.#o.proxy;
  }

  #log(network: string, target: Target, d: RouteDecision): void {
    if (!this.#o.log) return;
    const via =
      d.action.kind === 'direct' && d.connectTo.host !== target.host
        ? ` via ${d.connectTo.host}`
        : '';
    this.#o.log(
      `${network} ${formatTarget(target)} → ${describe(d.action)}${via} (${d.rule ? `${d.rule.where} ${d.rule.text}` : 'no rule matched: PROXY'})`,
    );
  }

  async dial(target: Target, signal?: AbortSignal): Promise<Duplex> {
    const d = await this.decide(target, 'tcp');
    this.#log('tcp', target, d);
    this.#o.onDecision?.(target, d);
    if (d.action.kind === 'reject')
      throw new DialError('ERR_RULE_REJECT', `refused by the rule at ${d.rule?.where ?? '?'}`);
    if (signal?.aborted) throw new DialError('ERR_ABORTED', 'target: aborted');
    return this.#routeFor(d.action).stream.dial(d.connectTo, signal);
  }

  open(onPacket: (payload: Buffer, from: Target) => void): PacketSession {
    const sessions = new Map<Route, PacketSession>();
    const logged = new Set<string>();
    let pending = 0;
    let closed = false;
    const sessionFor = (r: Route): PacketSession | undefined => {
      let s = sessions.get(r);
      if (!s && r.packet) {
        s = r.packet.open((payload, from) => {
          if (!closed) onPacket(payload, from);
        });
        sessions.set(r, s);
      }
      return s;
    };
    const forward = (payload: Uint8Array, target: Target, d: RouteDecision): void => {
      if (closed) return;
      const key = formatTarget(target);
      if (this.#o.log && logged.size < MAX_LOGGED_DESTINATIONS && !logged.has(key)) {
        logged.add(key);
        this.#log('udp', target, d);
      }
      if (d.action.kind === 'reject') return;
      sessionFor(this.#routeFor(d.action))?.send(payload, d.connectTo);
    };
    return {
      send: (payload, target) => {
        if (closed || pending >= MAX_PENDING_DATAGRAMS) return;
        pending++;
        this.decide(target, 'udp').then(
          (d) => {
            pending--;
            forward(payload, target, d);
          },
          () => {
            pending--; // unresolvable for a direct route: dropped, as the network would
          },
        );
      },
      close: () => {
        if (closed) return;
        closed = true;
        for (const s of sessions.values()) s.close();
        sessions.clear();
      },
    };
  }
}
