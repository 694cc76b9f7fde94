/**
 * `ladder update --from <url#ladder-pub=...>`: fetches a newer single-file client (what
 * `ladder build-client` makes, served with `ladder server --publish`), through the tunnel of
 * --server when given, checks the operator's signature over its version, platform, size and
 * SHA-256 (codec/client-release.ts), and replaces the executable atomically (a new file in the same
 * directory, synced, then renamed over the old). A tampered, older or other-platform download is
 * refused and nothing is replaced.
 * @module
 */
import { LadderError } from '../errors.js';
import { compareVersions } from '../codec/client-release.js';
import {
  applySignedRelease,
  fetchSignedRelease,
  isNewer,
  releaseOrigin,
  releaseSource,
} from './client-release-fetch.js';
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
  releaseSource(values.from, 'update: --from');
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

  const signed = await fetchSignedRelease(values.from, dialer);
  const { release } = signed;
  const current = ladderVersion();
  if (!isNewer(release, current)) {
    console.log(
      `ladder update: the release is version ${release.version}, not newer than this client's ${current}: nothing replaced`,
    );
    return compareVersions(release.version, current) < 0 ? 1 : 0;
  }
  console.log(
    `ladder update: fetching version ${release.version} (${release.size} bytes) from ${releaseOrigin(signed)} ${via}`,
  );
  await applySignedRelease(signed, dialer, exe, timeoutMs);
  console.log(`ladder update: ${exe} is now version ${release.version}`);
  return 0;
}
