/**
 * IP addresses as numbers, for rule matching: IPv4 as an unsigned 32-bit number, IPv6 as a bigint.
 * CIDR parsing with messages that name the mistake. Pure: no I/O.
 * @module
 */
import { isIPv4, isIPv6 } from 'node:net';

/** A parsed CIDR: the first and last address of the block. */
export type Cidr =
  | { readonly family: 4; readonly first: number; readonly last: number }
  | { readonly family: 6; readonly first: bigint; readonly last: bigint };

/** `a.b.c.d` → 0..2^32-1 (the caller has checked isIPv4). */
export function ipv4ToNumber(ip: string): number {
  let n = 0;
  let part = 0;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    if (c === 46) {
      n = n * 256 + part;
      part = 0;
    } else part = part * 10 + (c - 48);
  }
  return n * 256 + part;
}

/** An IPv6 literal (no zone) → 128-bit bigint; IPv4-mapped tails (`::ffff:1.2.3.4`) included. */
export function ipv6ToBigInt(ip: string): bigint {
  let text = ip;
  const lastColon = text.lastIndexOf(':');
  if (text.includes('.', lastColon)) {
    // An IPv4 tail is the last two groups, written in dotted form.
    const v4 = ipv4ToNumber(text.slice(lastColon + 1));
    text = `${text.slice(0, lastColon + 1)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const halves = text.split('::');
  const head = halves[0] ? halves[0].split(':') : [];
  const rest = halves.length > 1 && halves[1] ? halves[1].split(':') : [];
  const groups: number[] = head.map((h) => parseInt(h, 16));
  if (halves.length > 1) for (let i = head.length + rest.length; i < 8; i++) groups.push(0);
  for (const r of rest) groups.push(parseInt(r, 16));
  let n = 0n;
  for (let i = 0; i < 8; i++) n = (n << 16n) | BigInt(groups[i] ?? 0);
  return n;
}

/** The IPv4 address inside an IPv4-mapped IPv6 address, or undefined. */
export function mappedIpv4(ip: string): string | undefined {
  if (!isIPv6(ip)) return undefined;
  const n = ipv6ToBigInt(ip);
  if (n >> 32n !== 0xffffn) return undefined;
  const v = Number(n & 0xffffffffn);
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/**
 * Parses `addr/len`. Returns the block or a sentence saying what is wrong (never throws), so the
 * rule parser can put it next to the file and line.
 */
export function parseCidr(text: string): Cidr | string {
  const slash = text.indexOf('/');
  const addr = slash < 0 ? text : text.slice(0, slash);
  const lenText = slash < 0 ? undefined : text.slice(slash + 1);
  const v4 = isIPv4(addr);
  if (!v4 && !isIPv6(addr))
    return `'${addr.slice(0, 60)}' is not an IPv4 or IPv6 address (write e.g. 10.0.0.0/8 or fd00::/8)`;
  const max = v4 ? 32 : 128;
  let len = max;
  if (lenText !== undefined) {
    if (!/^[0-9]{1,3}$/.test(lenText) || Number(lenText) > max)
      return `the prefix length '/${lenText.slice(0, 10)}' must be 0 to ${max}`;
    len = Number(lenText);
  }
  if (v4) {
    const a = ipv4ToNumber(addr);
    const size = 2 ** (32 - len);
    const first = a - (a % size);
    return { family: 4, first, last: first + size - 1 };
  }
  const a = ipv6ToBigInt(addr);
  const hostBits = BigInt(128 - len);
  const first = (a >> hostBits) << hostBits;
  return { family: 6, first, last: first | ((1n << hostBits) - 1n) };
}

/**
 * Blocks with a rule index each, flattened into sorted disjoint intervals that carry the lowest
 * index of the blocks covering them: one binary search finds the first matching rule. CIDR blocks
 * either nest or are disjoint, so a stack sweep builds it in O(n log n).
 */
export class IntervalTable<N extends number | bigint> {
  readonly #starts: N[];
  readonly #values: Int32Array;

  constructor(blocks: readonly { first: N; last: N; index: number }[], one: N) {
    const sorted = [...blocks].sort((a, b) =>
      a.first < b.first
        ? -1
        : a.first > b.first
          ? 1
          : a.last > b.last
            ? -1
            : a.last < b.last
              ? 1
              : 0,
    );
    const starts: N[] = [];
    const values: number[] = [];
    const emit = (at: N, value: number): void => {
      if (starts.length > 0 && starts[starts.length - 1] === at) values[values.length - 1] = value;
      else {
        starts.push(at);
        values.push(value);
      }
    };
    const stack: { last: N; value: number }[] = [];
    const pop = (): void => {
      const top = stack.pop()!;
      emit(((top.last as number) + (one as number)) as N, stack[stack.length - 1]?.value ?? -1);
    };
    for (const b of sorted) {
      while (stack.length > 0 && stack[stack.length - 1]!.last < b.first) pop();
      const under = stack[stack.length - 1]?.value ?? -1;
      const value = under === -1 ? b.index : Math.min(under, b.index);
      stack.push({ last: b.last, value });
      emit(b.first, value);
    }
    while (stack.length > 0) pop();
    this.#starts = starts;
    this.#values = Int32Array.from(values);
  }

  /** The lowest rule index whose block holds `x`, or -1. */
  lookup(x: N): number {
    const s = this.#starts;
    let lo = 0;
    let hi = s.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (s[mid]! <= x) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found < 0 ? -1 : this.#values[found]!;
  }

  get size(): number {
    return this.#starts.length;
  }
}
