/**
 * Clash-style routing rules: a parser for the classic one-rule-a-line form and a matcher that finds
 * the first matching rule without scanning the list.
 *
 * ```
 * line     = TYPE "," VALUE "," ACTION [ "," "no-resolve" ] | "MATCH" "," ACTION   ; "#" starts a comment
 * TYPE     = DOMAIN | DOMAIN-SUFFIX | DOMAIN-KEYWORD | DOMAIN-REGEX | IP-CIDR | IP-CIDR6 | GEOIP
 *          | DST-PORT | NETWORK | RULE-SET
 * ACTION   = DIRECT | PROXY | REJECT | <the #name of a transport of the ladder:// key>
 * ```
 * First match wins, as in Clash: each rule keeps its line's index, and every structure answers "the
 * lowest index that matches" (a hash of domain suffixes walked label by label, sorted intervals for
 * CIDRs, a table of ports), so a decision costs a few hash lookups and a binary search whatever the
 * number of rules. The parser and matcher are pure: files are read through the `readFile` given.
 * docs/routing.md has the grammar, the rule-set formats and the regex restrictions.
 * @module
 */
import { isIP } from 'node:net';
import { ConfigError } from '../errors.js';
import { IntervalTable, parseCidr, ipv4ToNumber, ipv6ToBigInt, mappedIpv4 } from './ip.js';

export type RouteAction =
  | { readonly kind: 'direct' }
  | { readonly kind: 'reject' }
  /** `transport` is the name of a transport of a ladder:// key; absent: the key's failover. */
  | { readonly kind: 'proxy'; readonly transport?: string };

export interface Rule {
  readonly index: number;
  /** "rules.txt:12" */
  readonly where: string;
  /** The rule as written (for --log-connections and messages). */
  readonly text: string;
  readonly action: RouteAction;
}

/** What one connection offers the matcher. */
export interface RouteQuery {
  /** A domain name or an IP literal. */
  readonly host: string;
  readonly port: number;
  readonly network: 'tcp' | 'udp';
  /**
   * An address the name resolved to (only when `host` is a name); null when it could not be
   * resolved, so that address rules are passed over.
   */
  readonly ip?: string | null;
}

/** The files a rule file may name, read by the caller (cli/ reads the disk, tests give a map). */
export interface RuleFiles {
  /** The text of `path`, resolved against the file that names it; throws if it cannot be read. */
  read(path: string, from: string): { text: string; name: string };
}

export interface RuleParseOptions {
  /** Names of the ladder:// key's transports that a rule may use as its action. */
  readonly transports?: ReadonlySet<string>;
}

/** Types this parser knows. */
export const RULE_TYPES = [
  'DOMAIN',
  'DOMAIN-SUFFIX',
  'DOMAIN-KEYWORD',
  'DOMAIN-REGEX',
  'IP-CIDR',
  'IP-CIDR6',
  'GEOIP',
  'DST-PORT',
  'NETWORK',
  'RULE-SET',
  'MATCH',
] as const;

const KNOWN_TYPES: ReadonlySet<string> = new Set(RULE_TYPES);

/** Clash types Ladder does not implement, named as such in the error. */
const UNSUPPORTED = new Set([
  'SRC-IP-CIDR',
  'SRC-PORT',
  'IP-ASN',
  'SRC-GEOIP',
  'PROCESS-NAME',
  'PROCESS-PATH',
  'GEOSITE',
  'AND',
  'OR',
  'NOT',
  'IN-PORT',
  'IN-TYPE',
  'UID',
  'DSCP',
  'SUB-RULE',
  'DOMAIN-WILDCARD',
  'IP-SUFFIX',
  'SRC-IP-SUFFIX',
  'SRC-IP-ASN',
  'PROCESS-NAME-REGEX',
  'PROCESS-PATH-REGEX',
  'PROCESS-NAME-WILDCARD',
  'PROCESS-PATH-WILDCARD',
  'IN-USER',
  'IN-NAME',
  'USER-AGENT',
  'URL-REGEX',
  'SCRIPT',
]);

/** Clash and mihomo actions Ladder does not have, with what to write instead. */
const UNSUPPORTED_ACTIONS: Readonly<Record<string, string>> = {
  'REJECT-DROP': 'REJECT (Ladder refuses at once; it never holds a connection open)',
  'REJECT-TINYGIF': 'REJECT',
  'REJECT-NO-DROP': 'REJECT',
  PASS: 'the action of the rule the connection should meet next',
  COMPATIBLE: 'DIRECT or PROXY',
  GLOBAL: 'PROXY',
};

