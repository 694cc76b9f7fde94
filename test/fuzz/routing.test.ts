/**
 * The routing parsers fed random input: a rule file, rule-set files, DOMAIN-REGEX sources and
 * .mmdb bytes either parse or throw a LadderError naming the problem, never another exception or a
 * hang; and the matcher agrees with a linear scan of the rules (first match wins).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LadderError } from '../../src/errors.js';
import { parseRules, regexProblem, type RuleFiles } from '../../src/routing/rules.js';
import { MmdbReader } from '../../src/routing/mmdb.js';
import { parseCidr, ipv4ToNumber } from '../../src/routing/ip.js';
import { writeMmdb } from '../helpers/mmdb-writer.js';

const RUNS = { numRuns: 400 };

function only(fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof LadderError)) throw err;
  }
}

const TOKENS = [
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
  'DIRECT',
  'PROXY',
  'REJECT',
  'no-resolve',
  'a.lab',
  '10.0.0.0/8',
  '::/0',
  'CN',
  'LAN',
  'tcp',
  '80-90',
  'set.list',
  'set.json',
  '(a+)+',
  ',',
  '#',
  '\n',
  ' ',
];

const files: RuleFiles = {
  read(path) {
    if (path === 'set.list') return { text: 'payload:\n - +.x.lab\n - 1.2.3.0/24\n', name: path };
    if (path === 'set.json')
      return { text: '{"version":2,"rules":[{"domain":["y.lab"],"port":[443]}]}', name: path };
    throw new Error('no such file');
  },
};

test('parseRules: random lines parse or throw ERR_RULES', () => {
  fc.assert(
    fc.property(
      fc.array(fc.oneof(fc.constantFrom(...TOKENS), fc.string({ maxLength: 12 })), {
        maxLength: 30,
      }),
      (parts) => {
        only(() => parseRules(parts.join(''), 'f', files));
      },
    ),
    RUNS,
  );
});

test('rule-set texts: random content parses or throws ERR_RULES', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 200 }), fc.boolean(), (text, json) => {
      const f: RuleFiles = { read: (p) => ({ text, name: json ? `${p}.json` : p }) };
      only(() => parseRules('RULE-SET,s,DIRECT', 'f', f));
    }),
    RUNS,
  );
});

test('sing-box sources: random rules parse or throw ERR_RULES; matching them never throws', () => {
  const value = fc.oneof(
    fc.constantFrom('a.lab', '.a.lab', '198.18.0.0/15', 'tcp', 'udp', '53', '10:20', ':9', 'x:'),
    fc.string({ maxLength: 8 }),
    fc.integer({ min: -2, max: 70_000 }),
    fc.constant(null),
  );
  const field = fc.constantFrom(
    'domain',
    'domain_suffix',
    'domain_keyword',
    'domain_regex',
    'ip_cidr',
    'port',
    'port_range',
    'network',
    'type',
    'invert',
    'process_name',
  );
  const rule = fc.dictionary(field, fc.oneof(value, fc.array(value, { maxLength: 3 })), {
    maxKeys: 4,
  });
  fc.assert(
    fc.property(
      fc.oneof(fc.constantFrom(1, 2, 3), value),
      fc.array(rule, { maxLength: 4 }),
      fc.string({ maxLength: 12 }),
      fc.integer({ min: 0, max: 65535 }),
      fc.boolean(),
      (version, rules, host, port, udp) => {
        const text = JSON.stringify({ version, rules });
        const f: RuleFiles = { read: (p) => ({ text, name: `${p}.json` }) };
        let table;
        try {
          table = parseRules('RULE-SET,s,DIRECT\nMATCH,PROXY', 'f', f);
        } catch (err) {
          if (!(err instanceof LadderError)) throw err;
          return;
        }
        const network = udp ? 'udp' : 'tcp';
        for (const h of [host, 'a.lab', '198.18.0.1'])
          for (const ip of [undefined, null, '198.18.0.1']) {
            const i = table.match({ host: h, port, network, ...(ip !== undefined ? { ip } : {}) });
            assert.ok(i === -2 || i === 0 || i === 1, `index ${i}`);
          }
      },
    ),
    RUNS,
  );
});

test('regexProblem never throws; accepted regexes match a long hostile name quickly', () => {
  fc.assert(
    fc.property(fc.stringMatching(/^[a()|*+?{}0-9,.\\[\]^$-]{0,24}$/), (src) => {
      const p = regexProblem(src);
      if (p === undefined) new RegExp(src, 'i').test(`${'a'.repeat(120)}!`);
    }),
    RUNS,
  );
});

test('the matcher agrees with a linear scan over random CIDR and domain rules', () => {
  const rule = fc.oneof(
    fc
      .tuple(
        fc.constant('IP-CIDR'),
        fc.integer({ min: 0, max: 2 ** 32 - 1 }),
        fc.integer({ min: 0, max: 32 }),
      )
      .map(
        ([t, a, l]) =>
          `${t},${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}/${l},DIRECT,no-resolve`,
      ),
    fc
      .tuple(
        fc.constantFrom('DOMAIN', 'DOMAIN-SUFFIX'),
        fc.constantFrom('a.lab', 'lab', 'b.a.lab', 'c.lab'),
      )
      .map(([t, d]) => `${t},${d},PROXY`),
  );
  fc.assert(
    fc.property(
      fc.array(rule, { minLength: 1, maxLength: 40 }),
      fc.integer({ min: 0, max: 2 ** 32 - 1 }),
      fc.constantFrom('a.lab', 'b.a.lab', 'x.c.lab', 'lab', 'z.org'),
      (rules, ip, name) => {
        const t = parseRules(rules.join('\n'), 'f', files);
        const addr = `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;
        const linear = (host: string): number =>
          rules.findIndex((r) => {
            const [type, value] = r.split(',') as [string, string];
            if (type === 'IP-CIDR') {
              if (host.includes('lab') || host.includes('org')) return false;
              const c = parseCidr(value);
              const n = ipv4ToNumber(host);
              return typeof c !== 'string' && c.family === 4 && n >= c.first && n <= c.last;
            }
            if (type === 'DOMAIN') return host === value;
            return host === value || host.endsWith(`.${value}`);
          });
        assert.equal(t.match({ host: addr, port: 1, network: 'tcp' }), linear(addr));
        assert.equal(t.match({ host: name, port: 1, network: 'tcp' }), linear(name));
      },
    ),
    { numRuns: 300 },
  );
});

test('MmdbReader: random and mutated bytes open or throw ERR_GEOIP; lookups never throw another error', () => {
  const good = writeMmdb({ '198.18.0.0/16': 'CN', '198.18.7.0/24': 'JP', '2001:2::/48': 'CN' });
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(good.length - 1), fc.integer({ min: 0, max: 255 })), {
        maxLength: 8,
      }),
      fc.nat(good.length),
      fc.integer({ min: 0, max: 2 ** 32 - 1 }),
      (flips, cut, ip) => {
        const b = Buffer.from(good.subarray(0, Math.max(cut, good.length - 200)));
        for (const [at, v] of flips) if (at < b.length) b[at] = v;
        only(() => {
          const db = new MmdbReader(b, 'fuzz.mmdb');
          db.country(`${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`);
          db.country('2001:2::1');
        });
      },
    ),
    RUNS,
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) =>
      only(() => new MmdbReader(bytes, 'random.mmdb').country('1.2.3.4')),
    ),
    RUNS,
  );
});
