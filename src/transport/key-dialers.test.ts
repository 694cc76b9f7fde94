// The key builder shared by `ladder client` and `ladder probe`: what it takes from outside (files,
// warnings) comes through KeyEnv, and the probe's plain dial speaks what the key says.
import test from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { formatLadderKey } from '../codec/ladder-key.js';
import { LadderError } from '../errors.js';
import { dialersFromKey, keyTransport, serverNamesOfKey, type KeyEnv } from './key-dialers.js';
import { transportsFromKey } from '../probe/transports.js';

function recordingEnv(files: Record<string, string> = {}): KeyEnv & {
  warnings: string[];
  reads: string[];
} {
  const warnings: string[] = [];
  const reads: string[] = [];
  return {
    warnings,
    reads,
    readFile(path) {
      reads.push(path);
      const text = files[path];
      if (text === undefined) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
      return text;
    },
    warn: (m) => warnings.push(m),
  };
}

const SS = 'ss://chacha20-ietf-poly1305:secret-password@198.18.9.1:8388';
// 7 of aes-128-gcm's 16 salt bytes fixed: a prefix that works, with a warning.
const WEAK = 'ss://aes-128-gcm:secret-password@198.18.9.1:8388?prefix=POST%20%2Fx';
const WS_CERT =
  'ss://chacha20-ietf-poly1305:pw@198.18.9.1:443?plugin=v2ray-plugin%3Bpath%3D%2Fp%3Bhost%3Dcdn.example%3Btls%3Bcert%3D%2Fetc%2Fladder%2Fca.pem';

test('a weak prefix is a warning through env.warn, not stderr', () => {
  const env = recordingEnv();
  const t = keyTransport(WEAK, {}, env);
  assert.equal(t.kind, 'shadowsocks');
  assert.equal(env.warnings.length, 1);
  assert.match(env.warnings[0]!, /prefix leaves 9 of aes-128-gcm's 16 salt bytes random/);
  assert.equal(keyTransport(SS, {}, env).kind, 'shadowsocks');
  assert.equal(env.warnings.length, 1);
});

test('a v2ray-plugin cert= file is read through env.readFile, once, when the key is taken', () => {
  const env = recordingEnv({ '/etc/ladder/ca.pem': 'PEM' });
  const d = dialersFromKey(WS_CERT, {}, env);
  assert.deepEqual(env.reads, ['/etc/ladder/ca.pem']);
  assert.match(d.what, /over WebSocket over TLS/);
  const missing = recordingEnv();
  assert.throws(
    () => dialersFromKey(WS_CERT, {}, missing),
    (err: unknown) =>
      err instanceof LadderError &&
      err.code === 'ERR_KEY_URI' &&
      /cert=\/etc\/ladder\/ca\.pem: no such file/.test(err.message),
  );
});

test('a ladder:// key: unknown schemes skipped by position, tags listed, one failover', () => {
  const key = formatLadderKey({
    transports: ['vmess://abc', `${SS}#fast`, 'trojan://pw@198.18.9.2:443?sni=example.org#tls'],
    fp: 'node',
  });
  const d = dialersFromKey(key, {}, recordingEnv());
  assert.deepEqual(
    d.skipped.map((s) => s.replace(/:.*/, '')),
    ['transport 1'],
  );
  assert.ok(d.failover);
  assert.deepEqual([...d.transports.keys()], ['fast', 'tls']);
  assert.match(d.what, /^2 transports, first 198\.18\.9\.1:8388 with chacha20-ietf-poly1305$/);
  const onlyBad = formatLadderKey({ transports: ['vmess://abc'] });
  assert.throws(
    () => dialersFromKey(onlyBad, {}, recordingEnv()),
    /no transport this Ladder can use/,
  );
});

test("a ladder:// key's fp reaches its TLS transports (client what-line says fp=node only for the URI's own fp)", () => {
  const trojan = keyTransport(
    'trojan://pw@198.18.9.2:443?sni=example.org&fp=node',
    {},
    recordingEnv(),
  );
  assert.match(trojan.what, /\(fp=node\)/);
  assert.equal(trojan.kind === 'trojan' && trojan.tlsServerName, 'example.org');
});

test('the probe dials the key as it is: its prefix opens the connection it was given', async () => {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const socket = connect(port, '127.0.0.1');
  try {
    await once(socket, 'connect');
    const [peer] = await accepted;
    const t = transportsFromKey(WEAK.replace('198.18.9.1:8388', `127.0.0.1:${port}`))[0]!;
    assert.equal(t.name, 'shadowsocks aes-128-gcm (prefix)');
    const d = t.dialers('127.0.0.1', { timeoutMs: 5000, socket });
    const stream = await d.stream.dial({ host: 'example.org', port: 80 });
    stream.write('GET / HTTP/1.1\r\n\r\n');
    let got = Buffer.alloc(0);
    for await (const chunk of peer) {
      got = Buffer.concat([got, chunk as Buffer]);
      if (got.length >= 7) break;
    }
    assert.equal(got.subarray(0, 7).toString('latin1'), 'POST /x');
    stream.destroy();
    peer.destroy();
  } finally {
    socket.destroy();
    server.close();
  }
});

test('serverNamesOfKey: the names the transports dial, not literals, not a DNS tunnel', () => {
  const ss = Buffer.from('chacha20-ietf-poly1305:pw').toString('base64url');
  const key = formatLadderKey({
    transports: [
      `trojan://pw@ladder.lab:443?sni=allowed.lab`,
      `ss://${ss}@ladder.lab:8388`,
      `ss://${ss}@198.19.2.20:8388`,
      `trojan://pw@[2001:2::20]:443`,
      `ss://${ss}@spare.lab:8388`,
      `ss://${Buffer.from('2022-blake3-aes-128-gcm:' + Buffer.alloc(16).toString('base64')).toString('base64url')}@tunnel-server.lab:53?dns=t.ladder.lab`,
      'vmess://abc',
    ],
  });
  assert.deepEqual(serverNamesOfKey(key), ['ladder.lab', 'spare.lab']);
  assert.deepEqual(serverNamesOfKey(`ss://${ss}@127.0.0.1:8388`), []);
});
