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
import {
  CLIENT_PLATFORMS,
  DEFAULT_NODE_REGISTRY,
  checkTargetBinary,
  clientPlatform,
  fetchNodeBinary,
  hostPlatformName,
  type ClientPlatform,
} from './client-platforms.js';
import { MAX_RELEASE_BYTES } from '../codec/client-release.js';

const HELP = `ladder build-client --operator-key <file> --out <file> [--platform <name>] [--node <file>]

Makes a single-file client (Node's single executable applications) and its signature <out>.sig,
signed with the operator key. Serve both with 'ladder server --publish /<secret>/ladder=<out>
--publish /<secret>/ladder.sig=<out>.sig'; users run it as './ladder client --ui 127.0.0.1:9090'
and update it with 'ladder update --from <url>'.
  --operator-key  the Ed25519 signing key (PEM; made with mode 0600 if missing)
  --out           the executable to write (ending in .exe for win-x64)
  --platform      ${CLIENT_PLATFORMS.map((p) => p.name).join(', ')}
                  (default: this machine's, ${hostPlatformName()}); another platform's Node binary
                  of the same version as --node comes from the npm registry (node-<platform>)
  --registry      the npm registry to fetch it from (default ${DEFAULT_NODE_REGISTRY})
  --node-binary   the target's Node binary to use instead of fetching one
  --node          the Node binary that makes the application blob, and for this machine's
                  platform also the one the client is built from (default: the one running)
A macOS client is unsigned: sign it on a Mac with 'codesign --force --sign - <out>' before
running it (Apple silicon runs no unsigned code). See docs/client.md, "Other platforms".`;

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
export function packInstallation(root: string, o: { nativeAddons?: boolean } = {}): Buffer {
  const files: string[] = [];
  for (const f of ['package.json', 'LICENSE']) if (existsSync(join(root, f))) files.push(f);
  for (const d of ['dist/src', 'assets', 'data'])
    if (existsSync(join(root, d))) walk(root, join(root, d), files);
  // Compiled for this machine: another platform cannot load them (and does not need them).
  for (const addon of o.nativeAddons === false ? [] : ['aead', 'tun']) {
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

/** What to build: the target and where its Node binary comes from (pure). */
export interface BuildClientPlan {
  readonly out: string;
  readonly operatorKey: string;
  /** The Node binary that makes the blob (and, for this machine's platform, the base). */
  readonly node: string;
  /** Undefined: this machine's platform, from `node` itself. */
  readonly target?: ClientPlatform;
  /** For another target: a file, or the registry to fetch the binary from. */
  readonly nodeBinary?: string;
  readonly registry: string;
}

export function planBuildClient(values: {
  readonly 'operator-key'?: string | undefined;
  readonly out?: string | undefined;
  readonly node?: string | undefined;
  readonly platform?: string | undefined;
  readonly registry?: string | undefined;
  readonly 'node-binary'?: string | undefined;
}): BuildClientPlan {
  if (!values['operator-key'] || !values.out)
    throw new LadderError('ERR_USAGE', 'build-client: give --operator-key <file> and --out <file>');
  const host = `${process.platform}-${process.arch}`;
  const named = values.platform === undefined ? undefined : clientPlatform(values.platform);
  const foreign =
    (named !== undefined && named.release !== host) ||
    values.registry !== undefined ||
    values['node-binary'] !== undefined;
  const target = foreign ? (named ?? clientPlatform(hostPlatformName())) : undefined;
  if (target?.format === 'pe' && !/\.exe$/i.test(values.out))
    throw new LadderError(
      'ERR_USAGE',
      `build-client: Windows runs only a file named *.exe: give --out ${values.out}.exe`,
    );
  return {
    out: values.out,
    operatorKey: values['operator-key'],
    node: values.node ?? process.execPath,
    ...(target ? { target } : {}),
    ...(values['node-binary'] !== undefined ? { nodeBinary: values['node-binary'] } : {}),
    registry: values.registry ?? DEFAULT_NODE_REGISTRY,
  };
}

/** The Node version of the binary that makes the blob. */
function blobMakerVersion(node: string): string {
  if (node === process.execPath) return process.version;
  const r = spawnSync(node, ['--version'], { encoding: 'utf8', timeout: 60_000 });
  const v = /^v\d+\.\d+\.\d+$/.exec((r.stdout ?? '').trim());
  if (!v)
    throw new LadderError('ERR_CONFIG', `build-client: --node ${node} does not run here as Node`);
  return v[0];
}

/** The target's Node binary: the given file or the registry's, checked for format and version. */
async function targetNodeBinary(plan: BuildClientPlan, target: ClientPlatform): Promise<Buffer> {
  const version = blobMakerVersion(plan.node);
  if (plan.nodeBinary === undefined) {
    console.log(
      `ladder build-client: fetching Node ${version} for ${target.name} (${target.npmPackage}) from ${plan.registry}`,
    );
    return fetchNodeBinary(target, version, { registry: plan.registry });
  }
  const size = statSync(plan.nodeBinary).size;
  if (size > MAX_RELEASE_BYTES)
    throw new LadderError(
      'ERR_CONFIG',
      `build-client: --node-binary ${plan.nodeBinary} is over ${MAX_RELEASE_BYTES >> 20} MiB, not a Node binary`,
    );
  const bin = readFileSync(plan.nodeBinary);
  checkTargetBinary(bin, target, version, `--node-binary ${plan.nodeBinary}`);
  return bin;
}

/** Runs `node --experimental-sea-config` on the packed installation; the blob's bytes. */
function makeBlob(node: string, work: string, app: Buffer): Buffer {
  writeFileSync(join(work, 'app.bin'), app);
  writeFileSync(join(work, 'main.cjs'), BOOTSTRAP);
  writeFileSync(
    join(work, 'sea-config.json'),
    JSON.stringify({
      main: join(work, 'main.cjs'),
      output: join(work, 'sea.blob'),
      disableExperimentalSEAWarning: true,
      // Both off: code cache and snapshot load only on the platform that made them.
      useCodeCache: false,
      useSnapshot: false,
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
  return readFileSync(join(work, 'sea.blob'));
}

/** Injects the blob with postject (ELF, PE, or Mach-O in its own NODE_SEA segment). */
async function injectBlob(file: string, blob: Buffer, macho: boolean): Promise<void> {
  const postject = 'postject'; // untyped package: imported by name so tsc does not look for types
  const { inject } = (await import(postject)) as {
    inject: (
      file: string,
      name: string,
      data: Buffer,
      o: { sentinelFuse: string; machoSegmentName?: string },
    ) => Promise<void>;
  };
  try {
    await inject(file, 'NODE_SEA_BLOB', blob, {
      sentinelFuse: SEA_FUSE,
      // Node looks for the blob of a Mach-O binary in this segment (single-executable docs)
      ...(macho ? { machoSegmentName: 'NODE_SEA' } : {}),
    });
  } catch (err) {
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
    platform: { type: 'string' },
    registry: { type: 'string' },
    'node-binary': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const plan = planBuildClient(values);
  const { out, target } = plan;
  const root = fileURLToPath(new URL('../../../', import.meta.url));
  const { privateKey } = operatorSigningKey(plan.operatorKey);
  const base = target ? await targetNodeBinary(plan, target) : undefined;
  const work = mkdtempSync(join(tmpdir(), 'ladder-build-client-'));
  const tmpOut = join(dirname(out), `.${Date.now()}.${process.pid}.build`);
  try {
    const sameHost = !target || target.release === `${process.platform}-${process.arch}`;
    const blob = makeBlob(plan.node, work, packInstallation(root, { nativeAddons: sameHost }));
    if (base) writeFileSync(tmpOut, base);
    else copyFileSync(plan.node, tmpOut);
    chmodSync(tmpOut, 0o755);
    await injectBlob(tmpOut, blob, target?.format === 'macho');
    const bytes = readFileSync(tmpOut);
    const platform = target?.release ?? `${process.platform}-${process.arch}`;
    const sig = signClientRelease(
      {
        version: ladderVersion(),
        platform,
        size: bytes.length,
        sha256: createHash('sha256').update(bytes).digest('hex'),
        issued: new Date().toISOString(),
      },
      privateKey,
    );
    copyFileSync(tmpOut, out);
    chmodSync(out, 0o755);
    writeFileSync(`${out}.sig`, sig);
    console.log(
      `ladder build-client: ${out} for ${platform} (${bytes.length} bytes, version ${ladderVersion()}) and ${out}.sig`,
    );
    if (target?.format === 'macho')
      console.log(
        `ladder build-client: the macOS client is unsigned: on a Mac, run 'codesign --force --sign - ${out}' before starting it`,
      );
    console.log(
      `ladder build-client: operator public key ${operatorPublicKey(privateKey).toString('base64url')} (users' --from URLs end in #ladder-pub=<it>)`,
    );
    return 0;
  } finally {
    rmSync(tmpOut, { force: true });
    rmSync(work, { recursive: true, force: true });
  }
}
