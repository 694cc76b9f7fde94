/**
 * Names the 2024–2026 techniques (docs/lab.md "2024–2026 modules") in a transport check's evidence,
 * and says which of the key's transports to use instead. Pure: it reads what `checkTransports`
 * recorded, so it is tested on recorded observations.
 *
 * - `byte-budget` (Russia, n4p#490): a download through a working transport goes silent after
 *   8–40 KiB and never resumes, with no reset and no end.
 * - `whitelist` (Russia's mobile networks, n4p#516): every transport fails silently (connects time
 *   out, handshakes and first data go unanswered) while a site on the allowlist answers.
 * - `serverhello-drop` (Iran on MCI and TCI, n4p#489): TCP connects and the ClientHello leaves,
 *   but the TLS handshake is never answered on every attempt, while a non-TLS transport to the same
 *   address gets through. A client cannot see which packet was dropped, so the finding names both
 *   a dropped ServerHello and a dropped ClientHello.
 * - `conn-count` (Russia's home ISPs, n4p#546): one connection at a time gets through; of several
 *   held open together, some number get through and the rest are cut.
 * - `port-reset` (China, 2025-08-20): the SYN to the server's port is answered by a reset on every
 *   attempt while the same address takes connections on another port (a connect there, or another
 *   of the key's transports getting through).
 * - `volume-ban` (Turkmenistan, n4p#523): transports to an address get through and carry a
 *   download, which stalls; then every new connection to the address fails silently (each of the
 *   key's transports there, and a port none of them uses), while a control still answers: a site
 *   fetched directly (`--allowlist-control`) or a transport on another address. A byte budget
 *   freezes only the flow (new connections work), an IP block shows no transfer before it.
 * @module
 */
import { downloadStalled, type AttemptKind, type TransportCheck } from './transport-check.js';

export type CensorTechnique =
  'byte-budget' | 'whitelist' | 'serverhello-drop' | 'conn-count' | 'port-reset' | 'volume-ban';

export interface Finding {
  readonly technique: CensorTechnique;
  /** The transports whose evidence shows it. */
  readonly transports: readonly string[];
  /** What was observed, in numbers. */
  readonly evidence: string;
  /** The key's transports to use instead (checked to work here), or empty. */
  readonly useInstead: readonly string[];
  /** What to do when no transport of the key answers it. */
  readonly advice: string;
}

/** Several connections of one transport opened at once (the conn-count check). */
export interface ConcurrencyObservation {
  readonly transport: string;
  /** Attempt kinds in the order the connections were opened. */
  readonly kinds: readonly AttemptKind[];
}

/**
 * A site fetched directly (not through a tunnel) after the transports were checked: one that only
 * an allowlist would let through (e.g. a domestic or allow-listed site); it also shows that the
 * network still works when a server's address has gone dark.
 */
export interface AllowlistControl {
  readonly name: string;
  readonly ok: boolean;
}

export interface RecogniseOptions {
  readonly concurrency?: readonly ConcurrencyObservation[];
  readonly allowlistControl?: AllowlistControl;
}

/** Bytes between which a silent stop is read as a byte budget (the reported 14–32 KB, widened). */
export const BUDGET_MIN_BYTES = 8 * 1024;
export const BUDGET_MAX_BYTES = 40 * 1024;
/** A download that got no byte for this long before the probe's time ran out has stalled. */
export const STALL_SILENCE_MS = 2000;

const SILENT: readonly AttemptKind[] = ['tcp-timeout', 'tls-timeout', 'data-timeout'];

/** The findings for one run (pure). */
export function recognise(checks: readonly TransportCheck[], o: RecogniseOptions = {}): Finding[] {
  const working = checks.filter((c) => c.verdict.status === 'ok').map((c) => c.transport.name);
  const found = [
    byteBudget(checks),
    portReset(checks),
    serverHelloDrop(checks),
    ...connCount(checks, o),
    whitelist(checks, o),
    ...volumeBan(checks, o),
  ].filter((f): f is Finding => f !== undefined);
  // Every finding names only transports that worked, so advice never points to a blocked one.
  return found.map((f) => ({ ...f, useInstead: f.useInstead.filter((n) => working.includes(n)) }));
}

