import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  SecretPaths,
  acceptUpgradeRequest,
  checkUpgradeResponse,
  requestPath,
  upgradeRequest,
  upgradeResponse,
} from './websocket-handshake.js';
import { decodeRequestHead, decodeResponseHead } from './http-proxy.js';
import { ConfigError } from '../errors.js';

const KEY = 'dGhlIHNhbXBsZSBub25jZQ=='; // RFC 6455 §1.3
const paths = new SecretPaths(['/secret', '/other/path']);

function head(text: string) {
  return decodeRequestHead(Buffer.from(text, 'latin1'), 0)!.value;
}

function request(path: string, extra = '', drop: string[] = []): string {
  const lines = [
    `GET ${path} HTTP/1.1`,
    'Host: example.com',
    'Upgrade: websocket',
    'Connection: keep-alive, Upgrade',
    `Sec-WebSocket-Key: ${KEY}`,
    'Sec-WebSocket-Version: 13',
  ].filter((l) => !drop.some((d) => l.startsWith(d)));
  return `${lines.join('\r\n')}\r\n${extra}\r\n`;
}

test('the client request is accepted on its path, and the 101 answer satisfies the client', () => {
  const req = upgradeRequest({ path: '/secret', host: 'cdn.example', key: KEY });
  const h = decodeRequestHead(req, 0)!.value;
  assert.equal(acceptUpgradeRequest(h, paths), KEY);
  assert.match(
    req.toString(),
    /^GET \/secret HTTP\/1\.1\r\nHost: cdn\.example\r\nUser-Agent: Mozilla\/5\.0 /,
  );
  const res = decodeResponseHead(upgradeResponse(KEY), 0)!.value;
  assert.equal(checkUpgradeResponse(res, KEY), null);
  // RFC 6455 §1.3's example answer
  assert.match(
    upgradeResponse(KEY).toString(),
    /Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=\r\n/,
  );
});

test('paths: query ignored, absolute-form and percent-encoding understood, anything else refused', () => {
  assert.equal(acceptUpgradeRequest(head(request('/secret?ed=2048')), paths), KEY);
  assert.equal(acceptUpgradeRequest(head(request('http://example.com/other/path')), paths), KEY);
  assert.equal(acceptUpgradeRequest(head(request('/sec%72et')), paths), KEY);
  for (const p of ['/', '/secret/', '/Secret', '/secre', '/secretx', '/other', '/%zz'])
    assert.equal(acceptUpgradeRequest(head(request(p)), paths), null, p);
  assert.equal(requestPath('/a%2Fb?x'), '/a/b');
});

test('a request on the secret path that is not a proper upgrade belongs to the web site', () => {
  for (const drop of [
    'Upgrade:',
    'Connection:',
    'Sec-WebSocket-Key:',
    'Sec-WebSocket-Version:',
    'Host:',
  ])
    assert.equal(acceptUpgradeRequest(head(request('/secret', '', [drop])), paths), null, drop);
  assert.equal(acceptUpgradeRequest(head(request('/secret').replace('GET', 'POST')), paths), null);
  assert.equal(
    acceptUpgradeRequest(head(request('/secret').replace('Version: 13', 'Version: 8')), paths),
    null,
  );
  assert.equal(acceptUpgradeRequest(head(request('/secret').replace(KEY, 'short')), paths), null);
  assert.equal(
    acceptUpgradeRequest(head(request('/secret').replace('HTTP/1.1', 'HTTP/1.0')), paths),
    null,
  );
});

test('the client refuses wrong answers, naming why', () => {
  const ok = decodeResponseHead(upgradeResponse(KEY), 0)!.value;
  assert.match(checkUpgradeResponse({ ...ok, status: 404 }, KEY)!, /HTTP 404 instead of 101/);
  assert.match(checkUpgradeResponse(ok, 'AAAAAAAAAAAAAAAAAAAAAA==')!, /Sec-WebSocket-Accept/);
  assert.match(
    checkUpgradeResponse({ ...ok, headers: ok.headers.filter(([k]) => k !== 'Upgrade') }, KEY)!,
    /Upgrade/,
  );
});

test('bad paths and hosts for a client request are ConfigErrors', () => {
  assert.throws(() => upgradeRequest({ path: 'secret', host: 'h', key: KEY }), ConfigError);
  assert.throws(() => upgradeRequest({ path: '/a b', host: 'h', key: KEY }), ConfigError);
  assert.throws(() => upgradeRequest({ path: '/a', host: 'h\r\nX: y', key: KEY }), ConfigError);
});

test('SecretPaths: exact match only, duplicates collapse', () => {
  const s = new SecretPaths(['/a', '/a', '/b']);
  assert.equal(s.size, 2);
  assert.ok(s.has('/a') && s.has('/b'));
  assert.ok(!s.has('/c') && !s.has('') && !s.has('/a '));
  assert.ok(!new SecretPaths([]).has('/'));
});