/** Longest DOMAIN-REGEX source accepted. */
const MAX_REGEX_CHARS = 512;
/** Most unbounded quantifiers (`*`, `+`, `{n,}`) in one DOMAIN-REGEX: backtracking stays polynomial of low degree. */
const MAX_UNBOUNDED_QUANTIFIERS = 3;
/** Longest name matched against regexes and keywords (DNS names are at most 253 characters). */
const MAX_NAME_CHARS = 253;
/**
 * Most ways a DOMAIN-REGEX may try to match a name when it backtracks: for a name of n characters,
 * n start positions unless it starts with `^`, times n^k/k! splits for k unbounded quantifiers,
 * times m-n+1 for each `{n,m}` and 2 for each `?`. The limit, n³/2, admits three unbounded
 * quantifiers anchored, or two not, and refuses bounded ones that add up to more (`a{0,60}` four
 * times, `a?` thirty times).
 */
const MAX_WAYS = (MAX_NAME_CHARS + 1) ** 3 / 2;
/** The private and special-use ranges that `GEOIP,LAN` stands for (RFC 1918, 6598, 3927, 4193, …). */
export const LAN_CIDRS = [
  '0.0.0.0/8',
  '10.0.0.0/8',
  '100.64.0.0/10',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.168.0.0/16',
  '224.0.0.0/4',
  '240.0.0.0/4',
  '::1/128',
  'fc00::/7',
  'fe80::/10',
  'ff00::/8',
] as const;

/**
 * Why a DOMAIN-REGEX source could backtrack badly, or undefined if it is acceptable. V8's regex
 * engine backtracks, and a name is attacker-chosen (any web page can make the browser ask for one),
 * so a regex is accepted only in a form whose worst case is small: no backreferences or lookaround,
 * no repeating quantifier applied to a group that itself holds a quantifier or an alternation (the
 * `(a+)+` and `(a|a)*` families; `?` may apply, as it takes the group once at most), at most
 * MAX_UNBOUNDED_QUANTIFIERS unbounded quantifiers and MAX_WAYS ways for all quantifiers together,
 * and names longer than MAX_NAME_CHARS are never matched.
 */
export function regexProblem(source: string): string | undefined {
  if (source.length > MAX_REGEX_CHARS) return `longer than ${MAX_REGEX_CHARS} characters`;
  try {
    new RegExp(source);
  } catch (err) {
    return `not a valid regular expression (${(err as Error).message})`;
  }
  // Per open group: does it contain a quantifier or an alternation?
  const groups: { risky: boolean }[] = [];
  let unbounded = 0;
  const n = MAX_NAME_CHARS + 1;
  let ways = source.startsWith('^') ? 1 : n; // see MAX_WAYS
  let lastGroupRisky = false; // the thing just closed was a risky group
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i]!;
    if (c === '\\') {
      const n = source[i + 1] ?? '';
      if (!inClass && /[1-9k]/.test(n)) return 'backreferences are not allowed';
      i++;
      lastGroupRisky = false;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      continue;
    }
    if (c === '[') {
      inClass = true;
      lastGroupRisky = false;
      continue;
    }
    if (c === '(') {
      if (
        source.startsWith('(?=', i) ||
        source.startsWith('(?!', i) ||
        source.startsWith('(?<=', i) ||
        source.startsWith('(?<!', i)
      )
        return 'lookahead and lookbehind are not allowed';
      groups.push({ risky: false });
      lastGroupRisky = false;
      continue;
    }
    if (c === ')') {
      const g = groups.pop();
      lastGroupRisky = g?.risky ?? false;
      if (g?.risky && groups.length > 0) groups[groups.length - 1]!.risky = true;
      continue;
    }
    if (c === '|') {
      if (groups.length > 0) groups[groups.length - 1]!.risky = true;
      lastGroupRisky = false;
      continue;
    }
    const quantifier =
      c === '*' || c === '+' || c === '?' || (c === '{' && /^\{\d+(,\d*)?\}/.test(source.slice(i)));
    if (quantifier) {
      // `?` takes a group at most once: a factor of two, not a nesting ((www\.)?, ([a-z]+\.)?).
      if (lastGroupRisky && c !== '?')
        return 'a quantifier applies to a group that holds a quantifier or an alternation (nested quantifiers can backtrack without end); rewrite it without the outer quantifier';
      let unboundedHere = c === '*' || c === '+';
      let choices = 2; // `?`: there or not
      if (c === '{') {
        const m = /^\{(\d+)(,(\d*))?\}/.exec(source.slice(i))!;
        unboundedHere = m[2] !== undefined && m[3] === '';
        const hi = m[2] === undefined ? Number(m[1]) : Number(m[3]);
        choices = Math.min(hi - Number(m[1]) + 1, n);
        i += m[0].length - 1;
      }
      if (unboundedHere && ++unbounded > MAX_UNBOUNDED_QUANTIFIERS)
        return `more than ${MAX_UNBOUNDED_QUANTIFIERS} unbounded quantifiers (* + {n,})`;
      ways *= unboundedHere ? n / unbounded : choices;
      if (ways > MAX_WAYS)
        return `its quantifiers together may try too many ways to match a name (at most three unbounded quantifiers' worth when the regex starts with ^, two otherwise; each {n,m} counts as m-n+1 ways, each ? as 2): anchor it with ^, or use fewer or narrower quantifiers`;
      if (groups.length > 0) groups[groups.length - 1]!.risky = true;
      if (source[i + 1] === '?') i++; // lazy form
      lastGroupRisky = false;
      continue;
    }
    lastGroupRisky = false;
  }
  return undefined;
}

