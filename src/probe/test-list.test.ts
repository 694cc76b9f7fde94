// Test lists: Citizen Lab CSV (RFC 4180 quoting) and plain URL-per-line files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../errors.js';
import { parseCsv, parseTestList } from './test-list.js';
import { checkProbeUrl } from './web-connectivity.js';

test('Citizen Lab CSV: quoted fields with commas, quotes and line breaks; CRLF; BOM', () => {
  const csv =
    '\uFEFFurl,category_code,category_description,date_added,source,notes\r\n' +
    'http://a.example/,NEWS,News Media,2017-04-12,citizenlab,"a note, with a comma"\r\n' +
    '"https://b.example/x?y=1,2",POLR,"Political ""Criticism""",2014-04-15,,"two\r\nlines"\r\n' +
    '\r\n';
  assert.deepEqual(parseTestList(csv), [
    { url: 'http://a.example/', categoryCode: 'NEWS' },
    { url: 'https://b.example/x?y=1,2', categoryCode: 'POLR' },
  ]);
  assert.deepEqual(parseCsv('a,"b ""c""",d\n'), [['a', 'b "c"', 'd']]);
});

test('plain lists: one URL per line, comments and blank lines skipped', () => {
  assert.deepEqual(parseTestList('# mine\nhttps://a.example/\n\n  http://b.example/  \n'), [
    { url: 'https://a.example/' },
    { url: 'http://b.example/' },
  ]);
});

test('bad lists name the problem', () => {
  assert.throws(
    () => parseTestList('url,category_code\n"http://a.example/,NEWS\n', 'l.csv'),
    (e: unknown) => e instanceof ConfigError && /l\.csv: a quoted field/.test(e.message),
  );
  assert.throws(() => parseTestList('# nothing\n', 'empty.txt'), /empty\.txt: no URLs/);
});

test('the shipped default list parses and every URL can be measured', () => {
  // Parsed only: tests never reach the sites of the default list (network safety).
  const path = fileURLToPath(new URL('../../../data/test-lists/default.csv', import.meta.url));
  const entries = parseTestList(readFileSync(path, 'utf8'), path);
  assert.ok(entries.length >= 5);
  for (const e of entries) assert.ok(checkProbeUrl(e.url) instanceof URL, e.url);
});

test('checkProbeUrl: http and https only, with a host', () => {
  assert.ok(checkProbeUrl('https://[2001:2::1]:8443/x') instanceof URL);
  assert.match(checkProbeUrl('ftp://a.example/') as string, /only http/);
  assert.match(checkProbeUrl('a.example') as string, /not a URL/);
});
