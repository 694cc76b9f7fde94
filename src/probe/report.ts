/**
 * What the probe prints: a table and a summary for people, one OONI-style JSON line per measurement
 * for programs, and a progress bar when a person is watching a terminal.
 * @module
 */
import { endpoint, measurement, queryEntry, secondsSince } from './ooni.js';
import type { Attempt, TransportCheck } from './transport-check.js';
import { describeAttempt } from './transport-check.js';
import type { WebResult } from './web-connectivity.js';

export const TRANSPORT_TEST_NAME = 'ladder_transport_check';
export const TRANSPORT_TEST_VERSION = '0.1.0';

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}

function clip(s: string, n: number): string {
  return s.length <= n ? s : `${s.slice(0, n - 1)}…`;
}

/** The web connectivity table: one row per URL. */
export function formatWebTable(
  results: readonly WebResult[],
  skipped: readonly { url: string; reason: string }[],
): string {
  const urlW = Math.min(
    48,
    Math.max(3, ...results.map((r) => r.input.length), ...skipped.map((s) => s.url.length)),
  );
  const lines = [`${pad('URL', urlW)}  ${pad('blocking', 12)}  ${pad('accessible', 10)}  detail`];
  for (const r of results) {
    const b = r.verdict.blocking;
    const a = r.verdict.accessible;
    lines.push(
      `${pad(clip(r.input, urlW), urlW)}  ${pad(b === false ? 'no' : b === null ? '?' : b, 12)}  ${pad(
        a === true ? 'yes' : a === false ? 'no' : '?',
        10,
      )}  ${r.detail}`,
    );
  }
  for (const s of skipped)
    lines.push(
      `${pad(clip(s.url, urlW), urlW)}  ${pad('-', 12)}  ${pad('-', 10)}  not measured: ${s.reason}`,
    );
  return lines.join('\n');
}

/** One line: how many URLs are accessible, blocked (by technique), unknown. */
export function formatWebSummary(results: readonly WebResult[], skipped: number): string {
  const by = new Map<string, number>();
  let accessible = 0;
  let down = 0;
  let unknown = 0;
  for (const r of results) {
    const b = r.verdict.blocking;
    if (b === null) unknown++;
    else if (b === false) {
      if (r.verdict.accessible) accessible++;
      else down++;
    } else by.set(b, (by.get(b) ?? 0) + 1);
  }
  const blocked = [...by.values()].reduce((a, b) => a + b, 0);
  const parts = [
    `${results.length} URL${results.length === 1 ? '' : 's'} measured`,
    `${accessible} accessible`,
  ];
  parts.push(
    `${blocked} blocked${blocked ? ` (${[...by].map(([k, v]) => `${k} ${v}`).join(', ')})` : ''}`,
  );
  if (down) parts.push(`${down} down for the control too`);
  if (unknown) parts.push(`${unknown} unknown (no control)`);
  if (skipped) parts.push(`${skipped} not measured`);
  return parts.join(', ');
}

