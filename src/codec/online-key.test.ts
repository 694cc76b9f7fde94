// Online keys: Outline's dynamic key answers (ss:// text, legacy JSON, the YAML tunnel config, an
// error) and Ladder's signed key documents (sign, verify, and the ways a forged or damaged one
// fails). The YAML examples follow Outline's Config Reference ("A typical Shadowsocks
// configuration", "YAML anchors and the << merge key", "Error example").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { parseSsUri } from './access-key-uri.js';
import { parseLadderKey } from './ladder-key.js';
import { v2rayPluginOptions } from './v2ray-plugin.js';
import {
  checkKeyDocumentBody,
  openKeyDocument,
  rawPublicKey,
  signKeyDocument,
} from './key-document.js';
import {
  documentAccessKey,
  formatLadderOnlineKey,
  outlineDocumentKey,
  parseOnlineKeyUri,
} from './online-key.js';

const SS = 'ss://Y2hhY2hhMjAtaWV0Zi1wb2x5MTMwNTpzZWNyZXQ@198.18.0.1:4321';

test('online key URIs: ssconf:// is fetched over https, #ladder-pub pins the operator key', () => {
  assert.deepEqual(parseOnlineKeyUri('ssconf://keys.example/a/b#Home'), {
    kind: 'outline',
    url: 'https://keys.example/a/b',
    name: 'Home',
  });
  const { publicKey } = generateKeyPairSync('ed25519');
  const raw = rawPublicKey(publicKey);
  const uri = formatLadderOnlineKey('https://m.example/k/doc', raw, 'Team');
  const k = parseOnlineKeyUri(uri);
  assert.equal(k.kind, 'ladder');
  assert.equal(k.url, 'https://m.example/k/doc');
  assert.deepEqual(k.kind === 'ladder' && Buffer.from(k.publicKey), raw);
  assert.equal(k.name, 'Team');
  assert.throws(() => parseOnlineKeyUri('https://m.example/#ladder-pub=short'), /32 bytes/);
  assert.throws(() => parseOnlineKeyUri('http://m.example/x'), /ssconf:\/\/' or 'https:\/\//);
  assert.throws(() => parseOnlineKeyUri('ssconf://[bad'), /not a URL/);
});

test("Outline's answers: ss:// text, legacy JSON, YAML, YAML with anchors, error", () => {
  assert.equal(outlineDocumentKey(`${SS}\n`), SS);
  const json = outlineDocumentKey(
    JSON.stringify({
      server: '198.18.0.1',
      server_port: 4321,
      password: 'secret',
      method: 'chacha20-ietf-poly1305',
      prefix: '\u0016\u0003\u0001',
    }),
  );
  const j = parseSsUri(json);
  assert.equal(j.host, '198.18.0.1');
  assert.equal(j.port, 4321);
  assert.equal(j.password, 'secret');
  assert.deepEqual([...(j.prefix ?? [])], [0x16, 3, 1]);

  const yaml = [
    'transport:',
    '  $type: tcpudp',
    '  tcp:',
    '    $type: shadowsocks',
    '    endpoint: ss.example.com:4321',
    '    cipher: chacha20-ietf-poly1305',
    '    secret: SECRET',
    '    prefix: "POST "',
    '  udp:',
    '    $type: shadowsocks',
    '    endpoint: ss.example.com:4321',
    '    cipher: chacha20-ietf-poly1305',
    '    secret: SECRET',
  ].join('\n');
  const y = parseSsUri(outlineDocumentKey(yaml, 'Home'));
  assert.equal(y.host, 'ss.example.com');
  assert.equal(y.password, 'SECRET');
  assert.equal(Buffer.from(y.prefix ?? []).toString('latin1'), 'POST ');
  assert.equal(y.tag, 'Home');

  const anchors = [
    'transport:',
    '  $type: tcpudp',
    '  tcp:',
    '    <<: &shared',
    '      $type: shadowsocks',
    '      endpoint: ss.example.com:4321',
    '      cipher: chacha20-ietf-poly1305',
    '      secret: SECRET',
    '    prefix: "POST "',
    '  udp: *shared',
  ].join('\n');
  assert.equal(parseSsUri(outlineDocumentKey(anchors)).password, 'SECRET');

  assert.throws(
    () =>
      outlineDocumentKey('error:\n  message: Quota exceeded\n  details: Used 100GB out of 100GB'),
    /the operator's server says: Quota exceeded \(Used 100GB/,
  );
  assert.throws(() => outlineDocumentKey('<html>blocked</html>'), /not a key document|neither/);
  assert.throws(() => outlineDocumentKey('{"server": "h"}'), /server_port/);
});

test('signed documents: round trip; forged, changed, wrong key, bad fields all refused', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const other = generateKeyPairSync('ed25519');
  const pub = rawPublicKey(publicKey);
  const body = {
    serial: 7,
    issued: '2026-01-01T00:00:00.000Z',
    keys: [SS],
    mirrors: ['https://m1.example/doc'],
    name: 'Team',
  };
  const text = signKeyDocument(body, privateKey);
  assert.deepEqual(openKeyDocument(text, pub), body);

  assert.throws(() => openKeyDocument(text, rawPublicKey(other.publicKey)), /does not verify/);
  const outer = JSON.parse(text) as { body: string; sig: string };
  const changed = Buffer.from(outer.body, 'base64url');
  changed[changed.length - 3]! ^= 1;
  assert.throws(
    () =>
      openKeyDocument(
        JSON.stringify({ ...outer, 'ladder-key-document': 1, body: changed.toString('base64url') }),
        pub,
      ),
    /does not verify/,
  );
  assert.throws(
    () => openKeyDocument(signKeyDocument(body, other.privateKey), pub),
    /does not verify/,
  );
  assert.throws(() => openKeyDocument('not json', pub), /not JSON/);
  assert.throws(() => openKeyDocument('{"ladder-key-document": 2}', pub), /version/);
  assert.throws(() => openKeyDocument(' '.repeat(70_000), pub), /over 64 KiB/);
  assert.throws(() => checkKeyDocumentBody({ ...body, serial: 0 }), /serial/);
  assert.throws(() => checkKeyDocumentBody({ ...body, keys: [] }), /"keys"/);
  assert.throws(() => checkKeyDocumentBody({ ...body, issued: 'yesterday' }), /issued/);
});

