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
import { spawnSync } from 'node:child_process';

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
  const r = spawnSync(
    process.execPath,
    [
      '--test',
      // lab tests each build their own namespaces; one file at a time keeps two cores usable
      `--test-concurrency=${tier === 'lab' || tier === 'load' ? 1 : 2}`,
      // a bound for a hung file, not a measurement: CLI-heavy files take minutes on a loaded machine,
      // and a lab file that loads 100 pages per row through each transport several times that
      `--test-timeout=${tier === 'lab' ? 900_000 : tier === 'load' ? 600_000 : 300_000}`,
      ...files,
    ],
    // Lent reads in debug mode (src/core/lent-read.ts): a chunk kept without a hold is poisoned at
    // once, in the test processes and in every ladder process they start.
    { stdio: 'inherit', env: { ...process.env, LADDER_DEBUG_LENT_READS: '1' } },
  );
  if (r.status !== 0) failed.push(tier);
}
if (ran === 0) {
  console.error(`run-tests: no test files found under ${dist}/ (did the build run?)`);
  process.exit(1);
}
if (failed.length > 0) {
  console.error(`\nrun-tests: tier(s) failed: ${failed.join(', ')}`);
  process.exit(1);
}