/** The transport table, with each attempt's evidence under its row. */
export function formatTransportTable(checks: readonly TransportCheck[]): string {
  const lines: string[] = [];
  for (const c of checks) {
    const v = c.verdict;
    const status =
      v.status === 'ok' ? 'GETS THROUGH' : v.status === 'partial' ? 'PARTLY' : 'BLOCKED';
    lines.push(
      `${c.transport.name}${c.transport.tag ? ` "${c.transport.tag}"` : ''} → ${c.transport.server.host}:${c.transport.server.port}: ${status} (${v.okAttempts}/${c.attempts.length})`,
    );
    lines.push(`  ${v.technique === 'none' ? '' : `[${v.technique}] `}${v.explanation}`);
    if (c.dns) {
      const d = c.dns;
      lines.push(
        `  DNS ${c.transport.server.host}: ${d.addresses.join(' ') || d.failure}` +
          (d.injected.length ? `, raced by ${d.injected.join(' ')}` : '') +
          (d.control
            ? `; through ${d.control.via}: ${d.control.addresses.join(' ') || d.control.failure}`
            : ''),
      );
    }
    for (const a of c.attempts)
      lines.push(`  attempt ${a.n} → ${endpoint(a.address, a.port)}: ${describeAttempt(a)}`);
    if (c.otherPort)
      lines.push(
        `  port ${c.otherPort.port} of the same address: ${c.otherPort.failure ?? 'connects'}${c.otherPort.answered ? ' (the address answers)' : ''}`,
      );
    if (c.realAddressAttempt)
      lines.push(`  with the control's address: ${describeAttempt(c.realAddressAttempt)}`);
    if (c.throughput) {
      const t = c.throughput;
      lines.push(
        `  throughput: ${(t.bytesPerSecond / 1e6).toFixed(2)} MB/s over ${(t.bytes / 1e6).toFixed(1)} MB` +
          (t.ratio !== null ? `, late/early rate ${t.ratio.toFixed(2)}` : '') +
          (t.end === 'stall' ? `, then silent for ${Math.round((t.silentMs ?? 0) / 1000)} s` : '') +
          (t.failure ? ` (${t.failure})` : ''),
      );
    }
    const r = c.recheck;
    if (r) {
      lines.push(`  again after a stalled download: ${describeAttempt(r.attempt)}`);
      if (r.otherPort)
        lines.push(
          `  port ${r.otherPort.port} of the same address, then: ${r.otherPort.failure ?? 'connects'}${r.otherPort.answered ? ' (the address answers)' : ''}`,
        );
    }
  }
  return lines.join('\n');
}

/** One server of a key (a fleet's ladder:// key lists several): how its transports fared. */
export interface ServerSummary {
  readonly server: string;
  readonly transports: number;
  readonly through: number;
  /** Median TCP connect time over the successful connects, or null if none connected. */
  readonly connectMs: number | null;
}

/** Per server: transports that get through, and the median connect time; fastest first. */
export function summarizeServers(checks: readonly TransportCheck[]): ServerSummary[] {
  const by = new Map<string, { transports: number; through: number; times: number[] }>();
  for (const c of checks) {
    const name = endpoint(c.transport.server.host, c.transport.server.port);
    let e = by.get(name);
    if (!e) by.set(name, (e = { transports: 0, through: 0, times: [] }));
    e.transports++;
    if (c.verdict.status === 'ok') e.through++;
    for (const a of c.attempts) if (a.tcp.failure === null) e.times.push(a.tcp.t - a.tcp.t0);
  }
  const out = [...by].map(([server, e]) => {
    const t = e.times.sort((a, b) => a - b);
    return {
      server,
      transports: e.transports,
      through: e.through,
      connectMs: t.length ? t[(t.length - 1) >> 1]! : null,
    };
  });
  // Servers that get through first, fastest first; the rest after, in key order.
  return out.sort(
    (a, b) =>
      Number(b.through > 0) - Number(a.through > 0) ||
      (a.connectMs ?? Infinity) - (b.connectMs ?? Infinity) ||
      0,
  );
}

export function formatServerTable(checks: readonly TransportCheck[]): string {
  return summarizeServers(checks)
    .map(
      (s, i) =>
        `${s.server}: ${s.through > 0 ? 'GETS THROUGH' : 'BLOCKED'} (${s.through}/${s.transports} transports)` +
        (s.connectMs !== null ? `, connects in ${s.connectMs.toFixed(0)} ms` : '') +
        (i === 0 && s.through > 0 ? ' ← the client will prefer this one' : ''),
    )
    .join('\n');
}