/** A working transport whose download went silent at a few tens of KB: a byte budget. */
function byteBudget(checks: readonly TransportCheck[]): Finding | undefined {
  const stalled = checks.filter((c) => {
    const th = c.throughput;
    return (
      th !== undefined &&
      (th.end === 'stall' || th.end === 'timer') &&
      th.bytes >= BUDGET_MIN_BYTES &&
      th.bytes <= BUDGET_MAX_BYTES &&
      th.silentMs !== undefined &&
      th.silentMs >= STALL_SILENCE_MS &&
      // a fresh connection failing too is the address, not the flow (see volumeBan)
      (c.recheck === undefined || c.recheck.attempt.kind === 'ok')
    );
  });
  if (stalled.length === 0) return undefined;
  const names = stalled.map((c) => c.transport.name);
  return {
    technique: 'byte-budget',
    transports: names,
    evidence: stalled
      .map(
        (c) =>
          `${c.transport.name}: the download stopped after ${c.throughput!.bytes} bytes and stayed silent for ${Math.round(c.throughput!.silentMs! / 1000)} s, no reset`,
      )
      .join('; '),
    useInstead: checks
      .filter((c) => c.throughput && !stalled.includes(c) && c.throughput.bytes > BUDGET_MAX_BYTES)
      .map((c) => c.transport.name),
    advice:
      'connections to this server freeze after a byte budget (a "16 KB" stall of foreign hosting): a trojan:// key with carrier=8k carries each stream over short connections that end before the budget (docs/lab.md); or use a server outside the big hosting networks, or an SNI the censor spares; short requests still work',
  };
}

/**
 * RST to every SYN while the address still takes connections on another port: the port is reset.
 * Either evidence shows the address answers: a connect to another port, or another of the key's
 * transports on another port of the same address getting through. A refusal on the other port does
 * not (the whole address may be refusing).
 */
function portReset(checks: readonly TransportCheck[]): Finding | undefined {
  const answered = (c: TransportCheck): string | undefined => {
    if (c.otherPort?.answered === true && c.otherPort.failure === null)
      return `port ${c.otherPort.port} of ${c.address} accepted a connection`;
    const beside = checks.find(
      (x) =>
        x.address === c.address &&
        x.transport.server.port !== c.transport.server.port &&
        x.verdict.status === 'ok',
    );
    return beside
      ? `${beside.transport.name} on port ${beside.transport.server.port} of the same address gets through`
      : undefined;
  };
  const reset = checks.filter(
    (c) =>
      c.attempts.length > 0 &&
      c.attempts.every((a) => a.kind === 'tcp-reset' || a.kind === 'tcp-refused') &&
      answered(c) !== undefined,
  );
  if (reset.length === 0) return undefined;
  const ports = new Set(reset.map((c) => c.transport.server.port));
  return {
    technique: 'port-reset',
    transports: reset.map((c) => c.transport.name),
    evidence: reset
      .map(
        (c) =>
          `${c.transport.name}: every SYN to port ${c.transport.server.port} was answered by a reset (${c.attempts.length}/${c.attempts.length}), while ${answered(c)!}`,
      )
      .join('; '),
    useInstead: checks
      .filter((c) => c.verdict.status === 'ok' && !ports.has(c.transport.server.port))
      .map((c) => c.transport.name),
    advice: `port ${[...ports].join(', ')} is reset unconditionally (as port 443 was on 2025-08-20): use a transport on another port`,
  };
}

