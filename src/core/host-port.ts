/**
 * `host:port` text, both ways: parsing what a person typed (a flag, a config line) and formatting
 * an address for display, IPv6 in brackets. The one place either is spelled.
 * @module
 */
import { isIPv6 } from 'node:net';
import { LadderError } from '../errors.js';
import type { Target } from './target.js';

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
