import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { LadderError } from '../errors.js';
import { NEEDS_ADDRESS, parseRules, regexProblem, type RuleFiles } from './rules.js';
import { IntervalTable, parseCidr } from './ip.js';

function files(map: Record<string, string>): RuleFiles {
  return {
    read(path) {
      const text = map[path];
      if (text === undefined) throw new Error('no such file');
      return { text, name: path };
    },
  };
}

const none = files({});

function route(
  rules: string,
  q: { host: string; port?: number; network?: 'tcp' | 'udp'; ip?: string },
  f = none,
): string {
  const t = parseRules(rules, 'r.txt', f, { transports: new Set(['tokyo']) });
  const i = t.match({
    host: q.host,
    port: q.port ?? 443,
    network: q.network ?? 'tcp',
    ...(q.ip ? { ip: q.ip } : {}),
  });
  if (i === NEEDS_ADDRESS) return 'needs-address';
  return i < 0 ? 'none' : t.rules[i]!.text;
}

function refused(rules: string, re: RegExp, f = none): void {
  assert.throws(
    () => parseRules(rules, 'r.txt', f, { transports: new Set(['tokyo']) }),
    (e: unknown) => e instanceof LadderError && e.code === 'ERR_RULES' && re.test(e.message),
  );
}

test('domain rules: exact, suffix at label boundaries, keyword, regex, case and trailing dot', () => {
  const r =
    'DOMAIN,exact.lab,DIRECT\nDOMAIN-SUFFIX,cn.lab,DIRECT\nDOMAIN-KEYWORD,google,PROXY\nDOMAIN-REGEX,^ads?\\.,REJECT\nMATCH,PROXY';
  assert.equal(route(r, { host: 'exact.lab' }), 'DOMAIN,exact.lab,DIRECT');
  assert.equal(route(r, { host: 'a.exact.lab' }), 'MATCH,PROXY');
  assert.equal(route(r, { host: 'cn.lab' }), 'DOMAIN-SUFFIX,cn.lab,DIRECT');
  assert.equal(route(r, { host: 'WWW.Cn.Lab.' }), 'DOMAIN-SUFFIX,cn.lab,DIRECT');
  assert.equal(route(r, { host: 'xcn.lab' }), 'MATCH,PROXY');
  assert.equal(route(r, { host: 'www.google.com' }), 'DOMAIN-KEYWORD,google,PROXY');
  assert.equal(route(r, { host: 'ad.example' }), 'DOMAIN-REGEX,^ads?\\.,REJECT');
});

test('first match wins across types', () => {
  const r =
    'DST-PORT,25,REJECT\nDOMAIN-SUFFIX,lab,DIRECT\nDOMAIN,x.lab,REJECT\nNETWORK,udp,tokyo\nMATCH,PROXY';
  assert.equal(route(r, { host: 'x.lab', port: 25 }), 'DST-PORT,25,REJECT');
  assert.equal(route(r, { host: 'x.lab' }), 'DOMAIN-SUFFIX,lab,DIRECT');
  assert.equal(route(r, { host: 'x.org', network: 'udp' }), 'NETWORK,udp,tokyo');
  assert.equal(route(r, { host: 'x.org' }), 'MATCH,PROXY');
  assert.equal(route('DOMAIN,a.b,DIRECT', { host: 'c.d' }), 'none');
});

