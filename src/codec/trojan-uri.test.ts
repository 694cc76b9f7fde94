import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { formatTrojanUri, parseTrojanUri } from './trojan-uri.js';
import { ConfigError } from '../errors.js';
import { checkKeyParserRefusesCleanly } from '../../test/helpers/key-uri-fuzz.js';

test('trojan-gfw style keys: password, host, port, sni (or peer), pin, tag', () => {
  assert.deepEqual(parseTrojanUri('trojan://p%40ss@198.18.0.1:8443?sni=a.example#home'), {
    password: 'p@ss',
    host: '198.18.0.1',
    port: 8443,
    sni: 'a.example',
    tag: 'home',
  });
  assert.equal(parseTrojanUri('trojan://pw@[2001:2::1]?peer=b.example').sni, 'b.example');
  assert.equal(parseTrojanUri('trojan://pw@[2001:2::1]').port, 443);
});

test("v2rayN's WebSocket share links: security, sni, type=ws, host, path", () => {
  const k = parseTrojanUri(
    'trojan://secret@198.18.0.1:443?security=tls&sni=cdn.example&type=ws&host=cdn.example&path=%2Fws-path#w',
  );
  assert.deepEqual(k, {
    password: 'secret',
    host: '198.18.0.1',
    port: 443,
    sni: 'cdn.example',
    tag: 'w',
    type: 'ws',
    path: '/ws-path',
    wsHost: 'cdn.example',
  });
  assert.equal(parseTrojanUri('trojan://s@h.example:80?type=ws&security=none').security, 'none');
  assert.equal(parseTrojanUri('trojan://s@h.example?type=ws').path, '/');
});

test('refused: other transports, no TLS without a WebSocket, bad paths, bad pins, empty passwords', () => {
  for (const bad of [
    'trojan://s@h.example?type=grpc',
    'trojan://s@h.example?security=none',
    'trojan://s@h.example?security=reality',
    'trojan://s@h.example?type=ws&path=no-slash',
    'trojan://s@h.example?pin=abcd',
    'trojan://@h.example',
    'trojan://s@h.example#%ZZ',
    'trojan://%E0%A4%A@h.example',
    'ss://x@h:1',
  ])
    assert.throws(() => parseTrojanUri(bad), ConfigError, bad);
});

test('split=1: plain Trojan over TLS only; 0 or absent: off; anything else refused', () => {
  assert.equal(parseTrojanUri('trojan://s@h.example?split=1').split, true);
  assert.equal(parseTrojanUri('trojan://s@h.example?split=0').split, undefined);
  assert.equal(parseTrojanUri('trojan://s@h.example').split, undefined);
  for (const bad of ['split=2', 'split=1&mux=8', 'split=1&type=ws&path=%2Fp'])
    assert.throws(
      () => parseTrojanUri(`trojan://s@h.example?${bad}`),
      (e: Error) => e instanceof ConfigError && /split/.test(e.message),
      bad,
    );
  const uri = formatTrojanUri({ password: 's', host: 'h.example', port: 443, split: true });
  assert.match(uri, /\?split=1$/);
  assert.equal(parseTrojanUri(uri).split, true);
});

test('pad=0: no Mux.Cool padding (with mux only); pad=1 or absent: padded; anything else refused', () => {
  assert.equal(parseTrojanUri('trojan://s@h.example?mux=8&pad=0').muxPadding, false);
  assert.equal(parseTrojanUri('trojan://s@h.example?mux=8&pad=1').muxPadding, undefined);
  assert.equal(parseTrojanUri('trojan://s@h.example?mux=8').muxPadding, undefined);
  assert.equal(parseTrojanUri('trojan://s@h.example?pad=0').muxPadding, undefined);
  assert.throws(
    () => parseTrojanUri('trojan://s@h.example?mux=8&pad=yes'),
    (e: Error) => e instanceof ConfigError && /pad/.test(e.message),
  );
  const uri = formatTrojanUri({
    password: 's',
    host: 'h.example',
    port: 443,
    mux: 8,
    muxPadding: false,
  });
  assert.match(uri, /\?mux=8&pad=0$/);
  assert.equal(parseTrojanUri(uri).muxPadding, false);
  assert.doesNotMatch(
    formatTrojanUri({ password: 's', host: 'h.example', port: 443, mux: 8 }),
    /pad/,
  );
});

