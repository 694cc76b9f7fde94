// The key file: written with mode 0600 and read back; a file that is not a key list is reported
// (naming the file and the fix) and never overwritten; random JSON is a list or a ConfigError.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { ConfigError } from '../errors.js';
import { checkKeyFile, readKeyFile, withKey, writeKeyFile } from './key-file.js';
import { keyNameOf } from './client-controller.js';

test('written 0600, read back, a key of the same name replaced', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ladder-keyfile-'));
  try {
    const path = join(dir, 'keys.json');
    assert.deepEqual(readKeyFile(path), { keys: [] });
    let c = withKey({ keys: [] }, { name: 'a', uri: 'ss://x' });
    c = withKey(c, { name: 'b', uri: 'ss://y' });
    c = withKey(c, { name: 'a', uri: 'ss://z' });
    writeKeyFile(path, c);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.deepEqual(readKeyFile(path), {
      keys: [
        { name: 'b', uri: 'ss://y' },
        { name: 'a', uri: 'ss://z' },
      ],
      selected: 'a',
    });
    writeFileSync(path, '{"keys": 3}');
    assert.throws(() => readKeyFile(path), /keys\.json is not \{"keys".*move it away/);
    assert.equal(readFileSync(path, 'utf8'), '{"keys": 3}');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('fuzz: any JSON value is a key list or a ConfigError', () => {
  fc.assert(
    fc.property(fc.jsonValue(), (v) => {
      try {
        const c = checkKeyFile(v, 'k.json');
        assert.ok(Array.isArray(c.keys));
      } catch (err) {
        assert.ok(err instanceof ConfigError, String(err));
      }
    }),
    { numRuns: 500 },
  );
});

test('a pasted key is named by its #fragment, without control characters, or "key N"', () => {
  assert.equal(keyNameOf('ss://x@h:1#Home%20wifi', []), 'Home wifi');
  assert.equal(keyNameOf('ss://x@h:1#a%0Ab', []), 'ab');
  assert.equal(keyNameOf('ss://x@h:1', ['key 1']), 'key 2');
  assert.equal(keyNameOf('ss://x@h:1#%E0%A4%A', []), 'key 1');
  fc.assert(
    fc.property(fc.string(), (s) => {
      const n = keyNameOf(s, []);
      assert.ok(n.length > 0 && n.length <= 64);
    }),
  );
});
