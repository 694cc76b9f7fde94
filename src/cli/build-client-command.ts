/**
 * `ladder build-client --operator-key <file> --out <file>`: a single-file client for this platform
 * (a Node single executable application: Node's own binary with this installation inside), and its
 * signature `<out>.sig` (codec/client-release.ts), so that a person can get Ladder without an app
 * store or npm, and `ladder update` can check what it downloads.
 *
 * Inside: this installation's compiled code, pages, data, native addons and runtime packages (not
 * the server's store drivers) as one archive asset, and a small bootstrap that unpacks it once per
 * build into the user's cache directory (a fresh directory renamed into place, so two starts never
 * see half of it) and runs the `ladder` command from there.
 * @module
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  chmodSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LadderError } from '../errors.js';
import { signClientRelease } from '../codec/client-release.js';
import { parseFlags } from './args.js';
import { operatorPublicKey, operatorSigningKey } from './keys-publish.js';
import { ladderVersion } from './version.js';

const HELP = `ladder build-client --operator-key <file> --out <file> [--node <file>]

Makes a single-file client for ${process.platform}-${process.arch} (Node's single executable
applications) and its signature <out>.sig, signed with the operator key. Serve both with
'ladder server --publish /<secret>/ladder=<out> --publish /<secret>/ladder.sig=<out>.sig'; users
run it as './ladder client --ui 127.0.0.1:9090' and update it with 'ladder update --from <url>'.
  --operator-key  the Ed25519 signing key (PEM; made with mode 0600 if missing)
  --out           the executable to write
  --node          the Node binary to build from (default: the one running)`;

/**
 * The SEA fuse every Node binary carries (Node's single-executable-applications docs), written in
 * two parts: postject refuses a binary where the whole string occurs twice, and this file is
 * itself packed into the application.
 */
const SEA_FUSE = ['NODE_SEA_FUSE', 'fce680ab2cc467b6e072b8b5df1996b2'].join('_');
/** Packages the client never loads: the server's key stores, and the tool that builds this. */
const NOT_IN_CLIENT = new Set(['better-sqlite3', 'pg', 'postject']);

/** Unpacks the archive asset into the cache once per build and runs the CLI from it. */
const BOOTSTRAP = `'use strict';
const sea = require('node:sea');
const fs = require('node:fs');
const path = require('node:path');
const os = require('node:os');
const crypto = require('node:crypto');
const { createRequire } = require('node:module');
const blob = Buffer.from(sea.getAsset('app'));
const id = crypto.createHash('sha256').update(blob).digest('hex').slice(0, 24);
const base = process.env.LADDER_CACHE_DIR || path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'ladder');
const dir = path.join(base, 'client-' + id);
if (!fs.existsSync(path.join(dir, 'package.json'))) {
  fs.mkdirSync(base, { recursive: true, mode: 0o700 });
  const tmp = fs.mkdtempSync(path.join(base, '.unpack-'));
  const n = blob.readUInt32BE(0);
  const index = JSON.parse(blob.subarray(4, 4 + n).toString('utf8'));
  let off = 4 + n;
  for (const [rel, size, mode] of index) {
    const f = path.join(tmp, rel);
    fs.mkdirSync(path.dirname(f), { recursive: true });
    fs.writeFileSync(f, blob.subarray(off, off + size), { mode });
    off += size;
  }
  try {
    fs.renameSync(tmp, dir);
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    if (!fs.existsSync(path.join(dir, 'package.json'))) throw err;
  }
}
createRequire(path.join(dir, 'package.json'))('./dist/src/cli/main.js');
`;

/** Files under `dir` (relative to `root`), skipping what a running client never reads. */
function walk(root: string, dir: string, out: string[]): void {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, e.name);
    if (e.isDirectory()) walk(root, full, out);
    else if (e.isFile() && !/\.(d\.ts|map|test\.js)$/.test(e.name)) out.push(relative(root, full));
  }
}

/** The runtime packages' directories, found from package.json's dependencies, transitively. */
function runtimePackages(root: string): string[] {
  const found = new Set<string>();
  const visit = (from: string) => {
    const pkg = JSON.parse(readFileSync(join(from, 'package.json'), 'utf8')) as {
      dependencies?: Record<string, string>;
    };
    for (const name of Object.keys(pkg.dependencies ?? {})) {
      if (NOT_IN_CLIENT.has(name)) continue;
      const nested = join(from, 'node_modules', name);
      const dir = existsSync(nested) ? nested : join(root, 'node_modules', name);
      if (!existsSync(join(dir, 'package.json')) || found.has(dir)) continue;
      found.add(dir);
      visit(dir);
    }
  };
  visit(root);
  return [...found];
}