function attemptJson(a: Attempt, t0: number): object {
  const step = (s: { t0: number; t: number; failure: string | null }) => ({
    failure: s.failure,
    success: s.failure === null,
    t0: secondsSince(t0, s.t0),
    t: secondsSince(t0, s.t),
  });
  return {
    attempt: a.n,
    address: endpoint(a.address, a.port),
    kind: a.kind,
    tcp_connect: step(a.tcp),
    ...(a.tls ? { tls_handshake: step(a.tls) } : {}),
    ...(a.data
      ? { first_data: { ...step(a.data), outcome: a.data.outcome, bytes_received: a.data.bytes } }
      : {}),
    ...(a.statusLine !== undefined ? { status_line: a.statusLine } : {}),
  };
}

/** One transport check as an OONI-style measurement (test_name ladder_transport_check). */
export function transportMeasurement(
  c: TransportCheck,
  o: {
    testStartTime: Date;
    measurementStartTime: Date;
    t0: number;
    runtimeS: number;
    resolver: string;
  },
): Record<string, unknown> {
  const tags = ['depth=0'];
  let tx = 0;
  const queries = (c.dns?.lookups ?? []).map((q) => queryEntry(q, o.t0, tags, ++tx));
  return measurement({
    testName: TRANSPORT_TEST_NAME,
    testVersion: TRANSPORT_TEST_VERSION,
    input: `${c.transport.kind}://${endpoint(c.transport.server.host, c.transport.server.port)}`,
    testStartTime: o.testStartTime,
    measurementStartTime: o.measurementStartTime,
    runtimeS: o.runtimeS,
    resolverIp: o.resolver.replace(/:\d+$/, '').replace(/^\[|\]$/g, ''),
    testHelper: null,
    annotations: {},
    testKeys: {
      transport: c.transport.name,
      kind: c.transport.kind,
      server: endpoint(c.transport.server.host, c.transport.server.port),
      ...(c.transport.tlsServerName ? { server_name: c.transport.tlsServerName } : {}),
      address: c.address ?? null,
      queries,
      dns_injected: c.dns?.injected ?? [],
      control_dns: c.dns?.control
        ? {
            via: c.dns.control.via,
            addrs: c.dns.control.addresses,
            failure: c.dns.control.failure,
            query_type: 'A',
          }
        : null,
      attempts: c.attempts.map((a) => attemptJson(a, o.t0)),
      other_port: c.otherPort ?? null,
      real_address_attempt: c.realAddressAttempt ? attemptJson(c.realAddressAttempt, o.t0) : null,
      throughput: c.throughput
        ? {
            bytes: c.throughput.bytes,
            seconds: c.throughput.seconds,
            bytes_per_second: Math.round(c.throughput.bytesPerSecond),
            late_early_ratio: c.throughput.ratio,
            knee_bytes: c.throughput.kneeBytes,
            failure: c.throughput.failure,
            end: c.throughput.end ?? null,
          }
        : null,
      concurrent: c.concurrent ? c.concurrent.map((a) => attemptJson(a, o.t0)) : null,
      recheck: c.recheck
        ? {
            attempt: attemptJson(c.recheck.attempt, o.t0),
            other_port: c.recheck.otherPort ?? null,
          }
        : null,
      status: c.verdict.status,
      technique: c.verdict.technique,
      residual: c.verdict.residual,
      ok_attempts: c.verdict.okAttempts,
      explanation: c.verdict.explanation,
    },
  });
}

/** A one-line progress bar on a terminal stream, redrawn in place; nothing when not a TTY. */
export class ProgressBar {
  readonly #out: NodeJS.WriteStream | undefined;
  readonly #total: number;
  readonly #label: string;
  #done = 0;

  constructor(out: NodeJS.WriteStream | undefined, total: number, label: string) {
    this.#out = out;
    this.#total = total;
    this.#label = label;
    this.#draw();
  }

  tick(): void {
    this.#done++;
    this.#draw();
  }

  end(): void {
    if (this.#out) this.#out.write('\r\x1b[2K');
  }

  #draw(): void {
    if (!this.#out) return;
    const width = 30;
    const filled = this.#total ? Math.round((width * this.#done) / this.#total) : width;
    this.#out.write(
      `\r\x1b[2K[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${this.#done}/${this.#total} ${this.#label}`,
    );
  }
}
