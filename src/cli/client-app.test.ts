// The --ui flags: loopback by default, another host only with --ui-allow-remote, the key file's
// default place, and the --ui-* flags refused without --ui.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { uiConfig } from './client-app.js';

test('--ui takes a loopback address; others need --ui-allow-remote', () => {
  assert.deepEqual(uiConfig({ ui: '127.0.0.1:9090' }, '/home/u'), {
    at: { host: '127.0.0.1', port: 9090 },
    allowRemote: false,
    keyFile: '/home/u/.ladder-client-keys.json',
  });
  assert.equal(uiConfig({ ui: '[::1]:9090' })?.at.host, '::1');
  assert.throws(
    () => uiConfig({ ui: '0.0.0.0:9090' }),
    /not a loopback address.*--ui-allow-remote/,
  );
  assert.throws(() => uiConfig({ ui: '192.0.2.1:9090' }), /not a loopback/);
  assert.equal(uiConfig({ ui: '0.0.0.0:9090', 'ui-allow-remote': true })?.allowRemote, true);
  assert.equal(uiConfig({}), undefined);
  assert.throws(() => uiConfig({ 'ui-keys': 'k.json' }), /--ui-keys takes effect only with --ui/);
  assert.throws(() => uiConfig({ ui: 'nonsense' }), /--ui/);
});
