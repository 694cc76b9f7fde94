/**
 * Command-line helpers shared by the subcommands: strict flag parsing with messages that name the bad
 * flag, and `host:port` parsing.
 * @module
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { isIPv6 } from 'node:net';
import { LadderError } from '../errors.js';
import type { Target } from '../transport/types.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/** node:util parseArgs in strict mode, its errors turned into ERR_USAGE messages for people. */
export function parseFlags<O extends Options>(
  command: string,
  argv: string[],
  options: O,
  allowPositionals = false,
) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals });
  } catch (err) {
    const msg = (err as Error).message.replace(/\. To specify a positional argument.*$/s, '');
    throw new LadderError(
      'ERR_USAGE',
      `${command}: ${msg}. Run 'ladder ${command} --help' for the options.`,
    );
  }
}

/** Parses `host:port`, `[v6]:port` or `:port` (host then defaults to `defaultHost`). */
export function parseHostPort(text: string, flag: string, defaultHost = '127.0.0.1'): Target {
  let host: string;
  let portText: string;
  const m = /^\[([^\]]+)\]:(\d*)$/.exec(text);
  if (m) {
    host = m[1]!;
    portText = m[2]!;
    if (!isIPv6(host))
      throw new LadderError(
        'ERR_USAGE',
        `${flag} '${text}': '${host}' in brackets is not an IPv6 address`,
      );
  } else {
    const i = text.lastIndexOf(':');
    if (i < 0)
      throw new LadderError(
        'ERR_USAGE',
        `${flag} '${text}' needs a port: write host:port, e.g. 127.0.0.1:1080`,
      );
    host = text.slice(0, i) || defaultHost;
    portText = text.slice(i + 1);
    if (host.includes(':'))
      throw new LadderError(
        'ERR_USAGE',
        `${flag} '${text}': put an IPv6 address in brackets, e.g. [::1]:1080`,
      );
  }
  const port = Number(portText);
  if (portText === '' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new LadderError(
      'ERR_USAGE',
      `${flag} '${text}': the port '${portText}' is not a number from 0 to 65535`,
    );
  }
  return { host, port };
}

/** `host:port` for display, IPv6 in brackets. */
export function formatHostPort(host: string, port: number): string {
  return isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

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