test("a document's keys become one access key: the only one, or a ladder:// key of them all", () => {
  const base = { serial: 1, issued: '2026-01-01T00:00:00Z', mirrors: [] };
  assert.equal(documentAccessKey({ ...base, keys: [SS] }, 'Home'), `${SS}#Home`);
  const two = documentAccessKey({ ...base, keys: [SS, `${SS.replace('4321', '4322')}#b`] }, 'Team');
  const lk = parseLadderKey(two);
  assert.equal(lk.transports.length, 2);
  assert.equal(lk.name, 'Team');
});

/** Outline's YAML with `endpoint` indented under a tcpudp transport's tcp dialer. */
function withEndpoint(endpoint: string[]): string {
  return [
    'transport:',
    '  $type: tcpudp',
    '  tcp:',
    '    $type: shadowsocks',
    '    endpoint:',
    ...endpoint.map((l) => `      ${l}`),
    '    cipher: chacha20-ietf-poly1305',
    '    secret: SS_SECRET',
  ].join('\n');
}

// Outline Config Reference, "Shadowsocks over WebSockets" and "Endpoints" (dial, websocket with an
// inner endpoint, first-supported).
test("Outline's endpoints: websocket becomes v2ray-plugin mux=0, dial and first-supported", () => {
  const ws = parseSsUri(
    outlineDocumentKey(withEndpoint(['$type: websocket', 'url: wss://ws.example/SECRET_PATH/tcp'])),
  );
  assert.equal(ws.host, 'ws.example');
  assert.equal(ws.port, 443);
  assert.equal(ws.password, 'SS_SECRET');
  assert.deepEqual(ws.plugin, {
    name: 'v2ray-plugin',
    options: { path: '/SECRET_PATH/tcp', host: 'ws.example', tls: '', mux: '0' },
  });
  const plugin = v2rayPluginOptions(ws.plugin);
  assert.equal(plugin?.mux, false);
  assert.equal(plugin?.tls, true);

  // The inner endpoint is where the client connects; the URL's host stays the name it asks for.
  const inner = parseSsUri(
    outlineDocumentKey(
      withEndpoint(['$type: websocket', 'url: wss://ws.example/p', 'endpoint: 198.18.0.9:8443']),
    ),
  );
  assert.equal(inner.host, '198.18.0.9');
  assert.equal(inner.port, 8443);
  assert.equal(inner.plugin?.options.host, 'ws.example');

  const plain = parseSsUri(
    outlineDocumentKey(withEndpoint(['$type: websocket', 'url: ws://198.18.0.3:8080/x?y=1'])),
  );
  assert.equal(plain.port, 8080);
  assert.equal(plain.plugin?.options.path, '/x?y=1');
  assert.equal(plain.plugin?.options.tls, undefined);

  const dial = parseSsUri(
    outlineDocumentKey(withEndpoint(['$type: dial', 'address: 198.18.0.4:4321'])),
  );
  assert.equal(dial.host, '198.18.0.4');
  assert.equal(dial.plugin, undefined);

  const first = parseSsUri(
    outlineDocumentKey(
      withEndpoint([
        '$type: first-supported',
        'endpoints:',
        '  - $type: quic',
        '    address: 198.18.0.5:443',
        '  - $type: websocket',
        '    url: wss://ws.example/f',
      ]),
    ),
  );
  assert.equal(first.plugin?.options.path, '/f');
});