test('CIDR rules: nesting keeps the lowest index; no-resolve applies only to address targets', () => {
  const r =
    'IP-CIDR,198.18.5.0/24,REJECT\nIP-CIDR,198.18.0.0/15,DIRECT\nIP-CIDR6,2001:2::/48,DIRECT,no-resolve\nIP-CIDR,10.0.0.0/8,DIRECT,no-resolve\nMATCH,PROXY';
  assert.equal(route(r, { host: '198.18.5.9' }), 'IP-CIDR,198.18.5.0/24,REJECT');
  assert.equal(route(r, { host: '198.19.255.255' }), 'IP-CIDR,198.18.0.0/15,DIRECT');
  assert.equal(route(r, { host: '198.20.0.0' }), 'MATCH,PROXY');
  assert.equal(route(r, { host: '2001:2::1' }), 'IP-CIDR6,2001:2::/48,DIRECT,no-resolve');
  assert.equal(route(r, { host: '::ffff:198.18.1.1' }), 'IP-CIDR,198.18.0.0/15,DIRECT');
  // A name needs its address before the first resolving CIDR rule can be passed.
  assert.equal(route(r, { host: 'x.lab' }), 'needs-address');
  assert.equal(route(r, { host: 'x.lab', ip: '198.18.1.1' }), 'IP-CIDR,198.18.0.0/15,DIRECT');
  // no-resolve rules never match a name by its resolved address.
  assert.equal(route(r, { host: 'x.lab', ip: '10.1.1.1' }), 'MATCH,PROXY');
  // A domain rule before every resolving rule decides without an address.
  assert.equal(route(`DOMAIN,x.lab,PROXY\n${r}`, { host: 'x.lab' }), 'DOMAIN,x.lab,PROXY');
});

test('GEOIP uses the country lookup; LAN stands for the private ranges', () => {
  const t = parseRules('GEOIP,LAN,DIRECT\nGEOIP,CN,DIRECT\nMATCH,PROXY', 'r', none);
  assert.equal(t.usesGeoip, true);
  t.setCountryLookup((ip) => (ip.startsWith('198.18.') ? 'CN' : undefined));
  const at = (host: string, ip?: string): number =>
    t.match({ host, port: 80, network: 'tcp', ...(ip ? { ip } : {}) });
  assert.equal(at('192.168.1.1'), 0);
  assert.equal(at('198.18.0.7'), 1);
  assert.equal(at('198.19.0.7'), 2);
  assert.equal(at('name.lab'), NEEDS_ADDRESS);
  assert.equal(at('name.lab', '198.18.0.7'), 1);
});

test('DST-PORT lists and ranges', () => {
  const r = 'DST-PORT,80/8000-8002,DIRECT\nMATCH,PROXY';
  for (const p of [80, 8000, 8002])
    assert.equal(route(r, { host: 'a', port: p }), 'DST-PORT,80/8000-8002,DIRECT');
  assert.equal(route(r, { host: 'a', port: 8003 }), 'MATCH,PROXY');
});

test('RULE-SET: Clash text, YAML payload (domain, ipcidr, classical) and sing-box JSON', () => {
  const f = files({
    'text.list': '# a comment\n+.suffix.lab\n.sub.lab\n*.one.lab\nexact.lab\n',
    'cidr.yaml': 'payload:\n  - \'198.18.0.0/16\'\n  - "2001:2::/48"\n',
    'classic.yaml': 'payload:\n  - DOMAIN-KEYWORD,blocked\n  - IP-CIDR,203.0.113.0/24,no-resolve\n',
    'sb.json': JSON.stringify({
      version: 2,
      rules: [{ domain_suffix: ['sb.lab', '.dot.lab'] }, { ip_cidr: ['192.0.2.0/24'] }],
    }),
  });
  const r =
    'RULE-SET,text.list,DIRECT\nRULE-SET,classic.yaml,tokyo\nRULE-SET,sb.json,REJECT\nRULE-SET,cidr.yaml,DIRECT,no-resolve\nMATCH,PROXY';
  const m = (host: string, ip?: string): string => route(r, { host, ...(ip ? { ip } : {}) }, f);
  assert.equal(m('suffix.lab'), 'RULE-SET,text.list,DIRECT');
  assert.equal(m('a.suffix.lab'), 'RULE-SET,text.list,DIRECT');
  // sb.json's ip_cidr (resolving) comes before MATCH: a name needs its address to pass it.
  assert.equal(m('sub.lab'), 'needs-address');
  assert.equal(m('sub.lab', '192.88.99.1'), 'MATCH,PROXY');
  assert.equal(m('a.sub.lab'), 'RULE-SET,text.list,DIRECT');
  assert.equal(m('a.one.lab'), 'RULE-SET,text.list,DIRECT');
  assert.equal(m('a.b.one.lab', '192.88.99.1'), 'MATCH,PROXY');
  assert.equal(m('exact.lab'), 'RULE-SET,text.list,DIRECT');
  assert.equal(m('is-blocked.example'), 'RULE-SET,classic.yaml,tokyo');
  assert.equal(m('203.0.113.9'), 'RULE-SET,classic.yaml,tokyo');
  assert.equal(m('x.sb.lab'), 'RULE-SET,sb.json,REJECT');
  assert.equal(m('sb.lab'), 'RULE-SET,sb.json,REJECT');
  assert.equal(m('dot.lab', '192.88.99.1'), 'MATCH,PROXY');
  assert.equal(m('dot.lab', '192.0.2.5'), 'RULE-SET,sb.json,REJECT');
  assert.equal(m('x.dot.lab'), 'RULE-SET,sb.json,REJECT');
  assert.equal(m('192.0.2.1'), 'RULE-SET,sb.json,REJECT');
  assert.equal(m('198.18.3.4'), 'RULE-SET,cidr.yaml,DIRECT,no-resolve');
  assert.equal(m('2001:2::9'), 'RULE-SET,cidr.yaml,DIRECT,no-resolve');
});

