import { test } from 'node:test';
import assert from 'node:assert/strict';
import { v2rayPlugin, v2rayPluginOptions } from './v2ray-plugin.js';
import { formatSsUri, parseSsUri, parsePluginText } from './access-key-uri.js';
import { ConfigError } from '../errors.js';

test("the brief's key: plugin=v2ray-plugin;path=/secret;host=example.com;tls", () => {
  const k = parseSsUri(
    'ss://YWVzLTI1Ni1nY206cHc@198.18.0.1:443?plugin=v2ray-plugin%3Bpath%3D%2Fsecret%3Bhost%3Dexample.com%3Btls',
  );
  assert.deepEqual(v2rayPluginOptions(k.plugin), {
    path: '/secret',
    host: 'example.com',
    tls: true,
    mux: true,
  });
});

test("v2ray-plugin's defaults: path /, host cloudfront.com, no TLS, mux on; Debian's binary name too", () => {
  assert.deepEqual(v2rayPluginOptions(parsePluginText('ss-v2ray-plugin')), {
    path: '/',
    host: 'cloudfront.com',
    tls: false,
    mux: true,
  });
  assert.equal(v2rayPluginOptions(parsePluginText('v2ray-plugin;mux=0'))!.mux, false);
  assert.equal(v2rayPluginOptions(parsePluginText('v2ray-plugin;mux=8'))!.mux, true);
  assert.equal(v2rayPluginOptions(parsePluginText('obfs-local;obfs=http')), null);
  assert.equal(v2rayPluginOptions(undefined), null);
});

test('refused with a message naming the option: quic mode, a bad path, a bad mux, a bad pin', () => {
  for (const text of [
    'v2ray-plugin;mode=quic',
    'v2ray-plugin;path=relative',
    'v2ray-plugin;mux=yes',
    'v2ray-plugin;pin=12',
    'v2ray-plugin;host=a b',
  ])
    assert.throws(() => v2rayPluginOptions(parsePluginText(text)), ConfigError, text);
});

test('written and read back through a whole ss:// key', () => {
  const o = { path: '/p', host: 'cdn.example', tls: true, mux: false, pinSha256: 'ab'.repeat(32) };
  const uri = formatSsUri({
    method: 'chacha20-ietf-poly1305',
    password: 'pw',
    host: '198.18.0.1',
    port: 443,
    plugin: v2rayPlugin(o),
  });
  assert.match(
    uri,
    /plugin=v2ray-plugin%3Bpath%3D%2Fp%3Bhost%3Dcdn\.example%3Btls%3Bmux%3D0%3Bpin%3Dabab/,
  );
  assert.deepEqual(v2rayPluginOptions(parseSsUri(uri).plugin), o);
});
