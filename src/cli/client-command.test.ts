import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRotateAfter } from './client-command.js';

test('--rotate-after: bytes or k, m, g (binary); anything else names the flag and the form', () => {
  assert.equal(parseRotateAfter(undefined), undefined);
  assert.equal(parseRotateAfter('100k'), 100 * 1024);
  assert.equal(parseRotateAfter('2M'), 2 * 1024 * 1024);
  assert.equal(parseRotateAfter('1g'), 1024 ** 3);
  assert.equal(parseRotateAfter('65536'), 65536);
  for (const bad of ['', '0', '1023', '1.5m', '-1k', '2t', 'k', '1025g', '99999999999'])
    assert.throws(() => parseRotateAfter(bad), /--rotate-after .* must be a size from 1k to 1024g/);
});