test('bad lines are refused with file:line, the rule and what is wrong', () => {
  refused(
    'DOMAIN,a.lab,DIRECT\nFOO,bar,DIRECT',
    /^r\.txt:2: 'FOO,bar,DIRECT': unknown rule type 'FOO'/,
  );
  refused('PROCESS-NAME,curl,DIRECT', /not supported by Ladder/);
  refused('IP-CIDR,10.0.0.0/33,DIRECT', /r\.txt:1: .*prefix length '\/33' must be 0 to 32/);
  refused('IP-CIDR,10.0.0/8,DIRECT', /is not an IPv4 or IPv6 address/);
  refused('DOMAIN,a.lab,NOWHERE', /unknown action or transport name 'NOWHERE'.*tokyo/);
  refused('DOMAIN,a.lab', /TYPE,VALUE,ACTION/);
  refused('DOMAIN,a.lab,DIRECT,resolve', /only no-resolve may follow/);
  refused('RULE-SET,missing.list,DIRECT', /r\.txt:1: .*rule-set file cannot be read/);
  refused(
    'RULE-SET,bad.list,DIRECT',
    /r\.txt:1: .*bad\.list:3: .*prefix length '\/99'/,
    files({ 'bad.list': 'a.lab\n\n1.2.3.4/99\n' }),
  );
  refused(
    'RULE-SET,bad.json,DIRECT',
    /bad\.json: rules\[0\]: the field process_name/,
    files({ 'bad.json': '{"version":2,"rules":[{"process_name":["x"]}]}' }),
  );
  refused('MATCH,PROXY\nDOMAIN,a,DIRECT', /r\.txt:2: .*after MATCH/);
  refused('DOMAIN-REGEX,(a+)+$,DIRECT', /nested quantifiers/);
  refused('GEOIP,China,DIRECT', /two-letter country code/);
  refused('DST-PORT,70000,DIRECT', /not a port or range/);
  refused('NETWORK,icmp,DIRECT', /tcp or udp/);
});

test('regexProblem refuses backtracking shapes and keeps ordinary ones', () => {
  for (const ok of [
    '^ad[0-9]*\\.',
    '(^|\\.)google\\.com$',
    '^.*\\.cn$',
    'ab{2,5}c',
    '^(www\\.)?example\\.(com|org)$',
    '^.*a.*b.*$',
    '.*.*x',
    '^a{0,60}a{0,60}a{0,60}b$',
  ])
    assert.equal(regexProblem(ok), undefined, ok);
  for (const bad of [
    '(a+)+',
    '(a|aa)*',
    '(a*)*b',
    '(x+x+)+y',
    '(a)\\1',
    '(?=a)a',
    '(?<!a)b',
    '(.*a){3}',
    '.*.*.*.*x',
    '(',
    // Too many ways to try in all: unanchored with three unbounded, or many bounded ones.
    '.*.*.*x',
    '^a{0,60}a{0,60}a{0,60}a{0,60}b$',
    '^a{0,250}a{0,250}a{0,250}b$',
    `${'a?'.repeat(30)}${'a'.repeat(30)}`,
  ])
    assert.notEqual(regexProblem(bad), undefined, bad);
});

