// The private-address guard's rules (special-addresses.ts) against test/vectors/special-addresses.json:
// the rows of the IANA special-purpose registries, addresses inside and just outside them, and the
// numeric spellings a resolver accepts. Cross-checked with independent parsers: Node's BlockList,
// the WHATWG URL host parser and glibc's getaddrinfo (numeric hosts only: no query leaves).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { lookup } from 'node:dns/promises';
import { BlockList } from 'node:net';
import fc from 'fast-check';
import {
  SPECIAL_IPV4,
  SPECIAL_IPV6,
  isBlockedAddress,
  parseAddress,
  parseIPv6,
  rangeOf,
} from './special-addresses.js';

interface Row {
  prefix: string;
  name: string;
  rfc: string;
  globallyReachable?: boolean;
  embedsV4?: boolean;
  extra?: boolean;
}
interface Vectors {
  source: Record<string, string>;
  registry: Row[];
  blocked: { host: string; why: string; canonical?: string }[];
  allowed: { host: string; why?: string; canonical?: string }[];
}

const V = JSON.parse(
  readFileSync(new URL('../../../test/vectors/special-addresses.json', import.meta.url), 'utf8'),
) as Vectors;

function v4Text(b: Uint8Array): string {
  return Array.from(b).join('.');
}
function v6Text(b: Uint8Array): string {
  const g: string[] = [];
  for (let i = 0; i < 16; i += 2) g.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  return g.join(':');
}

/** First and last address of a prefix, as text. */
function bounds(cidr: string): [string, string] {
  const [net, bitsText] = cidr.split('/') as [string, string];
  const bits = Number(bitsText);
  const a = parseAddress(net)!;
  const first = Uint8Array.from(a.bytes);
  const last = Uint8Array.from(a.bytes);
  for (let bit = bits; bit < first.length * 8; bit++) {
    first[bit >> 3]! &= ~(0x80 >> (bit & 7));
    last[bit >> 3]! |= 0x80 >> (bit & 7);
  }
  return a.family === 4 ? [v4Text(first), v4Text(last)] : [v6Text(first), v6Text(last)];
}

test('the vector file names its sources', () => {
  for (const k of ['ipv4', 'ipv6', 'numericForms']) assert.ok(V.source[k], k);
  assert.ok(V.registry.length >= 50);
});

test('every registry row is refused: its first and its last address', () => {
  for (const row of V.registry) {
    for (const ip of bounds(row.prefix)) {
      assert.equal(isBlockedAddress(ip), true, `${ip} in ${row.prefix} (${row.name}, ${row.rfc})`);
    }
  }
});

test('every range of the code is a row of the vector file (the table and the data agree)', () => {
  const rows = new Set(V.registry.map((r) => r.prefix));
  for (const r of [...SPECIAL_IPV4, ...SPECIAL_IPV6]) {
    const text = `${r.prefix}/${r.bits}`;
    assert.ok(rows.has(text), `${text} (${r.name}) has no row with provenance`);
  }
  // ...and every row that embeds IPv4 is an embedding form in the code.
  for (const row of V.registry.filter((r) => r.embedsV4)) {
    const [p, bits] = row.prefix.split('/') as [string, string];
    const code = SPECIAL_IPV6.find(
      (r) => r.bits === Number(bits) && v6Text(parseIPv6(r.prefix)!) === v6Text(parseIPv6(p)!),
    );
    assert.ok(code?.embedsV4, `${row.prefix} is judged by its embedded IPv4`);
  }
});

test('blocked vectors are refused, numeric spellings read as the resolver reads them', () => {
  for (const v of V.blocked) {
    assert.equal(isBlockedAddress(v.host), true, `${JSON.stringify(v.host)}: ${v.why}`);
    if (v.canonical) assert.equal(v4Text(parseAddress(v.host)!.bytes), v.canonical, v.host);
  }
});

test('allowed vectors pass, including the addresses just outside each range', () => {
  for (const v of V.allowed) {
    const a = parseAddress(v.host);
    assert.ok(a, `${v.host} parses`);
    assert.equal(rangeOf(a), null, `${v.host}${v.why ? ` (${v.why})` : ''}`);
    assert.equal(isBlockedAddress(v.host), false, v.host);
    if (v.canonical) assert.equal(v4Text(a.bytes), v.canonical, v.host);
  }
});

