import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DialError, LadderError } from '../errors.js';
import type { DnsLookup, Resolver } from '../probe/dns-client.js';
import {
  DEFAULT_DNS_REMOTE,
  parseDnsRemote,
  reportingFailures,
  routingConfig,
} from './routing-setup.js';

const usage = (re: RegExp) => (e: unknown) =>
  e instanceof LadderError && e.code === 'ERR_USAGE' && re.test(e.message);

test('routingConfig: the flags, their defaults, and what each refuses', () => {
  assert.equal(routingConfig({}), undefined);
  assert.deepEqual(routingConfig({ rules: 'preset:cn' }), {
    rules: 'preset:cn',
    dnsRemote: { protocol: 'tcp', server: { host: DEFAULT_DNS_REMOTE.split(':')[0], port: 53 } },
    logConnections: false,
  });
  assert.deepEqual(
    routingConfig({
      rules: 'r.txt',
      'dns-direct': '198.18.0.53:53',
      'dns-remote': '[2001:2::53]:53',
      'log-connections': true,
    }),
    {
      rules: 'r.txt',
      dnsDirect: { host: '198.18.0.53', port: 53 },
      dnsRemote: { protocol: 'tcp', server: { host: '2001:2::53', port: 53 } },
      logConnections: true,
    },
  );
  assert.throws(() => routingConfig({ 'log-connections': true }), usage(/only with --rules/));
  assert.throws(() => routingConfig({ rules: 'preset:us' }), usage(/presets are: preset:cn/));
  assert.throws(
    () => routingConfig({ rules: 'r.txt', 'dns-direct': 'dns.lab:53' }),
    usage(/takes an IP address and port/),
  );
  assert.throws(
    () => routingConfig({ rules: 'r.txt', 'dns-direct': 'tls://198.18.0.53' }),
    usage(/give an IP address and port, e\.g\. 223\.5\.5\.5:53; the query is plain DNS over UDP/),
  );
});

test('parseDnsRemote: DNS over TCP, TLS and HTTPS as mihomo and sing-box write them', () => {
  const cases: [string, ReturnType<typeof parseDnsRemote>][] = [
    ['198.18.0.53:53', { protocol: 'tcp', server: { host: '198.18.0.53', port: 53 } }],
    ['[2001:2::53]:5353', { protocol: 'tcp', server: { host: '2001:2::53', port: 5353 } }],
    ['tcp://198.18.0.53', { protocol: 'tcp', server: { host: '198.18.0.53', port: 53 } }],
    ['tls://1.1.1.1', { protocol: 'tls', server: { host: '1.1.1.1', port: 853 } }],
    ['TLS://Dns.Lab:8853/', { protocol: 'tls', server: { host: 'dns.lab', port: 8853 } }],
    ['tls://[2001:2::53]', { protocol: 'tls', server: { host: '2001:2::53', port: 853 } }],
    [
      'https://dns.lab/dns-query',
      { protocol: 'https', server: { host: 'dns.lab', port: 443 }, path: '/dns-query' },
    ],
    [
      'https://198.18.0.53:8443/resolve?ct=x',
      { protocol: 'https', server: { host: '198.18.0.53', port: 8443 }, path: '/resolve?ct=x' },
    ],
    [
      'https://dns.lab',
      { protocol: 'https', server: { host: 'dns.lab', port: 443 }, path: '/dns-query' },
    ],
    [
      'https://[2001:2::53]/q',
      { protocol: 'https', server: { host: '2001:2::53', port: 443 }, path: '/q' },
    ],
  ];
  for (const [text, want] of cases) assert.deepEqual(parseDnsRemote(text), want, text);
  const bad: [string, RegExp][] = [
    ['dns.lab:53', /not an IP address and port/],
    ['198.18.0.53', /the port is missing/],
    ['udp://198.18.0.53', /udp:\/\/ is not offered/],
    ['quic://dns.lab', /quic:\/\/ is not offered/],
    ['http://dns.lab/dns-query', /http:\/\/ is not offered/],
    ['tcp://dns.lab', /tcp:\/\/ takes an IP address/],
    ['tls://dns.lab/path', /tls:\/\/ takes no path/],
    ['tls://', /the host is missing/],
    ['tls://dns.lab:0', /the port 0 is not from 1 to 65535/],
    ['tls://dns.lab:99999', /the port 99999 is not from 1 to 65535/],
    ['tls://[dns.lab]', /in brackets is not an IPv6 address/],
    ['tls://bad_host!', /is not a host name or IP address/],
    ['tls://user:pw@dns.lab', /a user name or password is not taken/],
    ['https://dns.lab/dns-query#PROXY', /a #fragment .* is not taken/],
    ['https://dns.lab/a b', /percent-encode them/],
  ];
  for (const [text, re] of bad) {
    assert.throws(() => parseDnsRemote(text), usage(re), text);
    assert.throws(
      () => parseDnsRemote(text),
      usage(
        /give <ip:port> \(DNS over TCP\), tls:\/\/<host>\[:853\] \(DNS over TLS\) or https:\/\/<host>\[:443\]\/<path>/,
      ),
      text,
    );
  }
});

test('reportingFailures: one line when the remote resolver starts failing, one when it answers', async () => {
  const lines: string[] = [];
  let fail = true;
  const inner: Resolver = {
    engine: 'tcp',
    address: '198.18.0.53:853',
    lookup: () =>
      fail
        ? Promise.reject(new DialError('ERR_DIAL_TIMEOUT', 'no answer for secret-name.test'))
        : Promise.resolve({ addresses: [], answers: [] } as unknown as DnsLookup),
  };
  const r = reportingFailures(inner, 'tls://198.18.0.53:853', (l) => lines.push(l));
  for (let i = 0; i < 3; i++)
    await assert.rejects(r.lookup('secret-name.test', 1, { timeoutMs: 10 }), /no answer/);
  fail = false;
  await r.lookup('secret-name.test', 1, { timeoutMs: 10 });
  await r.lookup('secret-name.test', 1, { timeoutMs: 10 });
  assert.deepEqual(lines, [
    "ladder client: the remote resolver tls://198.18.0.53:853 failed (ERR_DIAL_TIMEOUT); rules that need an address decide by the domestic resolver's answer until it answers",
    'ladder client: the remote resolver tls://198.18.0.53:853 answers again',
  ]);
  assert.ok(!lines.join('\n').includes('secret-name'), 'the name asked is never in a line');
});