test('IntervalTable: lowest covering index, and parseCidr masks host bits', () => {
  const c = (t: string): { first: number; last: number } => {
    const x = parseCidr(t);
    assert.ok(typeof x !== 'string' && x.family === 4);
    return x as { first: number; last: number };
  };
  const t = new IntervalTable(
    [
      { ...c('10.0.0.0/8'), index: 5 },
      { ...c('10.1.0.0/16'), index: 2 },
      { ...c('10.1.2.0/24'), index: 7 },
      { ...c('10.1.2.0/24'), index: 1 },
      { ...c('0.0.0.0/0'), index: 9 },
    ],
    1,
  );
  assert.equal(t.lookup(c('10.1.2.3').first), 1);
  assert.equal(t.lookup(c('10.1.3.3').first), 2);
  assert.equal(t.lookup(c('10.2.0.0').first), 5);
  assert.equal(t.lookup(c('11.0.0.0').first), 9);
  assert.equal(t.lookup(c('255.255.255.255').first), 9);
  assert.deepEqual(c('10.1.2.3/8'), { family: 4, first: 167772160, last: 184549375 });
});

test('rules as Clash users paste them: BOM, CRLF, trailing blanks, comments, IPv6, LAN, no-resolve', () => {
  const r =
    '\uFEFF# pasted\r\nDOMAIN-SUFFIX,cn,DIRECT  \r\nIP-CIDR6,2001:2::/48,DIRECT,no-resolve\t\r\n' +
    'GEOIP,LAN,DIRECT\r\nIP-CIDR,198.18.0.0/15,REJECT,no-resolve # lab\r\nMATCH,PROXY\r\n';
  assert.equal(route(r, { host: 'www.gov.cn' }), 'DOMAIN-SUFFIX,cn,DIRECT');
  assert.equal(route(r, { host: 'cn.lab' }), 'needs-address'); // GEOIP,LAN resolves
  assert.equal(route(r, { host: 'cn.lab', ip: '198.18.0.1' }), 'MATCH,PROXY'); // no-resolve
  assert.equal(route(r, { host: '198.18.0.1' }), 'IP-CIDR,198.18.0.0/15,REJECT,no-resolve');
  assert.equal(route(r, { host: '2001:2::1' }), 'IP-CIDR6,2001:2::/48,DIRECT,no-resolve');
  assert.equal(route(r, { host: '192.168.1.1' }), 'GEOIP,LAN,DIRECT');
  assert.equal(route(r, { host: 'x.lab', ip: '10.1.2.3' }), 'GEOIP,LAN,DIRECT');
});

test('what Clash or mihomo accept and Ladder does not is refused naming the line and the fix', () => {
  refused(
    'DOMAIN,a.lab,DIRECT\nAND,((DOMAIN,a.lab),(NETWORK,UDP)),REJECT',
    /^r\.txt:2: .*the rule type AND is not supported by Ladder/,
  );
  refused('OR,((DOMAIN,a.lab),(DST-PORT,53)),DIRECT', /the rule type OR is not supported/);
  refused('PROCESS-NAME-REGEX,.*,DIRECT', /PROCESS-NAME-REGEX is not supported/);
  refused(
    'IP-CIDR,198.18.0.0/15,no-resolve,DIRECT',
    /no-resolve goes after the action: IP-CIDR,198\.18\.0\.0\/15,DIRECT,no-resolve/,
  );
  refused('DOMAIN-SUFFIX,a.lab,direct', /the action 'direct' is written in capitals: DIRECT/);
  refused('DOMAIN-SUFFIX,a.lab,Proxy', /written in capitals: PROXY/);
  refused(
    'DOMAIN-SUFFIX,a.lab,REJECT-DROP',
    /REJECT-DROP is not supported by Ladder: write REJECT/,
  );
  refused('DOMAIN-SUFFIX,a.lab,🚀 节点选择', /Clash proxy-group names are not read/);
  refused('DOMAIN-SUFFIX,+.a.lab,DIRECT', /write DOMAIN-SUFFIX,a\.lab/);
  refused('DOMAIN-SUFFIX,.a.lab,DIRECT', /write DOMAIN-SUFFIX,a\.lab/);
  refused('DOMAIN,*.a.lab,DIRECT', /'\*' is a wildcard only/);
  refused('DOMAIN,198.18.0.1,DIRECT', /is an address, not a name: write IP-CIDR,198\.18\.0\.1\/32/);
  refused('DOMAIN,a..lab,DIRECT', /is not a domain name/);
  refused(
    'RULE-SET,flow.yaml,DIRECT',
    /flow\.yaml:1: write the payload as a block list/,
    files({ 'flow.yaml': "payload: ['+.a.lab']\n" }),
  );
});