test("Outline's endpoints Ladder cannot carry are refused, saying what they were", () => {
  const refused: [string[], RegExp][] = [
    [
      [
        '$type: dial',
        'address: exit.example:4321',
        'dialer:',
        '  $type: shadowsocks',
        '  address: entry.example:4321',
      ],
      /multi-hop/,
    ],
    [['$type: quic', 'address: h:1'], /endpoint type 'quic' is not supported/],
    [['$type: websocket', 'url: https://h/p'], /must start with wss:\/\/ or ws:\/\//],
    [['$type: websocket'], /needs "url: wss:/],
    [['$type: first-supported', 'endpoints: []'], /it lists none/],
    [
      ['$type: first-supported', 'endpoints:', '  - $type: tls', '    address: h:1'],
      /no endpoint of first-supported.*'tls'/,
    ],
    [
      ['$type: websocket', 'url: wss://a/p', 'endpoint:', '  $type: websocket', '  url: wss://b/q'],
      /inside a websocket/,
    ],
    [['- h:1'], /host:port or an object/],
  ];
  for (const [endpoint, why] of refused)
    assert.throws(() => outlineDocumentKey(withEndpoint(endpoint)), why, endpoint.join(' '));
  // Nesting is bounded: a deep chain of first-supported is refused, not followed.
  const deep = ['$type: first-supported', 'endpoints:'];
  let indent = '  ';
  for (let i = 0; i < 8; i++) {
    deep.push(`${indent}- $type: first-supported`, `${indent}  endpoints:`);
    indent += '    ';
  }
  deep.push(`${indent}- h.example:1`);
  assert.throws(() => outlineDocumentKey(withEndpoint(deep)), /no endpoint of first-supported/);
  assert.throws(
    () => outlineDocumentKey('transport:\n  $type: tcpudp\n  tcp:\n    $type: tls\n'),
    /only a Shadowsocks TCP transport.*'tls'/,
  );
});