/** The archive: a 4-byte length, a JSON index of [path, size, mode], then the files in order. */
export function packInstallation(root: string): Buffer {
  const files: string[] = [];
  for (const f of ['package.json', 'LICENSE']) if (existsSync(join(root, f))) files.push(f);
  for (const d of ['dist/src', 'assets', 'data'])
    if (existsSync(join(root, d))) walk(root, join(root, d), files);
  for (const addon of ['aead', 'tun']) {
    const f = join(root, 'native', addon, 'build', 'Release', `ladder_${addon}.node`);
    if (existsSync(f)) files.push(relative(root, f));
  }
  for (const d of runtimePackages(root)) {
    const inPkg: string[] = [];
    walk(root, d, inPkg);
    files.push(...inPkg);
  }
  const unique = [...new Set(files)].sort();
  const index: [string, number, number][] = [];
  const bodies: Buffer[] = [];
  for (const rel of unique) {
    const body = readFileSync(join(root, rel));
    index.push([rel.split(sep).join('/'), body.length, statSync(join(root, rel)).mode & 0o755]);
    bodies.push(body);
  }
  const head = Buffer.from(JSON.stringify(index), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(head.length);
  return Buffer.concat([len, head, ...bodies]);
}

/** Writes the application blob (`work`/sea.blob) of the installation at `root` with `node`. */
function makeSeaBlob(work: string, node: string, root: string): void {
  writeFileSync(join(work, 'app.bin'), packInstallation(root));
  writeFileSync(join(work, 'main.cjs'), BOOTSTRAP);
  writeFileSync(
    join(work, 'sea-config.json'),
    JSON.stringify({
      main: join(work, 'main.cjs'),
      output: join(work, 'sea.blob'),
      disableExperimentalSEAWarning: true,
      useCodeCache: false,
      assets: { app: join(work, 'app.bin') },
    }),
  );
  const made = spawnSync(node, ['--experimental-sea-config', join(work, 'sea-config.json')], {
    encoding: 'utf8',
  });
  if (made.status !== 0)
    throw new LadderError(
      'ERR_CONFIG',
      `build-client: ${node} could not make the application blob (Node 20.12 or later is needed): ${(made.stderr || made.stdout).trim().slice(0, 400)}`,
    );
}

/** Puts the blob into the copy of node at `file` (postject); removes the copy if that fails. */
async function injectBlob(file: string, blob: Buffer): Promise<void> {
  const postject = 'postject'; // untyped package: imported by name so tsc does not look for types
  const { inject } = (await import(postject)) as {
    inject: (
      file: string,
      name: string,
      data: Buffer,
      o: { sentinelFuse: string },
    ) => Promise<void>;
  };
  try {
    await inject(file, 'NODE_SEA_BLOB', blob, {
      sentinelFuse: SEA_FUSE,
    });
  } catch (err) {
    rmSync(file, { force: true });
    throw new LadderError(
      'ERR_CONFIG',
      `build-client: postject failed: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags('build-client', argv, {
    'operator-key': { type: 'string' },
    out: { type: 'string' },
    node: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (!values['operator-key'] || !values.out)
    throw new LadderError('ERR_USAGE', 'build-client: give --operator-key <file> and --out <file>');
  const out = values.out;
  const node = values.node ?? process.execPath;
  const root = fileURLToPath(new URL('../../../', import.meta.url));
  const { privateKey } = operatorSigningKey(values['operator-key']);
  const work = mkdtempSync(join(tmpdir(), 'ladder-build-client-'));
  try {
    makeSeaBlob(work, node, root);
    const tmpOut = join(dirname(out), `.${Date.now()}.${process.pid}.build`);
    copyFileSync(node, tmpOut);
    chmodSync(tmpOut, 0o755);
    await injectBlob(tmpOut, readFileSync(join(work, 'sea.blob')));
    const bytes = readFileSync(tmpOut);
    const sig = signClientRelease(
      {
        version: ladderVersion(),
        platform: `${process.platform}-${process.arch}`,
        size: bytes.length,
        sha256: createHash('sha256').update(bytes).digest('hex'),
        issued: new Date().toISOString(),
      },
      privateKey,
    );
    copyFileSync(tmpOut, out);
    chmodSync(out, 0o755);
    rmSync(tmpOut, { force: true });
    writeFileSync(`${out}.sig`, sig);
    console.log(
      `ladder build-client: ${out} (${bytes.length} bytes, version ${ladderVersion()}) and ${out}.sig`,
    );
    console.log(
      `ladder build-client: operator public key ${operatorPublicKey(privateKey).toString('base64url')} (users' --from URLs end in #ladder-pub=<it>)`,
    );
    return 0;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
