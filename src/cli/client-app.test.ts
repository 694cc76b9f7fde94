// The --ui flags: loopback by default, another host only with --ui-allow-remote, the key file's
// default place, and the --ui-* flags refused without --ui.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildClientApp, uiConfig } from './client-app.js';

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

test('under --tun, a key the tunnel cannot route around is refused and the client stays as it was', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ladder-ui-tun-'));
  try {
    const key = (host: string) =>
      `ss://${Buffer.from('chacha20-ietf-poly1305:pw').toString('base64')}@${host}:8388`;
    const asked: string[] = [];
    const app = buildClientApp(
      { at: { host: '127.0.0.1', port: 0 }, allowRemote: false, keyFile: join(dir, 'keys.json') },
      {
        routing: undefined,
        keyOptions: {},
        serverKey: key('198.18.0.1'),
        print: () => {},
        tun: {
          direct: {},
          beforeConnect: (uri) => {
            asked.push(uri);
            if (uri.includes('new.example')) throw new Error('cannot be routed around the tunnel');
          },
        },
      },
    );
    const c = app.controller;
    await app.start({});
    try {
      assert.equal(c.state().connected, true);
      const name = await c.importKey(key('new.example'));
      await assert.rejects(c.connect(name), /cannot be routed around the tunnel/);
      assert.equal(c.state().key, c.state().keys[0], 'still connected with the first key');
      assert.equal(asked.length, 2);
    } finally {
      await app.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
