/**
 * `ladder server --publish <path>=<file>`: files the decoy site serves at secret paths (a signed key
 * document, a client release). Pure parsing of the flag.
 * @module
 */
import { LadderError } from '../errors.js';

/** The paths and files of the --publish flags, as DecoySite options; {} without any. */
export function publishedFiles(
  flags: readonly string[] | undefined,
  fallback?: string,
): { published?: ReadonlyMap<string, string> } {
  if (!flags?.length) return {};
  if (fallback !== undefined)
    throw new LadderError(
      'ERR_USAGE',
      '--publish serves files from the built-in decoy site or --decoy-dir, not with --fallback (put the files on that web server)',
    );
  const map = new Map<string, string>();
  for (const f of flags) {
    const i = f.indexOf('=');
    const path = i > 0 ? f.slice(0, i) : '';
    const file = i > 0 ? f.slice(i + 1) : '';
    if (!/^\/[A-Za-z0-9._~\-/]{16,200}$/.test(path) || path.includes('/../') || !file)
      throw new LadderError(
        'ERR_USAGE',
        `--publish '${f.slice(0, 80)}' must be /<secret path>=<file>, the path at least 16 characters of A-Z a-z 0-9 . _ ~ - / (a short path can be guessed)`,
      );
    map.set(path, file);
  }
  return { published: map };
}
