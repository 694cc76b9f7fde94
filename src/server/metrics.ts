/**
 * Prometheus metrics of a Ladder server, in the text exposition format (version 0.0.4): bytes and
 * connections per access key id, open connections, pre-authentication failures by code (as
 * outline-ss-server's `tcp_probes`), a histogram of the time from accept to authentication, the
 * pre-authentication guard's refusals (a cap reached) and expiries (the deadline), and targets the
 * private-address guard refused.
 *
 * Privacy: labels are key ids, transports, directions and error codes, never a destination or a
 * client address (docs/privacy.md).
 * @module
 */
import type { ErrorCode } from '../errors.js';

/** Upper bounds of the handshake histogram, in seconds. */
export const HANDSHAKE_BUCKETS_S = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
] as const;

interface PerKey {
  up: number;
  down: number;
  tcp: number;
  udp: number;
}

export class Metrics {
  readonly #startedMs: number;
  readonly #perKey = new Map<string, PerKey>();
  readonly #active = { tcp: 0, udp: 0 };
  readonly #probes = new Map<string, number>();
  readonly #buckets = new Array<number>(HANDSHAKE_BUCKETS_S.length).fill(0);
  readonly #preAuthRefused = { total: 0, source: 0 };
  #preAuthExpired = 0;
  #preAuthPending: (() => number) | undefined;
  readonly #privateRefused = { tcp: 0, udp: 0 };
  #handshakeCount = 0;
  #handshakeSumS = 0;
  #keyStates: Record<string, number> = {};
  #storeUp: boolean | undefined;

  constructor(startedMs = Date.now()) {
    this.#startedMs = startedMs;
  }

