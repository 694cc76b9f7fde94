#!/usr/bin/env node
// Runs node:test over an explicit list of compiled test files: Node 20's `--test DIR` finds no .js
// under dist/ reliably and can exit 0 having run nothing, so we list the files ourselves and fail if
// there are none. `--slow` adds the *.slow.test.js files (DoS and soak suites). Extra arguments
// filter the list by substring, e.g. `node scripts/run-tests.mjs socks5`.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const args = process.argv.slice(2);
const slow = args.includes('--slow');
const filters = args.filter((a) => !a.startsWith('--'));

function walk(dir, out) {
  let entries;
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of entries) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const dist = process.env.LADDER_DIST ?? 'dist';
const files = [...walk(join(dist, 'src'), []), ...walk(join(dist, 'test'), [])]
  .filter((f) => slow || !f.endsWith('.slow.test.js'))
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .sort();
if (files.length === 0) {
  console.error('run-tests: no test files found under dist/ (did the build run?)');
  process.exit(1);
}
const r = spawnSync(
  process.execPath,
  ['--test', '--test-concurrency=2', '--test-timeout=120000', ...files],
  { stdio: 'inherit' },
);
process.exit(r.status ?? 1);
