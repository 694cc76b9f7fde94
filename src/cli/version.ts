/**
 * This installation's version (package.json's), and whether it runs as a single-file client
 * (a Node single executable application made by `ladder build-client`).
 * @module
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

let cached: string | undefined;

/** package.json's version, read once; 'unknown' if there is none. */
export function ladderVersion(): string {
  if (cached === undefined) {
    try {
      const p = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8'));
      cached = String((p as { version?: unknown }).version ?? 'unknown');
    } catch {
      cached = 'unknown';
    }
  }
  return cached;
}

/** True inside a single executable application. */
export function runningAsSea(): boolean {
  try {
    const sea = createRequire(import.meta.url)('node:sea') as { isSea?: () => boolean };
    return sea.isSea?.() === true;
  } catch {
    return false;
  }
}
