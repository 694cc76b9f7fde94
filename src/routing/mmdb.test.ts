import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { LadderError } from '../errors.js';
import { MmdbReader } from './mmdb.js';
import { writeMmdb } from '../../test/helpers/mmdb-writer.js';

test('reads the networks a written database holds, IPv4 and IPv6, nested or not', () => {
  const db = new MmdbReader(
    writeMmdb({
      '198.18.0.0/16': 'CN',
      '198.18.7.0/24': 'JP',
      '2001:2::/48': 'CN',
      '203.0.113.0/24': 'US',
    }),
    'test.mmdb',
  );
  assert.equal(db.metadata.ipVersion, 6);
  assert.equal(db.metadata.databaseType, 'Ladder-Test-Country');
  assert.equal(db.country('198.18.1.1'), 'CN');
  assert.equal(db.country('198.19.1.1'), undefined);
  assert.equal(db.country('203.0.113.200'), 'US');
  assert.equal(db.country('2001:2::5'), 'CN');
  assert.equal(db.country('2001:3::5'), undefined);
  const flat = new MmdbReader(writeMmdb({ '198.18.0.0/15': 'cn' }, { flat: true }), 'flat.mmdb');
  assert.equal(flat.country('198.19.0.1'), 'CN');
});

test('a file that is not a MaxMind DB is refused with a message naming it', () => {
  for (const bytes of [
    Buffer.alloc(0),
    Buffer.from('hello world'),
    writeMmdb({ '10.0.0.0/8': 'CN' }).subarray(0, 40),
  ])
    assert.throws(
      () => new MmdbReader(bytes, '/tmp/x.mmdb'),
      (e: unknown) =>
        e instanceof LadderError &&
        e.code === 'ERR_GEOIP' &&
        e.message.startsWith('/tmp/x.mmdb: not a usable MaxMind DB'),
    );
});

test('the database the npm package ships opens and knows well-known blocks', () => {
  const require = createRequire(import.meta.url);
  const file =
    require.resolve('@ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb');
  const db = new MmdbReader(readFileSync(file), file);
  // 1.0.1.0/24 and 114.114.114.0/24 are Chinese allocations (APNIC); 9.9.9.9 is in the US.
  assert.equal(db.country('114.114.114.114'), 'CN');
  assert.equal(db.country('9.9.9.9'), 'US');
  assert.equal(db.country('10.0.0.1'), undefined);
});