/** TLS handshakes unanswered while a non-TLS transport to the address works: ServerHello dropped. */
function serverHelloDrop(checks: readonly TransportCheck[]): Finding | undefined {
  const isTls = (c: TransportCheck) => c.transport.tlsServerName !== undefined;
  const hsDrop = checks.filter(
    (c) =>
      isTls(c) &&
      c.attempts.length > 0 &&
      c.attempts.every((a) => a.kind === 'tls-timeout') &&
      checks.some((x) => !isTls(x) && x.address === c.address && x.verdict.status === 'ok'),
  );
  if (hsDrop.length === 0) return undefined;
  const plain = checks.filter((x) => !isTls(x) && x.verdict.status === 'ok');
  return {
    technique: 'serverhello-drop',
    transports: hsDrop.map((c) => c.transport.name),
    evidence: hsDrop
      .map(
        (c) =>
          `${c.transport.name}: TCP to ${c.address} connects, the TLS handshake (SNI ${c.transport.tlsServerName}) times out ${c.attempts.length}/${c.attempts.length} times, while ${plain.map((x) => x.transport.name).join(', ')} to the same address gets through`,
      )
      .join('; '),
    useInstead: plain.map((c) => c.transport.name),
    advice:
      "TLS to this server is cut at the handshake: the server's ServerHello is dropped (as in Iran on MCI and TCI) or the ClientHello is; use a transport that does not start with TLS",
  };
}

/**
 * One connection at a time works; of several held open together, some get through and the rest are
 * cut: connection-count policing. Which ones are cut depends on the order their handshakes reach
 * the censor, not on the order they were opened, so only the counts are read.
 */
function connCount(checks: readonly TransportCheck[], o: RecogniseOptions): Finding[] {
  const out: Finding[] = [];
  const observed: ConcurrencyObservation[] = [
    ...(o.concurrency ?? []),
    ...checks
      .filter((c) => c.concurrent !== undefined)
      .map((c) => ({ transport: c.transport.name, kinds: c.concurrent!.map((a) => a.kind) })),
  ];
  // Transports that carried every one of their connections at once.
  const allThrough = observed
    .filter((obs) => obs.kinds.length > 1 && obs.kinds.every((k) => k === 'ok'))
    .map((obs) => obs.transport);
  for (const obs of observed) {
    const through = obs.kinds.filter((k) => k === 'ok').length;
    const failed = obs.kinds.filter((k) => k !== 'ok');
    const check = checks.find((c) => c.transport.name === obs.transport);
    if (through === 0 || failed.length === 0 || check?.verdict.status !== 'ok') continue;
    // the probe's own connection cap, or failures a count does not cause
    if (failed.some((k) => NOT_CUT.includes(k))) continue;
    out.push({
      technique: 'conn-count',
      transports: [obs.transport],
      evidence: `${obs.transport}: one connection at a time gets through, but of ${obs.kinds.length} held open together only ${through} did; the other ${failed.length} failed (${[...new Set(failed)].join(', ')})`,
      useInstead: checks
        .filter(
          (c) =>
            c.verdict.status === 'ok' &&
            (c.transport.multiplexed === true || allThrough.includes(c.transport.name)),
        )
        .map((c) => c.transport.name),
      advice: `the censor cuts more than about ${through} connections at once to one server: use a multiplexing transport (trojan with mux=), or keep the client's connections to this server at ${through} or fewer (ladder client --max-connections-per-server ${through})`,
    });
  }
  return out;
}

/** Attempt kinds that say nothing of a connection count. */
const NOT_CUT: readonly AttemptKind[] = ['cap', 'tls-cert', 'bad-answer'];

