/**
 * Outline's prefix disguise (issue #4 item 3): the presets meet the FET exemptions by themselves and
 * stay Shadowsocks to the one-port classifier; the client puts the prefix on the wire as the first
 * bytes of the salt; Ladder's server and Debian's ss-server both accept prefixed salts (to them the
 * salt is just a salt); `ladder keys new --prefix-preset` writes the key and warns when the prefix
 * leaves few salt bytes random.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import type { Duplex } from 'node:stream';
import { PREFIX_PRESETS, prefixWeakness } from '../../src/codec/ss-prefix.js';
import { FET_DEFAULTS, fetExemption } from '../../src/lab/modules/fet.js';
import { classifyFirstBytes } from '../../src/codec/tls-hello.js';
import { parseSsUri } from '../../src/codec/access-key-uri.js';
import { SS_METHODS } from '../../src/crypto/methods.js';
import { makeCipherKey } from '../../src/crypto/ss-key.js';
import { SsStreamDialer } from '../../src/transport/ss-dialer.js';
import { SsServer } from '../../src/server/ss-server.js';
import { DirectDialer } from '../../src/transport/direct.js';
import { tcpEcho } from '../helpers/echo.js';
import { hasCommand, LADDER_CLI, startLibev } from '../helpers/peers.js';

const echo = await tcpEcho();
after(() => echo.close());

test('every preset is exempt from FET Algorithm 1 by itself, whatever the random rest (§1)', () => {
  for (const p of PREFIX_PRESETS) {
    for (let i = 0; i < 500; i++) {
      const first = randomBytes(32 + 2 + 16 + Math.floor(Math.random() * 400));
      first.set(p.bytes, 0);
      // Algorithm 1 reports the first rule met; Ex1 (popcount) or Ex2 may come first by chance
      assert.notEqual(fetExemption(first), undefined, `${p.name}: sample ${i}`);
      // with every rule but the preset's own switched off, the preset's rule still holds
      const only = {
        ...FET_DEFAULTS,
        popLo: -1,
        popHi: 99,
        ...(p.exemption === 'Ex5' ? { prefixLen: 1e9 } : {}),
        fracPrintable: 1,
        runLen: 1e9,
      };
      assert.equal(fetExemption(first, only), p.exemption, `${p.name}: sample ${i}`);
    }
  }
  // and the control: plain salts are not exempt (random data: mean popcount 4, no printable start)
  let exempt = 0;
  for (let i = 0; i < 500; i++) if (fetExemption(randomBytes(300)) !== undefined) exempt++;
  assert.ok(exempt < 50, `${exempt}/500 random first packets exempt`);
});

test('no preset looks like a ClientHello to the one-port classifier', () => {
  for (const p of PREFIX_PRESETS)
    for (let i = 0; i < 2000; i++) {
      const first = randomBytes(64);
      first.set(p.bytes, 0);
      assert.equal(classifyFirstBytes(first), 'other', p.name);
    }
});

test('weakness warning below 12 random salt bytes, none with 32-byte salts', () => {
  for (const p of PREFIX_PRESETS) {
    assert.equal(prefixWeakness('aes-256-gcm', p.bytes), undefined, p.name);
    assert.equal(prefixWeakness('2022-blake3-chacha20-poly1305', p.bytes), undefined, p.name);
  }
  assert.match(prefixWeakness('aes-128-gcm', Buffer.from('POST '))!, /leaves 11 of .*2\^44/);
  assert.equal(prefixWeakness('aes-128-gcm', Buffer.from('GET')), undefined);
  assert.throws(
    () =>
      new SsStreamDialer({ host: '127.0.0.1', port: 1 }, makeCipherKey('aes-128-gcm', 'x'), {
        prefix: Buffer.alloc(9),
      }),
    /fewer than 8/,
  );
});

/** A TCP tap in front of `port` that records the first chunk each client sends. */
async function tap(port: number) {
  const firsts: Buffer[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((c) => {
    sockets.add(c);
    const up = connect(port, '127.0.0.1');
    sockets.add(up);
    let first = true;
    c.on('data', (d: Buffer) => {
      if (first) firsts.push(Buffer.from(d));
      first = false;
      up.write(d);
    });
    up.on('data', (d: Buffer) => c.write(d));
    c.on('end', () => up.end());
    up.on('end', () => c.end());
    c.on('error', () => up.destroy());
    up.on('error', () => c.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    firsts,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

async function roundTrip(d: Duplex, payload: Buffer): Promise<Buffer> {
  const parts: Buffer[] = [];
  let got = 0;
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no echo')), 5000);
    d.on('data', (c: Buffer) => {
      parts.push(c);
      got += c.length;
      if (got >= payload.length) {
        clearTimeout(t);
        resolve();
      }
    });
    d.on('error', reject);
    d.write(payload);
  });
  d.destroy();
  return Buffer.concat(parts);
}

for (const method of ['aes-256-gcm', '2022-blake3-aes-256-gcm', 'aes-128-gcm'] as const) {
  test(`${method}: the client sends the prefix as the salt's first bytes and Ladder's server accepts it`, async () => {
    const spec = SS_METHODS[method];
    const password =
      spec.edition === 2017 ? 'prefix-test' : randomBytes(spec.keySize).toString('base64');
    const key = makeCipherKey(method, password);
    const server = new SsServer({ keys: [{ id: 'k', key }], dialer: new DirectDialer() });
    const addr = await server.listen('127.0.0.1', 0);
    const t = await tap(addr.port);
    try {
      const presets = PREFIX_PRESETS.filter((p) => p.bytes.length <= spec.saltSize - 8);
      assert.ok(presets.length >= 3);
      for (const p of presets) {
        const dialer = new SsStreamDialer({ host: '127.0.0.1', port: t.port }, key, {
          prefix: p.bytes,
        });
        const d = await dialer.dial({ host: '127.0.0.1', port: echo.port });
        const payload = randomBytes(3000);
        assert.deepEqual(await roundTrip(d, payload), payload, p.name);
        const first = t.firsts.at(-1)!;
        assert.deepEqual(first.subarray(0, p.bytes.length), Buffer.from(p.bytes), p.name);
        assert.notEqual(fetExemption(first), undefined, p.name);
      }
    } finally {
      await t.close();
      await server.close(200);
    }
  });
}

test(
  "ladder client with a prefixed key through Debian's ss-server (libev accepts prefixed salts)",
  {
    skip: hasCommand('ss-server') ? false : 'needs ss-server (shadowsocks-libev)',
  },
  async () => {
    const port = 20000 + Math.floor(Math.random() * 20000);
    const password = randomBytes(12).toString('base64url');
    const libev = await startLibev('ss-server', {
      server: '127.0.0.1',
      server_port: port,
      password,
      method: 'chacha20-ietf-poly1305',
      timeout: 10,
    });
    try {
      const k = spawnSync(
        process.execPath,
        [
          LADDER_CLI,
          'keys',
          'new',
          '--method',
          'chacha20-ietf-poly1305',
          '--prefix-preset',
          'tls',
          '--port',
          String(port),
          '--json',
        ],
        { encoding: 'utf8' },
      );
      assert.equal(k.status, 0, k.stderr);
      const uri = (JSON.parse(k.stdout) as { uri: string }).uri;
      const parsed = parseSsUri(uri);
      assert.equal(Buffer.from(parsed.prefix!).toString('hex'), '16030100a80101');
      // the same prefix with libev's password
      const dialer = new SsStreamDialer(
        { host: '127.0.0.1', port },
        makeCipherKey('chacha20-ietf-poly1305', password),
        { prefix: parsed.prefix! },
      );
      const d = await dialer.dial({ host: '127.0.0.1', port: echo.port });
      const payload = randomBytes(5000);
      assert.deepEqual(await roundTrip(d, payload), payload);
    } finally {
      await libev.stop();
    }
  },
);

test('ladder keys new --prefix-preset: key carries the preset, warns on a 16-byte salt, refuses bad use', () => {
  const run = (...args: string[]) =>
    spawnSync(process.execPath, [LADDER_CLI, 'keys', 'new', ...args], { encoding: 'utf8' });
  const ok = run('--method', '2022-blake3-aes-256-gcm', '--prefix-preset', 'http');
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout.split('\n')[0]!, /\?prefix=POST%20/);
  assert.equal(ok.stderr, '');
  const weak = run('--method', 'aes-128-gcm', '--prefix-preset', 'tls');
  assert.equal(weak.status, 0);
  assert.match(weak.stderr, /warning: the 7-byte prefix leaves 9 of aes-128-gcm's 16 salt bytes/);
  const tooLong = run('--method', 'aes-128-gcm', '--prefix-preset', 'ssh');
  assert.equal(tooLong.status, 2);
  assert.match(tooLong.stderr, /keep it to 8 or fewer/);
  const unknown = run('--prefix-preset', 'nope');
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /unknown preset 'nope'; presets: http, http-response, tls/);
  const both = run('--prefix-preset', 'http', '--prefix', 'GET%20');
  assert.equal(both.status, 2);
});