function normalizeName(name: string): string {
  const n = name.toLowerCase();
  return n.endsWith('.') ? n.slice(0, -1) : n;
}

function domainProblem(d: string): string | undefined {
  if (d.length === 0) return 'the domain is empty';
  if (d.length > MAX_NAME_CHARS) return `the domain is longer than ${MAX_NAME_CHARS} characters`;
  const shown = d.slice(0, 60);
  if (d.startsWith('+.') || d.startsWith('.'))
    return `'${shown}': a leading '+.' or '.' belongs to rule-set entries; write DOMAIN-SUFFIX,${d.replace(/^\+?\./, '')} (it matches the name and every name below it)`;
  if (d.includes('*'))
    return `'${shown}': '*' is a wildcard only as the first label of a rule-set entry (*.example.com); write DOMAIN-SUFFIX with the name after it`;
  const bare = d.replace(/^\[|\]$/g, '');
  const family = d.includes(':') || /^[\d.]+$/.test(d) ? isIP(bare) : 0;
  if (family !== 0)
    return `'${shown}' is an address, not a name: write IP-CIDR,${bare}/${family === 4 ? 32 : 128}`;
  if (/[\s,/\\]/.test(d) || d.includes('..')) return `'${shown}' is not a domain name`;
  return undefined;
}

/** Sets a map entry only if absent: entries arrive in rule order, so the first is the lowest. */
function putFirst<K>(m: Map<K, number>, k: K, index: number): void {
  if (!m.has(k)) m.set(k, index);
}

/** A sing-box rule whose destinations count only on some ports or one network. */
interface Conditional {
  readonly index: number;
  /** 1 for each port the rule applies to; undefined: every port. */
  readonly ports: Uint8Array | undefined;
  readonly tcp: boolean;
  readonly udp: boolean;
  /** The rule's destination fields (matching at index 0); undefined: every destination. */
  readonly destination: RuleTable | undefined;
}

/** Where each kind of rule is indexed while parsing; compiled into a RuleTable at the end. */
class Builder {
  readonly exact = new Map<string, number>();
  readonly suffix = new Map<string, number>();
  readonly subdomains = new Map<string, number>(); // ".x": strict subdomains only
  readonly oneLabel = new Map<string, number>(); // "*.x": exactly one label before x
  readonly keywords: { word: string; index: number }[] = [];
  readonly regexes: { re: RegExp; index: number }[] = [];
  readonly v4: { first: number; last: number; index: number }[] = [];
  readonly v6: { first: bigint; last: bigint; index: number }[] = [];
  /** CIDR and GEOIP rules written with no-resolve: they apply only to connections to an address. */
  readonly v4Literal: { first: number; last: number; index: number }[] = [];
  readonly v6Literal: { first: bigint; last: bigint; index: number }[] = [];
  readonly geoip = new Map<string, number>();
  readonly geoipLiteral = new Map<string, number>();
  readonly ports = new Int32Array(65536).fill(-1);
  readonly network = { tcp: -1, udp: -1 };
  /** sing-box rules with port or network conditions, in rule order. */
  readonly conditional: Conditional[] = [];
  matchAll = -1;
  /** The lowest index of a rule that needs an address for a name (CIDR or GEOIP, resolving). */
  firstResolving = Infinity;
  rules: Rule[] = [];
}

type Fail = (why: string) => never;

