// The dashboard page asks for nothing outside the API's secret prefix, not even what a browser asks
// for on its own: a request outside the prefix opens a connection the API's front gives to the
// decoy, and the browser reuses that connection for the page's API calls, which then get the
// decoy's 404 pages.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DASHBOARD_DIR } from '../src/admin/api.js';

const html = readFileSync(join(DASHBOARD_DIR, 'index.html'), 'utf8');

test('the dashboard declares its icon, so no browser asks for /favicon.ico', () => {
  const icon = /<link\s+rel="icon"\s+href="([^"]*)"/.exec(html);
  assert.ok(icon, 'index.html has <link rel="icon" href="...">');
  const href = icon[1]!;
  assert.ok(
    href.startsWith('data:') || !/^(\/|[a-z][a-z0-9+.-]*:)/i.test(href),
    `the icon ${href} is a data: URL or relative (under the prefix)`,
  );
});

test('every resource the page names is relative (under the prefix) or a data: URL', () => {
  const refs = [...html.matchAll(/\s(?:href|src)="([^"]*)"/g)].map((m) => m[1]!);
  assert.ok(refs.length > 0);
  for (const r of refs)
    assert.ok(
      r.startsWith('data:') || !/^(\/|[a-z][a-z0-9+.-]*:)/i.test(r),
      `${r} leaves the prefix`,
    );
});
