import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LadderError } from '../errors.js';
import { DEFAULT_DNS_REMOTE, routingConfig } from './routing-setup.js';

const usage = (re: RegExp) => (e: unknown) =>
  e instanceof LadderError && e.code === 'ERR_USAGE' && re.test(e.message);

test('routingConfig: the flags, their defaults, and what each refuses', () => {
  assert.equal(routingConfig({}), undefined);
  assert.deepEqual(routingConfig({ rules: 'preset:cn' }), {
    rules: 'preset:cn',
    dnsRemote: { host: DEFAULT_DNS_REMOTE.split(':')[0], port: 53 },
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
      dnsRemote: { host: '2001:2::53', port: 53 },
      logConnections: true,
    },
  );
  assert.throws(() => routingConfig({ 'log-connections': true }), usage(/only with --rules/));
  assert.throws(() => routingConfig({ rules: 'preset:us' }), usage(/presets are: preset:cn/));
  assert.throws(
    () => routingConfig({ rules: 'r.txt', 'dns-direct': 'dns.lab:53' }),
    usage(/takes an IP address and port/),
  );
  for (const url of ['tls://198.18.0.53', 'https://198.18.0.53/dns-query'])
    assert.throws(
      () => routingConfig({ rules: 'r.txt', 'dns-remote': url }),
      usage(
        /give an IP address and port.*DNS over TCP inside the tunnel \(DoT and DoH are not offered\)/,
      ),
    );
});