function addCidr(b: Builder, value: string, index: number, noResolve: boolean, fail: Fail): void {
  const c = parseCidr(value);
  if (typeof c === 'string') fail(c);
  if (c.family === 4)
    (noResolve ? b.v4Literal : b.v4).push({ first: c.first, last: c.last, index });
  else (noResolve ? b.v6Literal : b.v6).push({ first: c.first, last: c.last, index });
  if (!noResolve) b.firstResolving = Math.min(b.firstResolving, index);
}

function addPorts(b: Builder, value: string, index: number, fail: Fail): void {
  for (const part of value.split('/')) {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(part.trim());
    const lo = m ? Number(m[1]) : NaN;
    const hi = m?.[2] !== undefined ? Number(m[2]) : lo;
    if (!m || lo > 65535 || hi > 65535 || hi < lo)
      fail(`'${part.slice(0, 20)}' is not a port or range (write e.g. 443, 8000-8999 or 80/443)`);
    for (let p = lo; p <= hi; p++) if (b.ports[p] === -1) b.ports[p] = index;
  }
}

/** One rule of a known type with its value (from a rule line, or a classical rule-set entry). */
function addTyped(
  b: Builder,
  type: string,
  value: string,
  index: number,
  noResolve: boolean,
  fail: Fail,
): void {
  switch (type) {
    case 'DOMAIN':
    case 'DOMAIN-SUFFIX': {
      const d = normalizeName(value);
      const p = domainProblem(d);
      if (p) fail(p);
      putFirst(type === 'DOMAIN' ? b.exact : b.suffix, d, index);
      return;
    }
    case 'DOMAIN-KEYWORD':
      if (value.length === 0) fail('the keyword is empty');
      b.keywords.push({ word: value.toLowerCase(), index });
      return;
    case 'DOMAIN-REGEX': {
      const p = regexProblem(value);
      if (p) fail(`the regex ${p}`);
      b.regexes.push({ re: new RegExp(value, 'i'), index });
      return;
    }
    case 'IP-CIDR':
    case 'IP-CIDR6':
      addCidr(b, value, index, noResolve, fail);
      return;
    case 'GEOIP': {
      const cc = value.toUpperCase();
      if (cc === 'LAN') {
        for (const c of LAN_CIDRS) addCidr(b, c, index, noResolve, fail);
        return;
      }
      if (!/^[A-Z]{2}$/.test(cc))
        fail(`'${value.slice(0, 20)}' is not a two-letter country code (ISO 3166, e.g. CN) or LAN`);
      putFirst(noResolve ? b.geoipLiteral : b.geoip, cc, index);
      if (!noResolve) b.firstResolving = Math.min(b.firstResolving, index);
      return;
    }
    case 'DST-PORT':
      addPorts(b, value, index, fail);
      return;
    case 'NETWORK': {
      const n = value.toLowerCase();
      if (n !== 'tcp' && n !== 'udp')
        fail(`the network '${value.slice(0, 20)}' must be tcp or udp`);
      if (b.network[n] === -1) b.network[n] = index;
      return;
    }
    default:
      if (UNSUPPORTED.has(type))
        fail(
          `the rule type ${type} is not supported by Ladder (supported: ${RULE_TYPES.join(', ')})`,
        );
      fail(`unknown rule type '${type.slice(0, 30)}' (supported: ${RULE_TYPES.join(', ')})`);
  }
}

/** A Clash "domain" behaviour entry: `+.x` (x and below), `.x` (below x), `*.x` (one label), `x`. */
function addDomainEntry(b: Builder, entry: string, index: number, fail: Fail): void {
  let d = normalizeName(entry);
  let map = b.exact;
  if (d.startsWith('+.')) {
    map = b.suffix;
    d = d.slice(2);
  } else if (d.startsWith('*.')) {
    map = b.oneLabel;
    d = d.slice(2);
  } else if (d.startsWith('.')) {
    map = b.subdomains;
    d = d.slice(1);
  }
  if (d.includes('*'))
    fail(`'${entry.slice(0, 60)}': a '*' is allowed only as the first label (*.example.com)`);
  const p = domainProblem(d);
  if (p) fail(p);
  putFirst(map, d, index);
}