  #key(id: string): PerKey {
    let k = this.#perKey.get(id);
    if (!k) this.#perKey.set(id, (k = { up: 0, down: 0, tcp: 0, udp: 0 }));
    return k;
  }

  opened(keyId: string, transport: 'tcp' | 'udp'): void {
    this.#key(keyId)[transport]++;
    this.#active[transport]++;
  }

  closed(transport: 'tcp' | 'udp'): void {
    this.#active[transport]--;
  }

  bytes(keyId: string, dir: 'up' | 'down', n: number): void {
    this.#key(keyId)[dir] += n;
  }

  /** A connection or datagram rejected before authentication (`ladder_probes_total`). */
  rejected(code: ErrorCode, transport: string): void {
    const k = `${transport}\u0000${code}`;
    this.#probes.set(k, (this.#probes.get(k) ?? 0) + 1);
  }

  /** @deprecated the old name of {@link Metrics.rejected}. */
  probe(code: ErrorCode, transport: string): void {
    this.rejected(code, transport);
  }

  /** A connection without a key was closed at accept: the total cap or its source's was reached. */
  preAuthRefused(cap: 'total' | 'source'): void {
    this.#preAuthRefused[cap]++;
  }

  /** Where the number of connections without a key open now is read (the pre-auth guard). */
  watchPreAuth(pending: () => number): void {
    this.#preAuthPending = pending;
  }

  /** A connection without a key reached the pre-authentication deadline and was closed. */
  preAuthExpired(): void {
    this.#preAuthExpired++;
  }

  /** A key holder's target was in a private or special-purpose range and was refused. */
  privateTargetRefused(transport: 'tcp' | 'udp'): void {
    this.#privateRefused[transport]++;
  }

  handshake(ms: number): void {
    const s = ms / 1000;
    this.#handshakeCount++;
    this.#handshakeSumS += s;
    for (let i = 0; i < HANDSHAKE_BUCKETS_S.length; i++)
      if (s <= HANDSHAKE_BUCKETS_S[i]!) this.#buckets[i]!++;
  }

  /** Keys by state (active, disabled, expired, over-limit), from the key manager. */
  setKeyStates(states: Record<string, number>): void {
    this.#keyStates = states;
  }

  /** Whether the fleet's database answers (`--store`); unset without one. */
  setStoreUp(up: boolean): void {
    this.#storeUp = up;
  }

  /** Totals for the dashboard's health panel. */
  snapshot(): { uptimeS: number; active: number; probes: number; connections: number } {
    let probes = 0;
    for (const n of this.#probes.values()) probes += n;
    let connections = 0;
    for (const k of this.#perKey.values()) connections += k.tcp + k.udp;
    return {
      uptimeS: Math.floor((Date.now() - this.#startedMs) / 1000),
      active: this.#active.tcp + this.#active.udp,
      probes,
      connections,
    };
  }

  render(): string {
    const out: string[] = [];
    const head = (name: string, type: string, help: string): void => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    };
    head('ladder_start_time_seconds', 'gauge', 'When the server started, in seconds since 1970.');
    out.push(`ladder_start_time_seconds ${Math.floor(this.#startedMs / 1000)}`);
    head(
      'ladder_data_bytes_total',
      'counter',
      'Payload bytes relayed per access key id and direction (up: client to target).',
    );
    for (const [id, k] of this.#perKey) {
      out.push(`ladder_data_bytes_total{access_key="${esc(id)}",dir="up"} ${k.up}`);
      out.push(`ladder_data_bytes_total{access_key="${esc(id)}",dir="down"} ${k.down}`);
    }
    head(
      'ladder_connections_total',
      'counter',
      'Authenticated TCP connections and UDP sessions per access key id.',
    );
    for (const [id, k] of this.#perKey) {
      out.push(`ladder_connections_total{access_key="${esc(id)}",transport="tcp"} ${k.tcp}`);
      out.push(`ladder_connections_total{access_key="${esc(id)}",transport="udp"} ${k.udp}`);
    }
    head(
      'ladder_active_connections',
      'gauge',
      'Authenticated connections and UDP sessions open now.',
    );
    out.push(`ladder_active_connections{transport="tcp"} ${this.#active.tcp}`);
    out.push(`ladder_active_connections{transport="udp"} ${this.#active.udp}`);
    head(
      'ladder_probes_total',
      'counter',
      'Connections and datagrams that failed before authentication, by error code (docs/errors.md).',
    );
    for (const [k, n] of this.#probes) {
      const [transport, code] = k.split('\u0000');
      out.push(`ladder_probes_total{transport="${esc(transport!)}",code="${esc(code!)}"} ${n}`);
    }
    head(
      'ladder_handshake_seconds',
      'histogram',
      'Time from accepting a connection to its authentication.',
    );
    HANDSHAKE_BUCKETS_S.forEach((le, i) =>
      out.push(`ladder_handshake_seconds_bucket{le="${le}"} ${this.#buckets[i]}`),
    );
    out.push(`ladder_handshake_seconds_bucket{le="+Inf"} ${this.#handshakeCount}`);
    out.push(`ladder_handshake_seconds_sum ${this.#handshakeSumS}`);
    out.push(`ladder_handshake_seconds_count ${this.#handshakeCount}`);
    if (this.#preAuthPending) {
      head(
        'ladder_unauthenticated_connections',
        'gauge',
        'Connections open now that have not authenticated (nor sent the decoy a whole request).',
      );
      out.push(`ladder_unauthenticated_connections ${this.#preAuthPending()}`);
    }
    head(
      'ladder_unauthenticated_refused_total',
      'counter',
      'Connections without a key closed at accept because a cap was reached (total: --max-unauthenticated; source: --max-unauthenticated-per-source).',
    );
    for (const cap of ['total', 'source'] as const)
      out.push(`ladder_unauthenticated_refused_total{cap="${cap}"} ${this.#preAuthRefused[cap]}`);
    head(
      'ladder_unauthenticated_expired_total',
      'counter',
      'Connections without a key closed at the pre-authentication deadline (--auth-timeout).',
    );
    out.push(`ladder_unauthenticated_expired_total ${this.#preAuthExpired}`);
    head(
      'ladder_private_targets_refused_total',
      'counter',
      'Targets refused because they are private or special-purpose addresses (without --allow-private-targets).',
    );
    for (const t of ['tcp', 'udp'] as const)
      out.push(`ladder_private_targets_refused_total{transport="${t}"} ${this.#privateRefused[t]}`);
    head('ladder_access_keys', 'gauge', 'Access keys by state.');
    for (const [state, n] of Object.entries(this.#keyStates))
      out.push(`ladder_access_keys{state="${esc(state)}"} ${n}`);
    if (this.#storeUp !== undefined) {
      head('ladder_store_up', 'gauge', "1 if the fleet's database (--store) answers, else 0.");
      out.push(`ladder_store_up ${this.#storeUp ? 1 : 0}`);
    }
    return out.join('\n') + '\n';
  }
}

/** Label value escaping per the exposition format: backslash, double quote, newline. */
function esc(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}
