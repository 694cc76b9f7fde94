/**
 * The client app's keys, kept in one local JSON file with mode 0600 (it holds secrets): a list of
 * named access keys and which one is selected. Written to a temporary file and renamed, so a crash
 * never leaves half a file; a file that does not parse is reported, never overwritten.
 * @module
 */
import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { ConfigError } from '../errors.js';

export interface StoredKey {
  readonly name: string;
  /** The key as imported: an access key, or an online key (ssconf://, https://). */
  readonly uri: string;
  /** An online key's access key as last fetched (used when no fetch succeeds). */
  readonly resolved?: string;
  /** An online key's last good signed document. */
  readonly doc?: string;
}

export interface KeyFileContent {
  readonly keys: readonly StoredKey[];
  /** The name of the key to connect with, if any. */
  readonly selected?: string;
}

/** Keys kept at most, and the longest key URI accepted. */
export const MAX_KEYS = 64;
export const MAX_KEY_URI_CHARS = 16 * 1024;
/** The longest signed key document kept (the fetch cap). */
export const MAX_DOC_CHARS = 64 * 1024;

function bad(path: string, what: string): ConfigError {
  return new ConfigError(
    'ERR_CONFIG',
    `the key file ${path} ${what}; fix it or move it away to start with no keys`,
  );
}

/** Checks a parsed key file (pure). */
export function checkKeyFile(value: unknown, path: string): KeyFileContent {
  if (
    typeof value !== 'object' ||
    value === null ||
    !Array.isArray((value as { keys?: unknown }).keys)
  )
    throw bad(path, 'is not {"keys": [...]}');
  const v = value as { keys: unknown[]; selected?: unknown };
  if (v.keys.length > MAX_KEYS) throw bad(path, `holds more than ${MAX_KEYS} keys`);
  const keys = v.keys.map((k, i) => {
    const o = k as { name?: unknown; uri?: unknown; resolved?: unknown; doc?: unknown } | null;
    if (
      !o ||
      typeof o.name !== 'string' ||
      typeof o.uri !== 'string' ||
      o.uri.length > MAX_KEY_URI_CHARS
    )
      throw bad(path, `has a bad entry ${i + 1} (each needs a name and a uri)`);
    const optional = (f: 'resolved' | 'doc', max: number): string | undefined => {
      const v = o[f];
      if (v === undefined) return undefined;
      if (typeof v !== 'string' || v.length > max)
        throw bad(path, `has a bad "${f}" in entry ${i + 1}`);
      return v;
    };
    const resolved = optional('resolved', MAX_KEY_URI_CHARS);
    const doc = optional('doc', MAX_DOC_CHARS);
    return {
      name: o.name,
      uri: o.uri,
      ...(resolved !== undefined ? { resolved } : {}),
      ...(doc !== undefined ? { doc } : {}),
    };
  });
  if (v.selected !== undefined && typeof v.selected !== 'string')
    throw bad(path, 'has a "selected" that is not a key name');
  return v.selected !== undefined ? { keys, selected: v.selected } : { keys };
}

/** Reads the key file; no file is an empty list. */
export function readKeyFile(path: string): KeyFileContent {
  if (!existsSync(path)) return { keys: [] };
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    throw bad(path, 'is not JSON');
  }
  return checkKeyFile(parsed, path);
}

/** Writes the key file atomically with mode 0600. */
export function writeKeyFile(path: string, content: KeyFileContent): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(content, null, 2) + '\n', { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}

/** The content with `key` added (replacing a key of the same name) and selected. */
export function withKey(content: KeyFileContent, key: StoredKey): KeyFileContent {
  const keys = content.keys.filter((k) => k.name !== key.name);
  if (keys.length >= MAX_KEYS)
    throw new ConfigError('ERR_CONFIG', `at most ${MAX_KEYS} keys are kept; remove one first`);
  return { keys: [...keys, key], selected: key.name };
}
