/**
 * The operator's access keys: what a key is, its limits, and whether it may be used right now.
 * Pure: time comes in as an argument and usage as numbers, so every rule here is tested without a
 * clock or a database (src/access/access-key.test.ts).
 *
 * A key holds one secret. It serves the transports it names, when the server offers them: raw
 * Shadowsocks with its `method`, and Trojan over TLS with the same secret as the Trojan password.
 * @module
 */
import { LadderError } from '../errors.js';
import { SS_METHOD_NAMES, isSsMethod, type SsMethod } from '../crypto/methods.js';
import { checkSsPassword, generateSsPassword } from '../codec/access-key-uri.js';

/** How long a data limit's window is: all time, the last 30 days (Outline's rule), the calendar month or day (UTC). */
export const LIMIT_PERIODS = ['total', '30d', 'month', 'day'] as const;
export type LimitPeriod = (typeof LIMIT_PERIODS)[number];

export const DAY_MS = 86_400_000;

/** The transports a key can be allowed: raw Shadowsocks, Trojan over TLS. */
export const KEY_TRANSPORTS = ['ss', 'trojan'] as const;
export type KeyTransport = (typeof KEY_TRANSPORTS)[number];

export interface DataLimit {
  /** Bytes both ways together, at most this many in one period. */
  readonly bytes: number;
  readonly period: LimitPeriod;
}

export interface AccessKeyRecord {
  /** Stable id: Outline's decimal counter ("0", "1", ...) or one the operator chose. */
  readonly id: string;
  readonly name: string;
  /** The Shadowsocks password (2022: the base64 PSK), also the Trojan password. */
  readonly secret: string;
  readonly method: SsMethod;
  /** Which of the server's transports accept this key (by default all). */
  readonly transports: readonly KeyTransport[];
  readonly createdMs: number;
  /** After this instant the key is refused; null: never. */
  readonly expiresMs: number | null;
  /** null: the server's default limit applies (when it has one). */
  readonly dataLimit: DataLimit | null;
  /** Bytes per second each way, shared by all of the key's connections; null: none. */
  readonly speedLimitBps: number | null;
  /** Client addresses with open connections at once; null: any number. */
  readonly deviceLimit: number | null;
  readonly disabled: boolean;
}

export type KeyState = 'active' | 'disabled' | 'expired' | 'over-limit';

/** Usage as the key manager keeps it: bytes per UTC day number (ms / DAY_MS). */
export type DailyUsage = ReadonlyMap<number, number>;

export function dayOf(ms: number): number {
  return Math.floor(ms / DAY_MS);
}

/** The first day (inclusive) a period counts at `nowMs`. */
export function periodStartDay(period: LimitPeriod, nowMs: number): number {
  const today = dayOf(nowMs);
  switch (period) {
    case 'total':
      return -Infinity;
    case '30d':
      return today - 29;
    case 'day':
      return today;
    case 'month': {
      const d = new Date(nowMs);
      return dayOf(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1));
    }
  }
}

/** Bytes used in the period that contains `nowMs`. */
export function usageInPeriod(
  usage: DailyUsage | undefined,
  period: LimitPeriod,
  nowMs: number,
): number {
  if (!usage) return 0;
  const from = periodStartDay(period, nowMs);
  let sum = 0;
  for (const [day, bytes] of usage) if (day >= from) sum += bytes;
  return sum;
}

/** The limit that applies to a key: its own, else the server's default, else none. */
export function effectiveLimit(
  key: AccessKeyRecord,
  serverDefault: DataLimit | null,
): DataLimit | null {
  return key.dataLimit ?? serverDefault;
}

/** Whether a key may carry traffic at `nowMs`, and if not, why. */
export function keyState(
  key: AccessKeyRecord,
  usage: DailyUsage | undefined,
  serverDefault: DataLimit | null,
  nowMs: number,
): KeyState {
  if (key.disabled) return 'disabled';
  if (key.expiresMs !== null && nowMs >= key.expiresMs) return 'expired';
  const limit = effectiveLimit(key, serverDefault);
  if (limit && usageInPeriod(usage, limit.period, nowMs) >= limit.bytes) return 'over-limit';
  return 'active';
}

