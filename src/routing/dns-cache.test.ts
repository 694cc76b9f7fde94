import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DnsCache, type NameLookup } from './dns-cache.js';
import { RoutedDialer } from './routed-dialer.js';
import { parseRules } from './rules.js';
import type { StreamDialer, Target } from '../transport/types.js';
import { PassThrough } from 'node:stream';

test('DnsCache keeps answers for their TTL (clamped), shares a pending lookup, and stays bounded', async () => {
  let now = 0;
  let asked = 0;
  const lookup: NameLookup = async (name) => {
    asked++;
    return { addresses: [`192.0.2.${asked}`], ttlS: name === 'long.lab' ? 999_999 : 10 };
  };
  const c = new DnsCache({ now: () => now, maxEntries: 2 });
  const [a, b] = await Promise.all([c.resolve('A.lab', lookup), c.resolve('a.lab', lookup)]);
  assert.deepEqual([a, b, asked], [['192.0.2.1'], ['192.0.2.1'], 1]);
  now = 9_999;
  assert.deepEqual(await c.resolve('a.lab', lookup), ['192.0.2.1']);
  now = 10_000;
  assert.deepEqual(await c.resolve('a.lab', lookup), ['192.0.2.2']);
  await c.resolve('long.lab', lookup);
  now += 3_600_000; // the 1 h ceiling
  assert.equal(c.peek('long.lab'), undefined);
  await c.resolve('x.lab', lookup);
  await c.resolve('y.lab', lookup);
  await c.resolve('z.lab', lookup);
  assert.equal(c.size, 2);
  const failing: NameLookup = () => Promise.reject(new Error('no'));
  await assert.rejects(c.resolve('bad.lab', failing));
  assert.equal(c.peek('bad.lab'), undefined, 'failures are not cached');
});

test('RoutedDialer: a rule naming a transport uses that transport; unmatched goes through the tunnel', async () => {
  const seen: string[] = [];
  const dialer = (name: string): StreamDialer => ({
    dial(t: Target) {
      seen.push(`${name} ${t.host}`);
      return Promise.resolve(new PassThrough());
    },
  });
  const table = parseRules(
    'DOMAIN,video.lab,tokyo\nDOMAIN,home.lab,DIRECT',
    'r',
    {
      read: () => {
        throw new Error('none');
      },
    },
    { transports: new Set(['tokyo']) },
  );
  const r = new RoutedDialer({
    table,
    direct: { stream: dialer('direct') },
    proxy: { stream: dialer('failover') },
    transports: new Map([['tokyo', { stream: dialer('tokyo') }]]),
    resolveDirect: async () => ({ addresses: ['192.0.2.7'], ttlS: 60 }),
    resolveRemote: () => Promise.reject(new Error('not used')),
  });
  for (const host of ['video.lab', 'home.lab', 'other.lab'])
    (await r.dial({ host, port: 443 })).destroy();
  assert.deepEqual(seen, ['tokyo video.lab', 'direct 192.0.2.7', 'failover other.lab']);
});