/** Everything fails silently while an allow-listed site answers: whitelist mode. */
function whitelist(checks: readonly TransportCheck[], o: RecogniseOptions): Finding | undefined {
  const working = checks.some((c) => c.verdict.status === 'ok');
  const silentAll =
    checks.length > 0 &&
    !working &&
    checks.every((c) => c.attempts.length > 0 && c.attempts.every((a) => SILENT.includes(a.kind)));
  if (!silentAll || !o.allowlistControl?.ok) return undefined;
  return {
    technique: 'whitelist',
    transports: checks.map((c) => c.transport.name),
    evidence: `all ${checks.length} transports fail silently (${[...new Set(checks.flatMap((c) => c.attempts.map((a) => a.kind)))].join(', ')}), while ${o.allowlistControl.name} answers`,
    useInstead: [],
    advice:
      'only allow-listed names and addresses pass (whitelist mode): a server reached through an allowed SNI or a CDN on the list is needed; none of this key’s transports is one',
  };
}

/**
 * Transports to an address carried a transfer, then every new connection to it (every transport
 * of the key there, and another port) failed silently, while a control answered: a volume ban.
 */
function volumeBan(checks: readonly TransportCheck[], o: RecogniseOptions): Finding[] {
  const out: Finding[] = [];
  const addresses = [...new Set(checks.map((c) => c.address))].filter(
    (a): a is string => a !== undefined,
  );
  for (const address of addresses) {
    const here = checks.filter((c) => c.address === address);
    const stalled = here.filter((c) => downloadStalled(c.throughput));
    const carried = here.filter((c) => c.attempts.some((a) => a.kind === 'ok'));
    if (stalled.length === 0 || carried.length === 0) continue;
    // every transport there was tried again, and every one failed silently
    if (!here.every((c) => c.recheck && SILENT.includes(c.recheck.attempt.kind))) continue;
    const other = here.find((c) => c.recheck?.otherPort)?.recheck?.otherPort;
    if (other?.answered) continue;
    const elsewhere = checks.filter(
      (c) => c.address !== address && c.recheck?.attempt.kind === 'ok',
    );
    const control = o.allowlistControl?.ok
      ? o.allowlistControl.name
      : elsewhere.length > 0
        ? `${elsewhere[0]!.transport.name} (another server address)`
        : undefined;
    if (control === undefined) continue;
    const received = here.reduce(
      (n, c) =>
        n +
        (c.throughput?.bytes ?? 0) +
        c.attempts.reduce((m, a) => m + (a.kind === 'ok' ? (a.data?.bytes ?? 0) : 0), 0),
      0,
    );
    const download = stalled.find((c) => c.throughput!.bytes > 0) ?? stalled[0]!;
    const failedAfter = [
      ...here.map(
        (c) =>
          `${c.transport.name} to port ${c.transport.server.port} (${c.recheck!.attempt.kind})`,
      ),
      ...(other ? [`port ${other.port} (${other.failure ?? 'no answer'})`] : []),
    ];
    out.push({
      technique: 'volume-ban',
      transports: here.map((c) => c.transport.name),
      evidence:
        `${address}: ${carried.map((c) => c.transport.name).join(', ')} got through and received ${received} bytes ` +
        `(the download through ${download.transport.name} stopped after ${download.throughput!.bytes} bytes); ` +
        `then every new connection to the address failed: ${failedAfter.join(', ')}; while ${control} answers`,
      useInstead: checks
        .filter((c) => c.address !== address && (c.recheck?.attempt.kind ?? 'ok') === 'ok')
        .map((c) => c.transport.name),
      advice:
        'this server address was banned after carrying some volume of traffic, whatever the protocol (as Turkmenistan does): use a server on another address; with a ladder:// key of several addresses, `ladder client --rotate-after <size>` spreads the volume before any address reaches a ban (docs/lab.md)',
    });
  }
  return out;
}

/** The findings as text for the probe's report. */
export function formatFindings(findings: readonly Finding[]): string {
  if (findings.length === 0) return '';
  const lines = ['censorship techniques recognised:'];
  for (const f of findings) {
    lines.push(`  [${f.technique}] ${f.evidence}`);
    lines.push(
      f.useInstead.length > 0 ? `    use instead: ${f.useInstead.join(', ')}` : `    ${f.advice}`,
    );
  }
  return lines.join('\n');
}