// ----------------------------------------------------------------------------- validation

/**
 * A key id: what Outline allows in a path segment, kept to a safe set. `.` and `..` are refused:
 * URL resolution and file paths treat them as "this" and "parent", not as a name.
 */
export function checkKeyId(id: unknown): string {
  if (typeof id !== 'string' || !/^[A-Za-z0-9._~-]{1,64}$/.test(id))
    throw new LadderError(
      'ERR_USAGE',
      `key id ${JSON.stringify(id)} must be 1-64 letters, digits or . _ ~ -`,
    );
  if (id === '.' || id === '..')
    throw new LadderError(
      'ERR_USAGE',
      `key id ${JSON.stringify(id)} is a path step, not a name: use letters or digits too (e.g. "key.1")`,
    );
  return id;
}

export function checkName(name: unknown): string {
  if (typeof name !== 'string')
    throw new LadderError('ERR_USAGE', `a key name must be a string, got ${typeof name}`);
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  if (name.length > 100 || /[\u0000-\u001f\u007f]/.test(name))
    throw new LadderError(
      'ERR_USAGE',
      'a key name must be at most 100 characters, without control characters',
    );
  return name;
}

export function checkMethod(method: unknown): SsMethod {
  if (typeof method !== 'string' || !isSsMethod(method))
    throw new LadderError(
      'ERR_UNKNOWN_METHOD',
      `unknown method ${JSON.stringify(method)}; use one of ${SS_METHOD_NAMES.join(', ')}`,
    );
  return method;
}

export function checkDataLimit(limit: unknown): DataLimit {
  const l = limit as { bytes?: unknown; period?: unknown } | null;
  if (!l || typeof l !== 'object' || !Number.isSafeInteger(l.bytes) || (l.bytes as number) < 0)
    throw new LadderError('ERR_USAGE', '`limit.bytes` must be a non-negative integer');
  const period = l.period ?? '30d';
  if (typeof period !== 'string' || !(LIMIT_PERIODS as readonly string[]).includes(period))
    throw new LadderError(
      'ERR_USAGE',
      `\`limit.period\` must be one of ${LIMIT_PERIODS.join(', ')}`,
    );
  return { bytes: l.bytes as number, period: period as LimitPeriod };
}

export function checkTransports(v: unknown): KeyTransport[] {
  const list = typeof v === 'string' ? v.split(',').map((t) => t.trim()) : v;
  if (
    !Array.isArray(list) ||
    list.length === 0 ||
    !list.every((t) => (KEY_TRANSPORTS as readonly unknown[]).includes(t))
  )
    throw new LadderError(
      'ERR_USAGE',
      `transports must be a non-empty list of ${KEY_TRANSPORTS.join(', ')}`,
    );
  return [...new Set(list as KeyTransport[])];
}

export function checkPositiveOrNull(v: unknown, what: string): number | null {
  if (v === null) return null;
  if (!Number.isSafeInteger(v) || (v as number) <= 0)
    throw new LadderError('ERR_USAGE', `${what} must be a positive integer, or null for none`);
  return v as number;
}

export function checkExpiry(v: unknown): number | null {
  if (v === null) return null;
  if (!Number.isSafeInteger(v) || (v as number) <= 0)
    throw new LadderError(
      'ERR_USAGE',
      'an expiry must be a time in milliseconds since 1970 (e.g. Date.parse("2027-01-01")), or null for never',
    );
  return v as number;
}

/** A fresh secret for `method`, or the operator's own after checking it fits the method. */
export function makeSecret(
  method: SsMethod,
  given: string | undefined,
  random: (n: number) => Uint8Array,
): string {
  if (given === undefined) return generateSsPassword(method, random);
  if (given.length === 0 || given.length > 256)
    throw new LadderError('ERR_USAGE', 'a password must be 1-256 characters');
  checkSsPassword(method, given);
  return given;
}
