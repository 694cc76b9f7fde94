#!/usr/bin/env node
// Builds every native addon under native/*/binding.gyp with node-gyp, against this Node's own headers
// (which include OpenSSL's). Run by `npm ci`/`npm install` (the "install" script). A failed build is
// reported but does not fail the install: each addon has a pure-JavaScript fallback or a test that
// says plainly it is missing.
import { existsSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = join(dirname(new URL(import.meta.url).pathname), '..');
const nativeDir = join(root, 'native');
if (!existsSync(nativeDir)) process.exit(0);

function nodeGyp() {
  if (process.env.npm_config_node_gyp && existsSync(process.env.npm_config_node_gyp))
    return [process.execPath, process.env.npm_config_node_gyp];
  const bundled = join(
    dirname(process.execPath),
    '..',
    'lib',
    'node_modules',
    'npm',
    'node_modules',
    'node-gyp',
    'bin',
    'node-gyp.js',
  );
  if (existsSync(bundled)) return [process.execPath, bundled];
  return ['node-gyp'];
}

const args = ['rebuild'];
// Build against the headers of the Node that runs us, if they are installed beside it (Debian/NodeSource layout).
const headers = join(dirname(process.execPath), '..', 'include', 'node', 'node_api.h');
if (!process.env.npm_config_nodedir && existsSync(headers))
  args.push(`--nodedir=${join(dirname(process.execPath), '..')}`);

let failed = 0;
for (const name of readdirSync(nativeDir)) {
  const dir = join(nativeDir, name);
  if (!existsSync(join(dir, 'binding.gyp'))) continue;
  const [cmd, ...pre] = nodeGyp();
  const r = spawnSync(cmd, [...pre, ...args], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    encoding: 'utf8',
  });
  if (r.status === 0) {
    console.log(`native: built ${name}`);
  } else {
    failed++;
    console.warn(
      `native: could not build ${name} (the fallback will be used):\n${(
        r.stderr ||
        r.error?.message ||
        ''
      )
        .split('\n')
        .filter((l) => /error|ERR/i.test(l))
        .slice(0, 8)
        .join('\n')}`,
    );
  }
}
process.exit(0 * failed);
