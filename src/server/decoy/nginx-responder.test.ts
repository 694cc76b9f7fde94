import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  etagMatches,
  normalizeUri,
  parseHttpTime,
  parseRanges,
  validateHost,
} from './nginx-responder.js';

test('URIs are decoded and normalised as nginx does', () => {
  assert.deepEqual(normalizeUri('/a/../b/./c//d?x=1'), { path: '/b/c/d', args: 'x=1' });
  assert.deepEqual(normalizeUri('/%61b/'), { path: '/ab/', args: null });
  assert.deepEqual(normalizeUri('/a/..'), { path: '/', args: null });
  assert.equal(normalizeUri('/../x'), null);
  assert.equal(normalizeUri('/%00'), null);
  assert.equal(normalizeUri('/%zz'), null);
});

test('hosts are validated and lower-cased as nginx does', () => {
  assert.equal(validateHost('A.Example.:99'), 'a.example');
  assert.equal(validateHost('[::1]:5'), '[::1]');
  assert.equal(validateHost('a..b'), null);
  assert.equal(validateHost('a b'), null);
  assert.equal(validateHost('a/b'), null);
  assert.equal(validateHost(''), null);
});

test('ranges: single, suffix, open, unsatisfiable, and whole when they add up past the size', () => {
  assert.deepEqual(parseRanges('0-3', 10), [[0, 4]]);
  assert.deepEqual(parseRanges('-3', 10), [[7, 10]]);
  assert.deepEqual(parseRanges('5-', 10), [[5, 10]]);
  assert.deepEqual(parseRanges('0-1, 3-4', 10), [
    [0, 2],
    [3, 5],
  ]);
  assert.equal(parseRanges('50-', 10), 'unsatisfiable');
  assert.equal(parseRanges('x', 10), 'unsatisfiable');
  assert.equal(parseRanges('0-5,3-9', 10), null);
});

test('entity tags and dates', () => {
  assert.ok(etagMatches('"a", W/"b"', '"b"', true));
  assert.ok(!etagMatches('W/"b"', '"b"', false));
  assert.ok(etagMatches('*', '"b"', false));
  assert.equal(parseHttpTime('Thu, 01 Jan 1970 00:00:10 GMT'), 10);
  assert.equal(parseHttpTime('yesterday'), -1);
});

test('fuzz: the helpers never throw on any string', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 200 }), fc.nat({ max: 1e9 }), (s, size) => {
      normalizeUri(s);
      validateHost(s);
      etagMatches(s, '"x-1"', true);
      parseHttpTime(s);
      const r = parseRanges(s, size);
      if (Array.isArray(r)) for (const [a, e] of r) assert.ok(a < e && e <= size);
    }),
    { numRuns: 3000 },
  );
});
