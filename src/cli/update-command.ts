/**
 * `ladder update --from <url#ladder-pub=...>`: fetches a newer single-file client (what
 * `ladder build-client` makes, served with `ladder server --publish`), through the tunnel of
 * --server when given, checks the operator's signature over its version, platform, size and
 * SHA-256 (codec/client-release.ts), and replaces the executable atomically (a new file in the same
 * directory, synced, then renamed over the old). A tampered, older or other-platform download is
 * refused and nothing is replaced.
 * @module
 */
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, openSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { LadderError } from '../errors.js';
import { cappedFetch, urlOrigin } from '../app/capped-fetch.js';
import { compareVersions, openClientRelease, MAX_RELEASE_BYTES } from '../codec/client-release.js';
import { parseOnlineKeyUri } from '../codec/online-key.js';
import { DirectDialer } from '../transport/direct.js';
import type { StreamDialer } from '../transport/types.js';
import { dialersForKey } from './key-dialers.js';
import { parseFlags, parseSeconds } from './args.js';
import { ladderVersion, runningAsSea } from './version.js';

const HELP = `ladder update --from <https://...#ladder-pub=...> [--server <key>] [--exe <file>]

Replaces this single-file client (ladder build-client) with a newer release the operator signed.
  --from     where the release is served (the file; its signature is the same URL + .sig), with
             the operator's public key as #ladder-pub=..., as the operator hands it out
  --server   fetch through the tunnel of this access key (recommended where the URL is blocked)
  --exe      the executable to replace (default: this one, when it is a single-file client)
  --timeout  seconds for the whole download (default 300)`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags('update', argv, {
    from: { type: 'string' },
    server: { type: 'string' },
    exe: { type: 'string' },
    timeout: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (!values.from)
    throw new LadderError(
      'ERR_USAGE',
      'update: give --from <https://...#ladder-pub=...>, the release URL the operator handed out',
    );
  const k = parseOnlineKeyUri(values.from);
  if (k.kind !== 'ladder')
    throw new LadderError(
      'ERR_USAGE',
      "update: --from needs the operator's public key as #ladder-pub=... to check the release",
    );
  const exe = values.exe ?? (runningAsSea() ? process.execPath : undefined);
  if (!exe)
    throw new LadderError(
      'ERR_USAGE',
      'update: this ladder runs from npm, not as a single-file client: update it with npm, or give --exe <file> of a single-file client',
    );
  const dialer: StreamDialer = values.server
    ? dialersForKey(values.server).stream
    : new DirectDialer();
  const timeoutMs = parseSeconds(values.timeout, '--timeout', 300_000);
  const via = values.server ? 'through the tunnel' : 'directly';

  const sig = await cappedFetch(`${k.url}.sig`, { dialer });
  const release = openClientRelease(sig.body.toString('utf8'), k.publicKey);
  const platform = `${process.platform}-${process.arch}`;
  if (release.platform !== platform)
    throw new LadderError(
      'ERR_KEY_DOCUMENT',
      `update: the release is for ${release.platform}, this machine is ${platform}: nothing replaced`,
    );
  const current = ladderVersion();
  if (compareVersions(release.version, current) <= 0) {
    console.log(
      `ladder update: the release is version ${release.version}, not newer than this client's ${current}: nothing replaced`,
    );
    return compareVersions(release.version, current) < 0 ? 1 : 0;
  }
  console.log(
    `ladder update: fetching version ${release.version} (${release.size} bytes) from ${urlOrigin(k.url)} ${via}`,
  );
  const got = await cappedFetch(k.url, {
    dialer,
    timeoutMs,
    maxBytes: Math.min(release.size, MAX_RELEASE_BYTES),
  });
  const sha = createHash('sha256').update(got.body).digest('hex');
  if (got.body.length !== release.size || sha !== release.sha256)
    throw new LadderError(
      'ERR_KEY_DOCUMENT',
      `update: the download is not what the operator signed (SHA-256 ${sha.slice(0, 16)}…, ${got.body.length} bytes): it was changed on the way or on the server; nothing replaced`,
    );
  replaceAtomically(exe, got.body);
  console.log(`ladder update: ${exe} is now version ${release.version}`);
  return 0;
}

/** Writes `bytes` beside `path`, syncs, and renames it over `path`, keeping an executable mode. */
export function replaceAtomically(path: string, bytes: Buffer): void {
  let mode = 0o755;
  try {
    mode = statSync(path).mode & 0o777;
  } catch {
    // a new file: 0755
  }
  const tmp = join(dirname(path), `.${basename(path)}.update-${process.pid}`);
  try {
    const fd = openSync(tmp, 'wx', mode);
    try {
      for (let off = 0; off < bytes.length;) off += writeSync(fd, bytes, off, bytes.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new LadderError(
      'ERR_CONFIG',
      `update: cannot replace ${path}: ${(err as Error).message} (is its directory writable?)`,
      { cause: err },
    );
  }
}