test('the reason names the range, embedded forms by the IPv4 range inside', () => {
  assert.equal(rangeOf(parseAddress('10.1.2.3')!)?.rfc, 'RFC 1918');
  assert.match(rangeOf(parseAddress('::ffff:127.0.0.1')!)!.name, /IPv4-mapped form of loopback/);
  assert.match(rangeOf(parseAddress('2002:a9fe:a9fe::')!)!.name, /6to4 form of link local/);
  assert.match(rangeOf(parseAddress('2001::1')!)!.name, /Teredo/);
});

test('numeric IPv4 spellings: glibc getaddrinfo gives the same address (numeric hosts, no query)', async () => {
  const numeric = [...V.blocked, ...V.allowed].filter((v) => v.canonical);
  assert.ok(numeric.length >= 10);
  for (const v of numeric) {
    const r = await lookup(v.host, { family: 4 });
    assert.equal(r.address, v.canonical, v.host);
  }
});

test('not an address: parse returns null, never throws (fuzz)', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 80 }), (s) => {
      const a = parseAddress(s);
      if (a) assert.ok(a.bytes.length === (a.family === 4 ? 4 : 16));
      assert.equal(typeof isBlockedAddress(s), 'boolean');
    }),
    { numRuns: 3000 },
  );
});

const part = (n: number, radix: 'dec' | 'oct' | 'hex'): string =>
  radix === 'dec' ? String(n) : radix === 'oct' ? `0${n.toString(8)}` : `0x${n.toString(16)}`;

test('inet_aton spellings agree with the WHATWG URL host parser (fuzz)', () => {
  const radix = fc.constantFrom<'dec' | 'oct' | 'hex'>('dec', 'oct', 'hex');
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.integer({ min: 1, max: 4 }),
      fc.array(radix, { minLength: 4, maxLength: 4 }),
      (value, parts, radixes) => {
        const bytes = [value >>> 24, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff];
        const head = bytes.slice(0, parts - 1);
        const rest = bytes.slice(parts - 1).reduce((a, b) => a * 256 + b, 0);
        const text = [...head, rest].map((n, i) => part(n, radixes[i]!)).join('.');
        const ours = parseAddress(text);
        assert.ok(ours, text);
        assert.equal(v4Text(ours.bytes), new URL(`http://${text}/`).hostname, text);
      },
    ),
    { numRuns: 2000 },
  );
});

test('IPv6 text forms agree with the WHATWG URL parser; embedded forms judge the IPv4 (fuzz)', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (b) => {
      const long = v6Text(b);
      const short = new URL(`http://[${long}]/`).hostname.slice(1, -1);
      assert.deepEqual(parseAddress(short)?.bytes, b, short);
      assert.deepEqual(parseAddress(`[${short}]`)?.bytes, b);
      assert.deepEqual(parseAddress(`${short}%eth0`)?.bytes, b);
    }),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 4, maxLength: 4 }), (b) => {
      const v4 = v4Text(b);
      const hex = (i: number): string => ((b[i]! << 8) | b[i + 1]!).toString(16);
      const want = isBlockedAddress(v4);
      assert.equal(isBlockedAddress(`::ffff:${v4}`), want, `::ffff:${v4}`);
      assert.equal(isBlockedAddress(`64:ff9b::${v4}`), want, `64:ff9b::${v4}`);
      assert.equal(isBlockedAddress(`2002:${hex(0)}:${hex(2)}::1`), want, `6to4 of ${v4}`);
    }),
    { numRuns: 2000 },
  );
});

test("IPv4 ranges agree with Node's BlockList built from the vector rows (fuzz)", () => {
  const list = new BlockList();
  for (const row of V.registry) {
    const [net, bits] = row.prefix.split('/') as [string, string];
    if (!net.includes(':')) list.addSubnet(net, Number(bits), 'ipv4');
  }
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 4, maxLength: 4 }), (b) => {
      const ip = v4Text(b);
      assert.equal(isBlockedAddress(ip), list.check(ip, 'ipv4'), ip);
    }),
    { numRuns: 5000 },
  );
});
