/**
 * The edge where errors become something a local application understands: a SOCKS5 reply code
 * (RFC 1928 §6), an HTTP status (RFC 9110 §15), and a sentence for a person. One table, so that both
 * front ends tell the same story about the same failure (docs/errors.md lists the same mapping).
 * @module
 */
import { LadderError, type ErrorCode } from '../errors.js';
import { SOCKS_REPLY } from '../codec/socks5.js';
import type { Target } from '../transport/types.js';

interface Translation {
  readonly socks: number;
  readonly http: number;
  /** A sentence naming the cause; `hp` is the target as host:port. */
  readonly say: (hp: string, host: string) => string;
}

const DIAL_FAILURES: Partial<Record<ErrorCode, Translation>> = {
  ERR_DIAL_REFUSED: {
    socks: SOCKS_REPLY.CONNECTION_REFUSED,
    http: 502,
    say: (hp) => `connection refused by ${hp}`,
  },
  ERR_DIAL_UNREACHABLE: {
    socks: SOCKS_REPLY.NETWORK_UNREACHABLE,
    http: 502,
    say: (hp) => `${hp} is unreachable (no route)`,
  },
  ERR_DIAL_DNS: {
    socks: SOCKS_REPLY.HOST_UNREACHABLE,
    http: 502,
    say: (_hp, host) => `the name ${host} did not resolve`,
  },
  // RFC 1928 has no "timed out"; 0x06 (TTL expired) is what clients show as a timeout.
  ERR_DIAL_TIMEOUT: {
    socks: SOCKS_REPLY.TTL_EXPIRED,
    http: 504,
    say: (hp) => `${hp} did not answer in time`,
  },
  ERR_DIAL_FORBIDDEN: {
    socks: SOCKS_REPLY.NOT_ALLOWED,
    http: 403,
    say: (hp) => `the server does not allow connections to ${hp}`,
  },
  ERR_RULE_REJECT: {
    socks: SOCKS_REPLY.NOT_ALLOWED,
    http: 403,
    say: (hp) => `not allowed by ruleset: your --rules refuse connections to ${hp}`,
  },
  ERR_SERVER_UNREACHABLE: {
    socks: SOCKS_REPLY.NETWORK_UNREACHABLE,
    http: 502,
    say: (hp) => `the Ladder server could not be reached (while connecting to ${hp})`,
  },
  ERR_ABORTED: {
    socks: SOCKS_REPLY.GENERAL_FAILURE,
    http: 502,
    say: (hp) => `the connection to ${hp} was cancelled`,
  },
};

const OTHER: Translation = {
  socks: SOCKS_REPLY.GENERAL_FAILURE,
  http: 502,
  say: (hp) => `could not connect to ${hp}`,
};

function translationOf(err: unknown): Translation {
  return (err instanceof LadderError ? DIAL_FAILURES[err.code] : undefined) ?? OTHER;
}

/** The error's stable code, or ERR_DIAL for anything that is not a LadderError. */
export function codeOf(err: unknown): ErrorCode {
  return err instanceof LadderError ? err.code : 'ERR_DIAL';
}

/** RFC 1928 §6 reply code for a failed dial. */
export function socksReplyFor(err: unknown): number {
  return translationOf(err).socks;
}

/** HTTP status for a failed dial: 504 for a timeout, 403 for a refused destination, else 502. */
export function httpStatusFor(err: unknown): number {
  return translationOf(err).http;
}

function hostPort(t: Target): string {
  return t.host.includes(':') ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
}

/**
 * A sentence for the person behind the local application, e.g. "connection refused by
 * 127.0.0.1:9 (ERR_DIAL_REFUSED)". It names the destination, so it goes to that application only,
 * never to a log.
 */
export function describeDialFailure(err: unknown, target: Target): string {
  const t = translationOf(err);
  const code = codeOf(err);
  const detail = t === OTHER && err instanceof Error ? `: ${err.message}` : '';
  return `${t.say(hostPort(target), target.host)}${detail} (${code})`;
}
