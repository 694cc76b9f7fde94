import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clientConfig, parseRotateAfter } from './client-command.js';

test('--rotate-after: bytes or k, m, g (binary); anything else names the flag and the form', () => {
  assert.equal(parseRotateAfter(undefined), undefined);
  assert.equal(parseRotateAfter('100k'), 100 * 1024);
  assert.equal(parseRotateAfter('2M'), 2 * 1024 * 1024);
  assert.equal(parseRotateAfter('1g'), 1024 ** 3);
  assert.equal(parseRotateAfter('65536'), 65536);
  for (const bad of ['', '0', '1023', '1.5m', '-1k', '2t', 'k', '1025g', '99999999999'])
    assert.throws(() => parseRotateAfter(bad), /--rotate-after .* must be a size from 1k to 1024g/);
});

test('clientConfig: the flags as a plain config, errors naming the flag', () => {
  assert.throws(() => clientConfig({}), /give the server's key with --server/);
  assert.throws(
    () => clientConfig({ server: 'ss://x', user: 'bob' }),
    /--user takes name:password/,
  );
  const cfg = clientConfig({ server: 'ss://x', user: 'a:b:c', tun: true, 'tun-mtu': '1500' });
  assert.equal(cfg.server, 'ss://x');
  assert.deepEqual([...cfg.users!], [['a', 'b:c']]);
  assert.deepEqual(cfg.tun, { name: 'ladder0', mtu: 1500, killSwitch: true });
  assert.equal(cfg.routing, undefined);
  assert.equal(clientConfig({ server: 'ss://x' }).tun, undefined);
});

test('connections opened ahead: on by default, off with --no-preconnect', () => {
  assert.equal(clientConfig({ server: 'ss://x' }).keyOptions.preconnect, true);
  assert.equal(
    clientConfig({ server: 'ss://x', 'no-preconnect': true }).keyOptions.preconnect,
    false,
  );
});
