/**
 * parseServerConfig: the flags of `ladder server` become one checked configuration, with every
 * usage error raised before anything starts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LadderError } from '../errors.js';
import { parseServerConfig, parseServerFlags } from './server-config.js';

const b64 = (s: string): string => Buffer.from(s).toString('base64url');
const SS = `ss://${b64('aes-256-gcm:secret')}@example.test:8388#alice`;
const SS_UNTAGGED = `ss://${b64('chacha20-ietf-poly1305:other')}@example.test:8388`;
const SS_WS = `ss://${b64('aes-128-gcm:ws')}@example.test:80/?plugin=${encodeURIComponent('v2ray-plugin;path=/ws-ss')}#wss`;
const TROJAN = 'trojan://pass@example.test:443#bob';
const TROJAN_WS = 'trojan://wspass@example.test:80?type=ws&path=%2Fws-t&security=none#plainws';

function config(...argv: string[]) {
  return parseServerConfig(parseServerFlags(argv));
}

function usage(argv: string[], message: RegExp, code = 'ERR_USAGE'): void {
  assert.throws(
    () => config(...argv),
    (err: unknown) => err instanceof LadderError && err.code === code && message.test(err.message),
  );
}

test('defaults: port 8388 on every address, UDP on, guard on, the documented timeouts and caps', () => {
  const c = config('--key', SS);
  assert.deepEqual(c.listen, { host: '0.0.0.0', port: 8388 });
  assert.equal(c.udp, true);
  assert.equal(c.allowPrivateTargets, false);
  assert.equal(c.authTimeoutMs, 60_000);
  assert.equal(c.idleTimeoutMs, 300_000);
  assert.equal(c.maxConnections, 8192);
  assert.equal(c.maxUnauthenticated, 4096);
  assert.equal(c.maxUnauthenticatedPerSource, 256);
  assert.equal(c.maxConnectionsPerKey, 0);
  assert.equal(c.tlsPort, false);
  assert.equal(c.operator, undefined);
  assert.equal(c.metrics, undefined);
});

test('flags override each default; --max-unauthenticated follows --max-connections', () => {
  const c = config(
    '--key',
    SS,
    '--listen',
    '127.0.0.1:9000',
    '--no-udp',
    '--allow-private-targets',
    '--auth-timeout',
    '1.5',
    '--idle-timeout',
    '30',
    '--max-connections',
    '11',
    '--max-unauthenticated-per-source',
    '3',
    '--max-connections-per-key',
    '2',
    '--hosts',
    '/nonexistent/hosts',
    '--metrics',
    '127.0.0.1:9090',
  );
  assert.deepEqual(c.listen, { host: '127.0.0.1', port: 9000 });
  assert.equal(c.udp, false);
  assert.equal(c.allowPrivateTargets, true);
  assert.equal(c.authTimeoutMs, 1500);
  assert.equal(c.idleTimeoutMs, 30_000);
  assert.equal(c.maxConnections, 11);
  assert.equal(c.maxUnauthenticated, 5);
  assert.equal(c.maxUnauthenticatedPerSource, 3);
  assert.equal(c.maxConnectionsPerKey, 2);
  // Pure: the hosts file is named, not read.
  assert.equal(c.hostsFile, '/nonexistent/hosts');
  assert.deepEqual(c.metrics, { host: '127.0.0.1', port: 9090 });
});

test('keys: Shadowsocks and Trojan, named by tag or position; WebSocket paths collected', () => {
  const c = config(
    '--key',
    SS,
    '--key',
    SS_UNTAGGED,
    '--key',
    TROJAN,
    '--key',
    SS_WS,
    '--key',
    TROJAN_WS,
  );
  assert.deepEqual(
    c.ssKeys.map((k) => [k.id, k.key.method]),
    [
      ['alice', 'aes-256-gcm'],
      ['key-2', 'chacha20-ietf-poly1305'],
      ['wss', 'aes-128-gcm'],
    ],
  );
  assert.deepEqual(
    c.trojanUsers.map((u) => u.id),
    ['bob', 'plainws'],
  );
  assert.deepEqual(c.wsPaths, ['/ws-ss', '/ws-t']);
  assert.equal(c.wsPlain, true);
  assert.equal(c.tlsPort, true);
});

test('a TLS port comes with Trojan keys, WebSocket keys or --trojan, and only then --fallback counts', () => {
  assert.equal(config('--key', SS, '--fallback', 'not a host').fallback, undefined);
  assert.deepEqual(config('--key', TROJAN, '--fallback', '127.0.0.1:8080').fallback, {
    host: '127.0.0.1',
    port: 8080,
  });
  assert.equal(config('--data', '/d', '--trojan').tlsPort, true);
  assert.deepEqual(config('--key', TROJAN, '--tls-cert', 'c.pem', '--tls-key', 'k.pem').tlsFiles, {
    cert: 'c.pem',
    key: 'k.pem',
  });
});

test('operator: the API on its own port by default, on the main port, or none', () => {
  const own = config('--data', '/d', '--listen', '127.0.0.2:8443');
  assert.deepEqual(own.operator, {
    dataDir: '/d',
    api: { kind: 'port', at: { host: '127.0.0.2', port: 0 } },
    trojan: false,
  });
  const main = config('--data', '/d', '--trojan', '--api', 'main', '--public-host', 'vpn.test');
  assert.deepEqual(main.operator, {
    dataDir: '/d',
    api: { kind: 'main' },
    publicHost: 'vpn.test',
    trojan: true,
  });
  const none = config('--data', '/d', '--store', 'postgres://u:p@127.0.0.1/db', '--no-api');
  assert.deepEqual(none.operator, {
    dataDir: '/d',
    store: 'postgres://u:p@127.0.0.1/db',
    api: { kind: 'none' },
    trojan: false,
  });
});

test('usage errors name the flag and the fix', () => {
  usage([], /give at least one --key/);
  usage(['--key', 'ss://nonsense'], /^--key #1: ss:\/\/ key: /, 'ERR_KEY_URI');
  usage(['--key', SS, '--key', SS.replace('secret', 'other')], /two keys share the name 'alice'/);
  for (const f of [
    ['--api', '127.0.0.1:1'],
    ['--no-api'],
    ['--public-host', 'h'],
    ['--trojan'],
    ['--store', 'postgres://x'],
  ])
    usage(['--key', SS, ...f], new RegExp(`^${f[0]} needs --data`));
  usage(['--key', SS, '--auth-timeout', '0'], /--auth-timeout '0' is not a positive number/);
  usage(
    ['--key', SS, '--max-connections', '1.5'],
    /--max-connections '1.5' is not a positive whole/,
  );
  usage(['--key', SS, '--ws-listen', '127.0.0.1:8080'], /--ws-listen needs WebSocket keys/);
  usage(['--data', '/d', '--api', 'main'], /--api main serves the API on the main TLS port/);
  usage(['--key', TROJAN, '--tls-cert', 'c.pem'], /give both --tls-cert and --tls-key/);
  usage(['--key', SS, '--bogus'], /Run 'ladder server --help'/);
});
