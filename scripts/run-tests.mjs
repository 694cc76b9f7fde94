#!/usr/bin/env node
// Runs node:test over an explicit list of compiled test files, one tier at a time (test/README.md):
//   unit         dist/src/**/*.test.js, dist/test/*.test.js, dist/test/fuzz/ (no external programs)
//   integration  dist/test/integration/ (Ladder against real peers and tools, on loopback)
//   lab          dist/test/lab/ (network namespaces: root; tests without root skip with the reason)
//   load         dist/test/load/ (bounded floods and soaks)
// `--tier all` (what `npm test` runs) runs every tier in that order and fails if any failed. Node
// 20's `--test DIR` finds no .js under dist/ reliably and can exit 0 having run nothing, so the files
// are listed here, and a tier that finds none fails. Extra arguments filter the list by substring,
// e.g. `node scripts/run-tests.mjs --tier unit socks5`.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';

const TIERS = ['unit', 'integration', 'lab', 'load'];
const args = process.argv.slice(2);
const tierArg =
  args.find((a) => a.startsWith('--tier='))?.slice(7) ??
  (args.includes('--tier') ? args[args.indexOf('--tier') + 1] : 'all');
const filters = args.filter((a, i) => !a.startsWith('--') && args[i - 1] !== '--tier');
if (tierArg !== 'all' && !TIERS.includes(tierArg)) {
  console.error(`run-tests: unknown tier '${tierArg}'; one of ${TIERS.join(', ')}, all`);
  process.exit(2);
}

function walk(dir, out, recurse = true) {
  let entries;
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of entries) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      if (recurse) walk(p, out);
    } else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const dist = process.env.LADDER_DIST ?? 'dist';
function filesOf(tier) {
  const t = join(dist, 'test');
  const files =
    tier === 'unit'
      ? [...walk(join(dist, 'src'), []), ...walk(t, [], false), ...walk(join(t, 'fuzz'), [])]
      : walk(join(t, tier), []);
  return files.filter((f) => filters.length === 0 || filters.some((s) => f.includes(s))).sort();
}

/** Each failing test's TAP lines: its `not ok` line and the block under it up to the stack. */
const failures = [];

/**
 * Runs node's test runner, passing its output through as it comes and keeping the TAP lines of
 * each failing test (not those marked TODO). Resolves with the exit status.
 */
function runTier(tier, argv) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, argv, {
      stdio: ['ignore', 'pipe', 'inherit'],
      // Lent reads in debug mode (src/core/lent-read.ts): a chunk kept without a hold is poisoned
      // at once, in the test processes and in every ladder process they start.
      env: { ...process.env, LADDER_DEBUG_LENT_READS: '1' },
    });
    child.stdout.setEncoding('utf8');
    let partial = '';
    let current = null;
    const line = (l) => {
      const notOk = /^(\s*)not ok \d+ - (.*)$/.exec(l);
      if (notOk && !/ # TODO\b/.test(notOk[2])) {
        current = { indent: notOk[1].length, lines: [`[${tier}] ${l.trim()}`] };
        failures.push(current);
        return;
      }
      if (!current) return;
      // The YAML block under a `not ok` line is indented two more and ends with `...`.
      const inside = l.startsWith(' '.repeat(current.indent + 2));
      if (!inside) {
        current = null;
        return;
      }
      // The error, not the stack: the summary has to fit the tail of a CI log.
      if (/^\s*stack: /.test(l)) current.full = true;
      if (!current.full && current.lines.length < 12) current.lines.push(l);
      if (l.trim() === '...') current = null;
    };
    child.stdout.on('data', (d) => {
      process.stdout.write(d);
      const text = partial + d;
      const lines = text.split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) line(l);
    });
    child.on('close', (code, signal) => {
      if (partial) line(partial);
      resolve(code ?? (signal ? 1 : 0));
    });
  });
}

const tiers = tierArg === 'all' ? TIERS : [tierArg];
const failed = [];
let ran = 0;
for (const tier of tiers) {
  const files = filesOf(tier);
  if (files.length === 0) {
    // With a filter, or in `all` for a tier nobody has written yet, an empty tier is not an error;
    // asked for by name without a filter, it is (the build may not have run).
    if (tierArg !== 'all' && filters.length === 0) {
      console.error(
        `run-tests: no test files for tier '${tier}' under ${dist}/ (did the build run?)`,
      );
      process.exit(1);
    }
    continue;
  }
  ran += files.length;
  console.log(`\n# tier ${tier}: ${files.length} files`);
  const status = await runTier(tier, [
    '--test',
    // lab tests each build their own namespaces; one file at a time keeps two cores usable
    `--test-concurrency=${tier === 'lab' || tier === 'load' ? 1 : 2}`,
    // a bound for a hung file, not a measurement: CLI-heavy files take minutes on a loaded machine,
    // and a lab file that loads 100 pages per row through each transport several times that
    `--test-timeout=${tier === 'lab' ? 900_000 : tier === 'load' ? 600_000 : 300_000}`,
    ...files,
  ]);
  if (status !== 0) failed.push(tier);
}
if (ran === 0) {
  console.error(`run-tests: no test files found under ${dist}/ (did the build run?)`);
  process.exit(1);
}
if (failed.length > 0) {
  // Repeated at the end, where a CI log's tail shows it: each failure with its error lines.
  // Suites that failed only because a test in them did are named once, after the tests.
  const own = failures.filter((f) => !f.lines.some((l) => l.includes("'subtestsFailed'")));
  const suites = failures.filter((f) => !own.includes(f));
  if (own.length > 0) {
    console.error(`\nrun-tests: ${own.length} failing test(s), the first 8 with their errors:`);
    for (const f of own.slice(0, 8)) console.error(f.lines.join('\n'));
  }
  if (suites.length > 0)
    console.error(`run-tests: in suites: ${suites.map((f) => f.lines[0]).join('; ')}`);
  console.error(`\nrun-tests: tier(s) failed: ${failed.join(', ')}`);
  process.exit(1);
}