test('DOMAIN-REGEX may hold commas; an optional group with a quantifier inside is accepted', () => {
  assert.equal(
    route('DOMAIN-REGEX,^a{1,3}\\.lab$,DIRECT', { host: 'aa.lab' }),
    'DOMAIN-REGEX,^a{1,3}\\.lab$,DIRECT',
  );
  assert.equal(route('DOMAIN-REGEX,^a{1,3}\\.lab$,DIRECT', { host: 'aaaa.lab' }), 'none');
  const f = files({ 're.yaml': "payload:\n  - 'DOMAIN-REGEX,^b{1,3}\\.lab$'\n" });
  assert.equal(route('RULE-SET,re.yaml,REJECT', { host: 'bb.lab' }, f), 'RULE-SET,re.yaml,REJECT');
  assert.equal(route('RULE-SET,re.yaml,REJECT', { host: 'bbbb.lab' }, f), 'none');
  const bili = 'DOMAIN-REGEX,^([a-z0-9-]+\\.)?bilibili\\.(com|tv)$,DIRECT';
  assert.equal(route(bili, { host: 'www.bilibili.com' }), bili);
  assert.equal(route(bili, { host: 'bilibili.tv' }), bili);
  assert.equal(route(bili, { host: 'bilibili.tv.lab' }), 'none');
  assert.equal(regexProblem('^([a-z]+\\.)?x$'), undefined);
  assert.notEqual(regexProblem('^(([a-z]+\\.)?)+x$'), undefined);
  assert.notEqual(regexProblem('^([a-z]+\\.)*x$'), undefined);
});

test('YAML rule providers: a document marker and comments before payload', () => {
  const f = files({
    'p.yaml': "# NAME: lab\r\n---\r\npayload:\r\n  # entries\r\n  - '+.a.lab'\r\n",
  });
  assert.equal(route('RULE-SET,p.yaml,DIRECT', { host: 'x.a.lab' }, f), 'RULE-SET,p.yaml,DIRECT');
});