/** One entry of a text or YAML rule set: classical (has a comma), a CIDR, or a domain. */
function addRuleSetEntry(
  b: Builder,
  entry: string,
  index: number,
  noResolve: boolean,
  fail: Fail,
): void {
  const comma = entry.indexOf(',');
  if (comma >= 0) {
    const parts = entry.split(',').map((s) => s.trim());
    const type = parts[0]!.toUpperCase();
    if (type === 'RULE-SET' || type === 'MATCH') fail(`${type} is not allowed inside a rule set`);
    if (type === 'DOMAIN-REGEX') {
      // The regex may hold commas ({1,3}): it is everything after the type.
      addTyped(b, type, entry.slice(comma + 1).trim(), index, noResolve, fail);
      return;
    }
    const extra = parts.slice(2);
    if (extra.some((x) => x !== 'no-resolve'))
      fail(`a rule-set entry is TYPE,VALUE[,no-resolve]; the action comes from the RULE-SET line`);
    addTyped(b, type, parts[1] ?? '', index, noResolve || extra.includes('no-resolve'), fail);
    return;
  }
  if (isIP(entry.split('/')[0]!) !== 0) addCidr(b, entry, index, noResolve, fail);
  else addDomainEntry(b, entry, index, fail);
}

/** sing-box headless-rule fields of the destination group: any one matching is enough (an OR). */
const SING_BOX_DESTINATION = [
  'domain',
  'domain_suffix',
  'domain_keyword',
  'domain_regex',
  'ip_cidr',
] as const;
/** The other fields read; each group given must match too (an AND with the destination group). */
const SING_BOX_CONDITIONS = ['port', 'port_range', 'network'] as const;
const SING_BOX_FIELDS: ReadonlySet<string> = new Set([
  ...SING_BOX_DESTINATION,
  ...SING_BOX_CONDITIONS,
]);

/** Ports of a sing-box `port` list and `port_range` ("1000:2000", ":99", "8000:") as a table. */
function singBoxPorts(
  ports: readonly unknown[],
  ranges: readonly string[],
  fail: Fail,
): Uint8Array {
  const table = new Uint8Array(65536);
  for (const p of ports) {
    if (typeof p !== 'number' || !Number.isInteger(p) || p < 0 || p > 65535)
      fail(`port: '${String(p).slice(0, 20)}' is not a port number (0 to 65535)`);
    table[p] = 1;
  }
  for (const r of ranges) {
    const m = /^(\d{0,5}):(\d{0,5})$/.exec(r);
    const lo = m?.[1] ? Number(m[1]) : 0;
    const hi = m?.[2] ? Number(m[2]) : 65535;
    if (!m || (m[1] === '' && m[2] === '') || hi > 65535 || hi < lo)
      fail(
        `port_range: '${r.slice(0, 20)}' is not a range (write e.g. "1000:2000", ":99" or "8000:")`,
      );
    table.fill(1, lo, hi + 1);
  }
  return table;
}

/**
 * A sing-box rule-set source (JSON, versions 1 to 3): `{"version": 2, "rules": [{...}, ...]}`.
 * As in sing-box, a rule matches when one of its destination fields matches (or it has none) and
 * its port and network fields, where given, match too.
 */
