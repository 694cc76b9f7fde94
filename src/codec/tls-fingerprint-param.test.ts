/** The `fp` key parameter in trojan://, v2ray-plugin and ladder:// keys. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../errors.js';
import { formatTrojanUri, parseTrojanUri } from './trojan-uri.js';
import { v2rayPlugin, v2rayPluginOptions } from './v2ray-plugin.js';
import { formatLadderKey, parseLadderKey } from './ladder-key.js';
import { parseTlsFingerprint } from './tls-fingerprint-param.js';

const refusedNamingKnown = (f: () => unknown): void =>
  assert.throws(f, (e: Error) => {
    assert.ok(e instanceof ConfigError);
    assert.match(e.message, /one of chrome, node/);
    return true;
  });

test('fp: chrome and node (any case); nothing else', () => {
  assert.equal(parseTlsFingerprint('chrome'), 'chrome');
  assert.equal(parseTlsFingerprint('Node'), 'node');
  assert.equal(parseTlsFingerprint('firefox'), null);
});

test('trojan:// fp: absent means the default (chrome, left out when written); node round-trips', () => {
  assert.equal(parseTrojanUri('trojan://pw@h.example:443').fp, undefined);
  const k = parseTrojanUri('trojan://pw@h.example:443?fp=node');
  assert.equal(k.fp, 'node');
  assert.deepEqual(parseTrojanUri(formatTrojanUri(k)), k);
  assert.equal(parseTrojanUri('trojan://pw@h.example:443?fp=chrome').fp, 'chrome');
  refusedNamingKnown(() => parseTrojanUri('trojan://pw@h.example:443?fp=safari'));
});

test('v2ray-plugin fp option', () => {
  const o = v2rayPluginOptions({
    name: 'v2ray-plugin',
    options: { tls: '', host: 'h', fp: 'node' },
  });
  assert.equal(o?.fp, 'node');
  assert.equal(v2rayPlugin(o!).options.fp, 'node');
  refusedNamingKnown(() =>
    v2rayPluginOptions({ name: 'v2ray-plugin', options: { tls: '', fp: 'edge' } }),
  );
});

test('ladder:// fp: the default for its transports; unknown values refused', () => {
  const k = parseLadderKey(formatLadderKey({ transports: ['trojan://pw@h:443'], fp: 'node' }));
  assert.equal(k.fp, 'node');
  const body = Buffer.from(
    JSON.stringify({ v: 1, transports: ['trojan://pw@h:443'], fp: 'ie6' }),
  ).toString('base64url');
  refusedNamingKnown(() => parseLadderKey(`ladder://${body}`));
});