test('sing-box sources: destination fields are an OR, port, port_range and network an AND', () => {
  const f = files({
    'v1.json': `\uFEFF${JSON.stringify({
      version: 1,
      rules: [{ domain: 'exact.lab', domain_keyword: ['kw'], ip_cidr: ['198.18.5.0/24'] }],
    })}`,
    'v2.json': JSON.stringify({
      version: 2,
      rules: [
        { domain_suffix: ['web.lab'], port: [443, 8443] },
        { network: 'udp', port_range: ['5000:5010', '6000:'] },
        { type: 'default', ip_cidr: ['198.18.6.0/24'], network: ['tcp'] },
      ],
    }),
  });
  const r = 'RULE-SET,v1.json,REJECT\nRULE-SET,v2.json,DIRECT,no-resolve\nMATCH,PROXY';
  const m = (host: string, port = 443, network: 'tcp' | 'udp' = 'tcp', ip?: string): string =>
    route(r, { host, port, network, ...(ip ? { ip } : {}) }, f);
  assert.equal(m('exact.lab'), 'RULE-SET,v1.json,REJECT');
  assert.equal(m('a-kw-b.lab'), 'RULE-SET,v1.json,REJECT');
  assert.equal(m('198.18.5.7'), 'RULE-SET,v1.json,REJECT');
  assert.equal(m('other.lab', 443, 'tcp', '198.18.5.7'), 'RULE-SET,v1.json,REJECT');
  assert.equal(m('x.web.lab', 443, 'tcp', '198.18.9.9'), 'RULE-SET,v2.json,DIRECT,no-resolve');
  assert.equal(m('x.web.lab', 8443, 'tcp', '198.18.9.9'), 'RULE-SET,v2.json,DIRECT,no-resolve');
  assert.equal(m('x.web.lab', 80, 'tcp', '198.18.9.9'), 'MATCH,PROXY');
  assert.equal(m('198.18.9.9', 5005, 'udp'), 'RULE-SET,v2.json,DIRECT,no-resolve');
  assert.equal(m('198.18.9.9', 65000, 'udp'), 'RULE-SET,v2.json,DIRECT,no-resolve');
  assert.equal(m('198.18.9.9', 5005, 'tcp'), 'MATCH,PROXY');
  assert.equal(m('198.18.9.9', 5011, 'udp'), 'MATCH,PROXY');
  assert.equal(m('198.18.6.1', 1, 'tcp'), 'RULE-SET,v2.json,DIRECT,no-resolve');
  assert.equal(m('198.18.6.1', 1, 'udp'), 'MATCH,PROXY');
  // A conditional rule that needs the address of a name asks for it, on its port only.
  const c = files({
    'c.json': JSON.stringify({ version: 2, rules: [{ ip_cidr: ['198.18.7.0/24'], port: 53 }] }),
  });
  const rc = 'RULE-SET,c.json,DIRECT\nMATCH,PROXY';
  assert.equal(route(rc, { host: 'dns.lab', port: 53 }, c), 'needs-address');
  assert.equal(route(rc, { host: 'dns.lab', port: 80 }, c), 'MATCH,PROXY');
  assert.equal(
    route(rc, { host: 'dns.lab', port: 53, ip: '198.18.7.1' }, c),
    'RULE-SET,c.json,DIRECT',
  );
  assert.equal(route(rc, { host: 'dns.lab', port: 53, ip: '198.18.8.1' }, c), 'MATCH,PROXY');
  assert.ok(parseRules(rc, 'r.txt', c).resolves);
  const bad = (json: unknown, re: RegExp): void =>
    refused('RULE-SET,b.json,DIRECT', re, files({ 'b.json': JSON.stringify(json) }));
  bad({ rules: [{ domain: 'a.lab' }] }, /b\.json: .*"version"/);
  bad(
    { version: 2, rules: [{ type: 'logical', mode: 'and', rules: [] }] },
    /rules\[0\]: logical rules/,
  );
  bad({ version: 2, rules: [{ domain: 'a.lab', invert: true }] }, /"invert" is not supported/);
  bad({ version: 2, rules: [{ port: [70000] }] }, /port: '70000' is not a port number/);
  bad({ version: 2, rules: [{ port_range: ['9:1'] }] }, /port_range: '9:1' is not a range/);
  bad({ version: 2, rules: [{ network: 'icmp' }] }, /network must be "tcp" or "udp"/);
  bad({ version: 2, rules: [{}] }, /rules\[0\]: the rule has no field/);
});

test("docs/routing.md's example file for China parses as written", () => {
  const doc = readFileSync(new URL('../../../docs/routing.md', import.meta.url), 'utf8');
  const example = /## An example file for China\s+```\n([\s\S]*?)```/.exec(doc)?.[1];
  assert.ok(example, 'the example is in the document');
  const f = files({
    'reject.yaml': "payload:\n  - '+.ads.lab'\n",
    'proxy.list': 'DOMAIN-SUFFIX,blocked.lab\n',
    'direct.json': '{"version": 2, "rules": [{"domain_suffix": ["domestic.lab"]}]}',
  });
  const t = parseRules(example, 'rules.txt', f, { transports: new Set(['tokyo']) });
  const q = (host: string): string | undefined =>
    t.rules[t.match({ host, port: 443, network: 'tcp' })]?.text;
  assert.match(q('www.bilibili.com') ?? '', /^DOMAIN-REGEX,/);
  assert.equal(q('www.youtube.com'), 'DOMAIN-SUFFIX,youtube.com,tokyo');
});
