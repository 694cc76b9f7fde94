// `ladder probe` flag handling that parseArgs cannot express: --json with an optional file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { takeJsonFlag } from './probe-command.js';

test('--json: stdout alone, a file when a non-URL word follows, --json=FILE', () => {
  assert.deepEqual(takeJsonFlag(['--json']).json, { to: 'stdout' });
  assert.deepEqual(takeJsonFlag(['--json', '--key', 'k']), {
    rest: ['--key', 'k'],
    json: { to: 'stdout' },
  });
  assert.deepEqual(takeJsonFlag(['--json', 'http://a.example/']), {
    rest: ['http://a.example/'],
    json: { to: 'stdout' },
  });
  assert.deepEqual(takeJsonFlag(['--json', 'out.jsonl', 'https://a.example/']), {
    rest: ['https://a.example/'],
    json: { to: 'file', path: 'out.jsonl' },
  });
  assert.deepEqual(takeJsonFlag(['--json=o.jsonl']).json, { to: 'file', path: 'o.jsonl' });
  assert.equal(takeJsonFlag(['--key', 'k']).json, undefined);
});
