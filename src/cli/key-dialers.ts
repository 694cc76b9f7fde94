/**
 * The client's dialers for an access key: transport/key-dialers.ts with the client's file reads,
 * warnings on stderr, and recycled reads (the client's relay and fronts honour borrowed chunks).
 * @module
 */
import { readFileSync } from 'node:fs';
import {
  dialersFromKey,
  serverEndpointsOfKey,
  type KeyDialerOptions as BuilderOptions,
  type KeyDialers,
  type KeyEnv,
} from '../transport/key-dialers.js';

export type { KeyDialers };
export { serverEndpointsOfKey };

/** Client-side choices that are not part of a key. */
export type KeyDialerOptions = Omit<BuilderOptions, 'recycleReads'>;

const clientEnv: KeyEnv = {
  readFile: (path) => readFileSync(path, 'utf8'),
  warn: (message) => console.error(`ladder client: warning: ${message}`),
};

/**
 * The dialers for a key. In a ladder:// key, transports this Ladder does not know are skipped
 * (`skipped` lists them) as long as one is left.
 */
export function dialersForKey(
  uri: string,
  onSwitch?: (to: string, why: string) => void,
  options: KeyDialerOptions = {},
): KeyDialers & { skipped: string[] } {
  return dialersFromKey(
    uri,
    { ...options, recycleReads: true, ...(onSwitch ? { onSwitch } : {}) },
    clientEnv,
  );
}
