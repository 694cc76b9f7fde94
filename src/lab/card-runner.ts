/**
 * Runs the report card: for every row and every column (no censor, each module alone, each
 * profile) it restarts the censor with that policy, makes N fresh connections from the client
 * namespace, and records the success rate and which modules acted (from the censor's events).
 * @module
 */
import { existsSync, readFileSync } from 'node:fs';
import { eventsPath, startCensor } from './lab.js';
import { forgetLadderServer } from './ladder-server.js';
import { modulePolicy, profilePolicy, PROFILES, type ModuleName, type Policy } from './policy.js';
import type { TransportEntry } from './card-transport.js';
import { stopTransports, transports } from './card-registry.js';
import type { LabPlan } from './topology.js';
import { CHROME_JA4S } from './modules/tls-fingerprint.js';

export interface Column {
  readonly name: string;
  readonly policy: (plan: LabPlan) => Policy;
}

/** Report-card columns: no censor, one module at a time, then the profiles. */
export function columns(): Column[] {
  const mod = (name: ModuleName, label: string = name, overrides: object = {}): Column => ({
    name: label,
    policy: (p) => modulePolicy(name, p, overrides),
  });
  return [
    { name: 'none', policy: () => ({ modules: {} }) },
    mod('dns'),
    mod('ipblock'),
    mod('http'),
    mod('sni'),
    mod('fet', 'fet p=0.263'),
    mod('fet', 'fet p=1', { p: 1 }),
    mod('probe', 'probe', { trigger: 'all' }),
    mod('tor'),
    mod('quic'),
    mod('tls-in-tls'),
    mod('allowlist'),
    // 2024–2026 techniques (reference censorship-2024-2026.md)
    mod('byte-budget'),
    mod('whitelist'),
    mod('conn-count'),
    mod('hello-score'),
    // the same with today's Chrome known by its JA4s (its JA3 changes with every hello)
    mod('hello-score', 'hello-score chrome-known', { knownFingerprints: [...CHROME_JA4S] }),
    // only browser ClientHellos pass (JA4 allow-list, GREASE, the post-quantum share)
    mod('tls-fingerprint', 'browser-only', { browserOnly: true }),
    mod('sni', 'sni reassembled', { reassemble: true }),
    mod('iran'),
    // the ISP's resolver is one of the few addresses that still reach abroad
    {
      name: 'iran allowlist',
      policy: (p) => modulePolicy('iran', p, { clientAllowlist: [`${p.addr.domestic}/32`] }),
    },
    // the published threshold is not known; a lower one shows the ban inside a cell's few pages
    mod('volume-ban', 'volume-ban', { bytes: 200 * 1024 }),
    mod('mux'),
    mod('tls-in-tls-ru'),
    mod('ech'),
    mod('port443-reset'),
    ...PROFILES.map((name) => ({ name, policy: (p: LabPlan) => profilePolicy(name, p) })),
  ];
}

export interface Cell {
  readonly transport: string;
  readonly column: string;
  readonly ok: number;
  readonly n: number;
  /** Modules that acted on this cell's connections, with counts. */
  readonly modules: Record<string, number>;
}

export interface CardOptions {
  readonly n: number;
  readonly timeoutS: number;
  /** Multiplies published durations (residuals, prober delays). */
  readonly timeFactor: number;
  readonly seed: number;
  readonly only?: readonly string[];
  /** Column names to run (default: all). */
  readonly columns?: readonly string[];
  readonly onProgress?: (line: string) => void;
}

/** Runs the matrix. The lab must be up (services running); the censor is restarted per column. */
export async function runReportCard(plan: LabPlan, o: CardOptions): Promise<Cell[]> {
  const rows = transports().filter((t) => (o.only ? o.only.includes(t.name) : !t.optIn));
  const usable: TransportEntry[] = [];
  try {
    return await runCells(plan, o, rows, usable);
  } finally {
    stopTransports();
    forgetLadderServer();
  }
}

async function runCells(
  plan: LabPlan,
  o: CardOptions,
  transports: TransportEntry[],
  usable: TransportEntry[],
): Promise<Cell[]> {
  const cells: Cell[] = [];
  for (const t of transports) {
    const why = t.unverified ?? t.unavailable?.();
    if (why) {
      o.onProgress?.(`${t.name}: skipped — ${why}`);
      continue;
    }
    await t.setup?.(plan);
    usable.push(t);
  }
  for (const col of columns().filter(
    (c) => !o.columns || c.name === 'none' || o.columns.includes(c.name),
  )) {
    const policy = { ...col.policy(plan), timeFactor: o.timeFactor, seed: o.seed };
    // A campaign must finish inside its cell: prober delays are capped (the published long tail of
    // hours would outlast the card), and the card waits for the verdict (below).
    if (policy.modules.probe)
      policy.modules = { ...policy.modules, probe: { ...policy.modules.probe, maxDelayS: 2 } };
    if (policy.modules.tor)
      policy.modules = { ...policy.modules, tor: { ...policy.modules.tor, maxDelayS: 2 } };
    for (const t of usable) {
      await startCensor(plan, policy); // fresh state: no residuals from the previous cell
      let ok = 0;
      const from = eventsSize(plan);
      for (let i = 0; i < o.n; i++) {
        const r = await t.attempt(plan, o.timeoutS);
        if (r.ok) ok++;
        // The prober's verdict on a first flow decides what the next ones meet: wait for it.
        if (i === 0) await awaitProbeVerdicts(plan, from);
        // Independent trials: after a failure, wait out any residual (180 s × timeFactor).
        if (!r.ok) await new Promise((res) => setTimeout(res, 180_000 * o.timeFactor + 100));
      }
      await awaitProbeVerdicts(plan, from);
      const modules = countEvents(plan, from);
      cells.push({ transport: t.name, column: col.name, ok, n: o.n, modules });
      o.onProgress?.(
        `${t.name} × ${col.name}: ${ok}/${o.n}${
          Object.keys(modules).length
            ? ` (${Object.entries(modules)
                .map(([k, v]) => `${k}:${v}`)
                .join(' ')})`
            : ''
        }`,
      );
    }
  }
  return cells;
}

function eventsSize(plan: LabPlan): number {
  const f = eventsPath(plan);
  return existsSync(f) ? readFileSync(f).length : 0;
}

/** Waits (at most 90 s) until every probe campaign scheduled since `from` has a verdict. */
async function awaitProbeVerdicts(plan: LabPlan, from: number): Promise<void> {
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    const text = existsSync(eventsPath(plan))
      ? readFileSync(eventsPath(plan)).subarray(from).toString()
      : '';
    const count = (re: RegExp) => (text.match(re) ?? []).length;
    if (
      count(/"module":"(probe|tor)","action":"schedule"/g) <=
      count(/"module":"(probe|tor)","action":"(confirm|clear)"/g)
    )
      return;
  }
}

function countEvents(plan: LabPlan, from: number): Record<string, number> {
  const f = eventsPath(plan);
  if (!existsSync(f)) return {};
  const out: Record<string, number> = {};
  for (const line of readFileSync(f).subarray(from).toString().split('\n')) {
    if (!line) continue;
    try {
      const e = JSON.parse(line) as { module: string; action: string };
      if (
        e.action === 'spared' ||
        e.action === 'schedule' ||
        e.action === 'probe' ||
        (e.module === 'tor' && e.action === 'flag')
      )
        continue;
      const k = `${e.module}/${e.action}`;
      out[k] = (out[k] ?? 0) + 1;
    } catch {
      // partial line
    }
  }
  return out;
}
