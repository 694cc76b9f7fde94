/**
 * Command-line helpers shared by the subcommands: strict flag parsing with messages that name the bad
 * flag, and `host:port` parsing.
 * @module
 */
import { LadderError } from '../errors.js';

export { parseFlags } from '../core/flags.js';
export { formatHostPort, parseHostPort } from '../core/host-port.js';

/** Parses a positive number of seconds into milliseconds. */
export function parseSeconds(text: string | undefined, flag: string, fallbackMs: number): number {
  if (text === undefined) return fallbackMs;
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0)
    throw new LadderError('ERR_USAGE', `${flag} '${text}' is not a positive number of seconds`);
  return Math.round(n * 1000);
}

/** Parses a positive integer. */
export function parseCount(text: string | undefined, flag: string, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0)
    throw new LadderError('ERR_USAGE', `${flag} '${text}' is not a positive whole number`);
  return n;
}

/** Resolves on SIGINT or SIGTERM (once). */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (sig: NodeJS.Signals): void => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(sig);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}