function addSingBox(
  b: Builder,
  text: string,
  index: number,
  noResolve: boolean,
  failAt: (line: number, why: string) => never,
): void {
  let doc: unknown;
  try {
    doc = JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (err) {
    failAt(0, `not valid JSON (${(err as Error).message})`);
  }
  const version = (doc as { version?: unknown } | null)?.version;
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 1)
    failAt(
      0,
      'a sing-box rule-set source starts with its "version" (1, 2 or 3), e.g. {"version": 2, "rules": [...]}',
    );
  const rules = (doc as { rules?: unknown } | null)?.rules;
  if (!Array.isArray(rules)) failAt(0, 'a sing-box rule-set source has a "rules" array');
  rules.forEach((r: unknown, i) => {
    const fail: Fail = (why) => failAt(0, `rules[${i}]: ${why}`);
    if (typeof r !== 'object' || r === null || Array.isArray(r)) fail('not an object');
    const o = r as Record<string, unknown>;
    if (o['type'] === 'logical')
      fail(
        'logical rules (type "logical") are not supported; write each of its rules as a rule of its own',
      );
    if (o['invert'] !== undefined) fail('"invert" is not supported; route the other names instead');
    const fields = Object.keys(o).filter((f) => !(f === 'type' && o[f] === 'default'));
    const unknown = fields.filter((f) => !SING_BOX_FIELDS.has(f));
    if (unknown.length > 0)
      fail(
        `the field ${unknown[0]!.slice(0, 30)} is not supported (Ladder reads ${[...SING_BOX_FIELDS].join(', ')})`,
      );
    if (fields.length === 0) fail('the rule has no field');
    const list = (f: string): unknown[] => {
      const v = o[f];
      if (v === undefined) return [];
      return Array.isArray(v) ? v : [v];
    };
    const strings = (f: string): string[] => {
      const a = list(f);
      if (a.some((x) => typeof x !== 'string')) fail(`${f} must be a string or a list of strings`);
      return a as string[];
    };
    const conditional = SING_BOX_CONDITIONS.some((f) => o[f] !== undefined);
    // A rule with port or network fields matches its destinations in a table of its own.
    const into = conditional ? new Builder() : b;
    const at = conditional ? 0 : index;
    for (const d of strings('domain')) addTyped(into, 'DOMAIN', d, at, false, fail);
    for (const d of strings('domain_suffix')) {
      // sing-box: a leading dot matches subdomains only; otherwise the name and its subdomains.
      if (d.startsWith('.')) addDomainEntry(into, d, at, fail);
      else addTyped(into, 'DOMAIN-SUFFIX', d, at, false, fail);
    }
    for (const d of strings('domain_keyword')) addTyped(into, 'DOMAIN-KEYWORD', d, at, false, fail);
    for (const d of strings('domain_regex')) addTyped(into, 'DOMAIN-REGEX', d, at, false, fail);
    for (const c of strings('ip_cidr')) addCidr(into, c, at, noResolve, fail);
    if (!conditional) return;
    const networks = strings('network').map((n) => n.toLowerCase());
    if (networks.some((n) => n !== 'tcp' && n !== 'udp')) fail('network must be "tcp" or "udp"');
    const hasDestination = SING_BOX_DESTINATION.some((f) => o[f] !== undefined);
    const hasPorts = o['port'] !== undefined || o['port_range'] !== undefined;
    const sub = hasDestination ? new RuleTable(into) : undefined;
    b.conditional.push({
      index,
      ports: hasPorts ? singBoxPorts(list('port'), strings('port_range'), fail) : undefined,
      tcp: networks.length === 0 || networks.includes('tcp'),
      udp: networks.length === 0 || networks.includes('udp'),
      destination: sub,
    });
  });
}