test('mux=<n>: Mux.Cool sessions per connection, 1..1024; 0 or absent is none', () => {
  assert.equal(parseTrojanUri('trojan://s@h.example?mux=8').mux, 8);
  assert.equal(parseTrojanUri('trojan://s@h.example?type=ws&mux=1').mux, 1);
  assert.equal(parseTrojanUri('trojan://s@h.example?mux=0').mux, undefined);
  assert.equal(parseTrojanUri('trojan://s@h.example').mux, undefined);
  for (const bad of ['1025', '-1', 'yes', '1.5', '0x10'])
    assert.throws(
      () => parseTrojanUri(`trojan://s@h.example?mux=${bad}`),
      (e: Error) => e instanceof ConfigError && /mux/.test(e.message),
      bad,
    );
  assert.match(
    formatTrojanUri({ password: 's', host: 'h.example', port: 443, mux: 8 }),
    /\?mux=8$/,
  );
});

test('carrier=<size>: bytes per carrier connection, 1024 to 16 MiB; 0 or absent is off; not with mux', () => {
  const base = 'trojan://s@198.18.0.1';
  assert.equal(parseTrojanUri(`${base}?carrier=8k`).carrierBytes, 8000);
  assert.equal(parseTrojanUri(`${base}?carrier=12KiB`).carrierBytes, 12 * 1024);
  assert.equal(parseTrojanUri(`${base}?carrier=8192`).carrierBytes, 8192);
  assert.equal(parseTrojanUri(`${base}?carrier=16MiB`).carrierBytes, 16 * 1024 * 1024);
  assert.equal(parseTrojanUri(`${base}?carrier=0`).carrierBytes, undefined);
  assert.equal(parseTrojanUri(base).carrierBytes, undefined);
  assert.equal(parseTrojanUri(`${base}?type=ws&carrier=8k`).carrierBytes, 8000);
  for (const [bad, msg] of [
    ['carrier=1023', /1024 to 16777216/],
    ['carrier=17MiB', /1024 to 16777216/],
    ['carrier=lots', /bytes per carrier/],
    ['carrier=-5', /bytes per carrier/],
    ['carrier=8k&mux=4', /mux cannot be combined/],
  ] as const)
    assert.throws(
      () => parseTrojanUri(`${base}?${bad}`),
      (e: unknown) => e instanceof ConfigError && msg.test(e.message),
      bad,
    );
  const k = parseTrojanUri(`${base}?carrier=12KiB`);
  assert.deepEqual(parseTrojanUri(formatTrojanUri(k)), k);
});

test('what is written parses back to the same key', () => {
  fc.assert(
    fc.property(
      fc.string({ minLength: 1, maxLength: 40 }),
      fc.domain(),
      fc.integer({ min: 1, max: 65535 }),
      fc.boolean(),
      fc.boolean(),
      fc.option(fc.domain(), { nil: undefined }),
      fc.option(fc.integer({ min: 1, max: 1024 }), { nil: undefined }),
      (password, host, port, ws, tls, sni, mux) => {
        const k = {
          password,
          host,
          port,
          ...(sni ? { sni } : {}),
          ...(mux ? { mux } : {}),
          ...(ws
            ? {
                type: 'ws' as const,
                path: '/p q'.replace(' ', '-'),
                wsHost: host,
                ...(tls ? {} : { security: 'none' as const }),
              }
            : {}),
        };
        assert.deepEqual(parseTrojanUri(formatTrojanUri(k)), k);
      },
    ),
    { numRuns: 300 },
  );
});

test('fuzz: any text after trojan:// parses or is refused with a ConfigError, never another error', () => {
  // A #%ZZ tag once threw a bare URIError.
  checkKeyParserRefusesCleanly('trojan', parseTrojanUri, ['sni=', 'type=ws', 'mux=']);
});
