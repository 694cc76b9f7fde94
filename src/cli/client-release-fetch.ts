/**
 * Finding and applying a newer signed client release: what `ladder update` does, and what the
 * control page offers. A release URL carries the operator's public key (`#ladder-pub=...`); its
 * signature `<url>.sig` (codec/client-release.ts) is fetched first and checked for the key, this
 * platform and a newer version; only then is the executable fetched, its size and SHA-256 checked,
 * and the running one replaced atomically.
 * @module
 */
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, openSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { LadderError } from '../errors.js';
import { cappedFetch, urlOrigin } from '../app/capped-fetch.js';
import {
  compareVersions,
  openClientRelease,
  MAX_RELEASE_BYTES,
  type ClientRelease,
} from '../codec/client-release.js';
import { parseOnlineKeyUri } from '../codec/online-key.js';
import type { StreamDialer } from '../transport/types.js';

/** A checked release signature and where its file is. */
export interface SignedRelease {
  readonly release: ClientRelease;
  /** The file's URL (no fragment). */
  readonly url: string;
}

/** The release URL's file address and pinned key; refuses a URL without `#ladder-pub=`. */
export function releaseSource(from: string, flag: string): { url: string; publicKey: Uint8Array } {
  const k = parseOnlineKeyUri(from);
  if (k.kind !== 'ladder')
    throw new LadderError(
      'ERR_USAGE',
      `${flag} needs the operator's public key as #ladder-pub=... to check the release`,
    );
  return { url: k.url, publicKey: k.publicKey };
}

/** Fetches and verifies `<url>.sig`, and checks that it is for this platform. */
export async function fetchSignedRelease(
  from: string,
  dialer: StreamDialer,
  flag = 'update: --from',
): Promise<SignedRelease> {
  const src = releaseSource(from, flag);
  const sig = await cappedFetch(`${src.url}.sig`, { dialer });
  const release = openClientRelease(sig.body.toString('utf8'), src.publicKey);
  const platform = `${process.platform}-${process.arch}`;
  if (release.platform !== platform)
    throw new LadderError(
      'ERR_KEY_DOCUMENT',
      `update: the release is for ${release.platform}, this machine is ${platform}: nothing replaced`,
    );
  return { release, url: src.url };
}

/** True when `release` is newer than `current`. */
export function isNewer(release: ClientRelease, current: string): boolean {
  return compareVersions(release.version, current) > 0;
}

/**
 * Fetches the release's file, checks its size and SHA-256 against the signature, and replaces
 * `exe` with it atomically. Throws, replacing nothing, on any mismatch.
 */
export async function applySignedRelease(
  s: SignedRelease,
  dialer: StreamDialer,
  exe: string,
  timeoutMs: number,
): Promise<void> {
  const got = await cappedFetch(s.url, {
    dialer,
    timeoutMs,
    maxBytes: Math.min(s.release.size, MAX_RELEASE_BYTES),
    tooLarge: `the download is larger than the ${s.release.size} bytes the operator signed: it was changed on the way or on the server; nothing replaced`,
  });
  const sha = createHash('sha256').update(got.body).digest('hex');
  if (got.body.length !== s.release.size || sha !== s.release.sha256)
    throw new LadderError(
      'ERR_KEY_DOCUMENT',
      `update: the download is not what the operator signed (SHA-256 ${sha.slice(0, 16)}…, ${got.body.length} bytes): it was changed on the way or on the server; nothing replaced`,
    );
  replaceAtomically(exe, got.body);
}

/** For messages: where a release comes from (scheme and host). */
export const releaseOrigin = (s: SignedRelease): string => urlOrigin(s.url);

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