/** A Clash rule provider's text: one entry a line, or YAML `payload:` followed by `- entry` lines. */
function addProviderText(
  b: Builder,
  text: string,
  index: number,
  noResolve: boolean,
  failAt: (line: number, why: string) => never,
): void {
  const lines = text.split(/\r?\n/);
  let yaml: boolean | undefined;
  lines.forEach((raw, i) => {
    const fail: Fail = (why) => failAt(i + 1, why);
    const line = raw.replace(/(^|\s)#.*$/, '').trim();
    if (line.length === 0) return;
    if (yaml === undefined) {
      if (line === '---') return; // a YAML document marker
      const flow = /^payload:\s*(.+)$/.exec(line);
      if (flow) {
        if (flow[1] === '[]') {
          yaml = true;
          return;
        }
        fail(
          `write the payload as a block list: 'payload:' alone on its line, then one '- entry' a line`,
        );
      }
      yaml = line === 'payload:';
      if (yaml) return;
    }
    let entry = line;
    if (yaml) {
      if (!entry.startsWith('-'))
        fail(`a YAML rule provider lists entries as '- entry' after 'payload:'`);
      entry = entry.slice(1).trim();
      if (/^(['"]).*\1$/.test(entry)) entry = entry.slice(1, -1).trim();
    }
    addRuleSetEntry(b, entry, index, noResolve, fail);
  });
}

function parseAction(text: string, o: RuleParseOptions, fail: Fail): RouteAction {
  if (text === 'DIRECT') return { kind: 'direct' };
  if (text === 'REJECT') return { kind: 'reject' };
  if (text === 'PROXY') return { kind: 'proxy' };
  if (o.transports?.has(text)) return { kind: 'proxy', transport: text };
  const upper = text.toUpperCase();
  if (upper === 'DIRECT' || upper === 'PROXY' || upper === 'REJECT')
    fail(`the action '${text}' is written in capitals: ${upper}`);
  const instead = UNSUPPORTED_ACTIONS[upper];
  if (instead !== undefined)
    fail(`the action ${upper} is not supported by Ladder: write ${instead}`);
  const names =
    o.transports && o.transports.size > 0
      ? `, or a transport of the key: ${[...o.transports].join(', ')}`
      : '';
  if (text === '') fail(`the rule has no action (DIRECT, PROXY or REJECT${names})`);
  fail(
    `unknown action or transport name '${text.slice(0, 40)}': write DIRECT, PROXY or REJECT${names} (Clash proxy-group names are not read: a rule file from Clash needs its group names replaced)`,
  );
}

/**
 * Parses a rule file. Throws a ConfigError ('ERR_RULES') naming the file, the line, the rule and
 * what is wrong; a rule set's bad entry is named by the rule set's file and line too.
 */
export function parseRules(
  text: string,
  file: string,
  files: RuleFiles,
  options: RuleParseOptions = {},
): RuleTable {
  const b = new Builder();
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const line = raw.replace(/(^|\s)#.*$/, '').trim();
    if (line.length === 0) return;
    const where = `${file}:${i + 1}`;
    const shown = line.length > 120 ? `${line.slice(0, 117)}...` : line;
    const fail: Fail = (why) => {
      throw new ConfigError('ERR_RULES', `${where}: '${shown}': ${why}`);
    };
    const parts = line.split(',').map((s) => s.trim());
    const type = parts[0]!.toUpperCase();
    const index = b.rules.length;
    if (b.matchAll !== -1)
      fail(
        `a rule after MATCH (on line ${b.rules[b.matchAll]!.where.split(':').pop()}) never matches; move MATCH to the end`,
      );
    if (type === 'MATCH' || type === 'FINAL') {
      if (parts.length !== 2) fail('MATCH takes only an action: MATCH,PROXY');
      const action = parseAction(parts[1]!, options, fail);
      b.matchAll = index;
      b.rules.push({ index, where, text: line, action });
      return;
    }
    if (!KNOWN_TYPES.has(type)) addTyped(b, type, '', index, false, fail); // names the type
    if (type === 'DOMAIN-REGEX' && parts.length > 3) {
      // A regex may hold commas ({1,3}): the action is the last field (before a no-resolve).
      const raw = line.split(',');
      if (raw[raw.length - 1]!.trim() === 'no-resolve') raw.pop();
      parts.splice(1, parts.length, raw.slice(1, -1).join(',').trim(), raw[raw.length - 1]!.trim());
    }
    if (parts.length < 3)
      fail(`a rule is TYPE,VALUE,ACTION (e.g. DOMAIN-SUFFIX,example.com,DIRECT)`);
    if (parts[2] === 'no-resolve' && parts.length === 4)
      fail(`no-resolve goes after the action: ${type},${parts[1]!},${parts[3]!},no-resolve`);
    const extra = parts.slice(3);
    if (extra.some((x) => x !== 'no-resolve'))
      fail(
        `'${extra.find((x) => x !== 'no-resolve')!.slice(0, 30)}' after the action: only no-resolve may follow it`,
      );
    const noResolve = extra.includes('no-resolve');
    const action = parseAction(parts[2]!, options, fail);
    if (type === 'RULE-SET') {
      let set: { text: string; name: string };
      try {
        set = files.read(parts[1]!, file);
      } catch (err) {
        fail(
          `the rule-set file cannot be read (${(err as Error).message}); give a path relative to ${file} or an absolute one`,
        );
      }
      const failAt = (setLine: number, why: string): never => {
        throw new ConfigError(
          'ERR_RULES',
          `${where}: '${shown}': ${set.name}${setLine > 0 ? `:${setLine}` : ''}: ${why}`,
        );
      };
      if (/\.json$/i.test(set.name) || /^\s*\{/.test(set.text))
        addSingBox(b, set.text, index, noResolve, failAt);
      else addProviderText(b, set.text, index, noResolve, failAt);
    } else addTyped(b, type, parts[1]!, index, noResolve, fail);
    b.rules.push({ index, where, text: line, action });
  });
  return new RuleTable(b);
}

/** The result of matching: a rule, none, or "resolve the name first". */
export const NEEDS_ADDRESS = -2;

/** A parsed rule file, ready to match connections. */
export class RuleTable {
  readonly rules: readonly Rule[];
  /** True if a GEOIP rule other than LAN needs a country database. */
  readonly usesGeoip: boolean;
  /** True if some rule decides on an address that a name resolves to. */
  readonly resolves: boolean;
  readonly #b: Builder;
  readonly #v4: IntervalTable<number>;
  readonly #v6: IntervalTable<bigint>;
  readonly #v4Literal: IntervalTable<number>;
  readonly #v6Literal: IntervalTable<bigint>;
  #country: ((ip: string) => string | undefined) | undefined;

  constructor(b: Builder) {
    this.#b = b;
    this.rules = b.rules;
    this.usesGeoip = b.geoip.size + b.geoipLiteral.size > 0;
    this.resolves =
      b.firstResolving !== Infinity || b.conditional.some((c) => c.destination?.resolves === true);
    this.#v4 = new IntervalTable(b.v4, 1);
    this.#v6 = new IntervalTable(b.v6, 1n);
    this.#v4Literal = new IntervalTable(b.v4Literal, 1);
    this.#v6Literal = new IntervalTable(b.v6Literal, 1n);
  }

  /** Gives GEOIP rules their country lookup (an MmdbReader's `country`). */
  setCountryLookup(country: (ip: string) => string | undefined): void {
    this.#country = country;
  }

  #nameIndex(name: string, best: number): number {
    const b = this.#b;
    let i = b.exact.get(name);
    if (i !== undefined && i < best) best = i;
    // Walk the name's suffixes at label boundaries: "a.b.c", "b.c", "c".
    let from = 0;
    let first = true;
    while (from >= 0) {
      const s = from === 0 ? name : name.slice(from);
      i = b.suffix.get(s);
      if (i !== undefined && i < best) best = i;
      if (!first) {
        i = b.subdomains.get(s);
        if (i !== undefined && i < best) best = i;
      }
      if (from > 0 && name.lastIndexOf('.', from - 2) === -1 && b.oneLabel.size > 0) {
        i = b.oneLabel.get(s);
        if (i !== undefined && i < best) best = i;
      }
      first = false;
      const dot = name.indexOf('.', from);
      from = dot < 0 ? -1 : dot + 1;
    }
    if (name.length <= MAX_NAME_CHARS) {
      for (const k of b.keywords) {
        if (k.index >= best) break;
        if (name.includes(k.word)) best = k.index;
      }
      for (const r of b.regexes) {
        if (r.index >= best) break;
        if (r.re.test(name)) best = r.index;
      }
    }
    return best;
  }

  #addressIndex(ip: string, family: number, literal: boolean, best: number): number {
    const v4 = family === 4 ? ip : mappedIpv4(ip);
    let i: number;
    if (v4 !== undefined) {
      const n = ipv4ToNumber(v4);
      i = this.#v4.lookup(n);
      if (i >= 0 && i < best) best = i;
      if (literal) {
        i = this.#v4Literal.lookup(n);
        if (i >= 0 && i < best) best = i;
      }
    } else {
      const n = ipv6ToBigInt(ip);
      i = this.#v6.lookup(n);
      if (i >= 0 && i < best) best = i;
      if (literal) {
        i = this.#v6Literal.lookup(n);
        if (i >= 0 && i < best) best = i;
      }
    }
    const b = this.#b;
    if (this.usesGeoip && this.#country) {
      let cc: string | undefined;
      try {
        cc = this.#country(ip);
      } catch {
        cc = undefined; // a damaged record: no country
      }
      if (cc !== undefined) {
        const g = b.geoip.get(cc);
        if (g !== undefined && g < best) best = g;
        const gl = literal ? b.geoipLiteral.get(cc) : undefined;
        if (gl !== undefined && gl < best) best = gl;
      }
    }
    return best;
  }

  /**
   * The index of the first rule that matches `q`, -1 if none does, or NEEDS_ADDRESS when `q.host`
   * is a name, `q.ip` is not given, and a rule that needs the address comes before every rule that
   * matched without it.
   */
  match(q: RouteQuery): number {
    const b = this.#b;
    let best = b.matchAll === -1 ? Infinity : b.matchAll;
    const p = b.ports[q.port] ?? -1;
    if (p >= 0 && p < best) best = p;
    const n = b.network[q.network];
    if (n >= 0 && n < best) best = n;
    let needs = Infinity; // the lowest sing-box conditional rule that needs the name's address
    for (let k = 0; k < b.conditional.length; k++) {
      const c = b.conditional[k]!;
      if (c.index >= best) break;
      if (!(q.network === 'tcp' ? c.tcp : c.udp) || (c.ports && c.ports[q.port] !== 1)) continue;
      const m = c.destination ? c.destination.match(q) : 0;
      if (m === 0) best = c.index;
      else if (m === NEEDS_ADDRESS && c.index < needs) needs = c.index;
    }
    const family = isIP(q.host);
    if (family !== 0) best = this.#addressIndex(q.host, family, true, best);
    else {
      best = this.#nameIndex(normalizeName(q.host), best);
      if (Math.min(b.firstResolving, needs) < best) {
        if (q.ip === undefined) return NEEDS_ADDRESS;
        if (q.ip !== null) {
          const f = isIP(q.ip);
          if (f !== 0) best = this.#addressIndex(q.ip, f, false, best);
        }
      }
    }
    return best === Infinity ? -1 : best;
  }
}
