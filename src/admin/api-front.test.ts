import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import type { Duplex } from 'node:stream';
import { SecretPrefixFront, underSecretPrefix } from './api-front.js';
import { duplexPair } from '../../test/helpers/duplex-pair.js';

test('the secret prefix matches whole segments only, origin- or absolute-form', () => {
  assert.ok(underSecretPrefix('/Secret123/server', '/Secret123'));
  assert.ok(underSecretPrefix('/Secret123', '/Secret123'));
  assert.ok(underSecretPrefix('/Secret123?x', '/Secret123'));
  assert.ok(underSecretPrefix('https://h:1/Secret123/server', '/Secret123'));
  assert.ok(!underSecretPrefix('/Secret1234/server', '/Secret123'));
  assert.ok(!underSecretPrefix('/Secret12', '/Secret123'));
  assert.ok(!underSecretPrefix('/secret123/server', '/Secret123'));
  assert.ok(!underSecretPrefix('*', '/Secret123'));
});

function route(chunks: string[]): Promise<{ to: string; head: string }> {
  return new Promise((resolve) => {
    const [a, b] = duplexPair();
    const sink = (to: string) => ({
      handle: (_c: Duplex, head: Buffer) => resolve({ to, head: head.toString('latin1') }),
      handleConnection: (_c: Duplex, head: Buffer) =>
        resolve({ to, head: head.toString('latin1') }),
      close() {},
    });
    new SecretPrefixFront('/Secret123', sink('api'), sink('decoy')).handle(b, Buffer.alloc(0));
    for (const c of chunks) a.write(c);
  });
}

test('the first request decides, whatever the chunking, and every byte goes along', async () => {
  const req = 'GET /Secret123/server HTTP/1.1\r\nHost: a\r\n\r\n{}';
  assert.deepEqual(await route([req]), { to: 'api', head: req });
  assert.deepEqual(await route([req.slice(0, 7), req.slice(7, 30), req.slice(30)]), {
    to: 'api',
    head: req,
  });
  assert.deepEqual(await route(['GET / HTTP/1.1\r\nHost: a\r\n\r\n']), {
    to: 'decoy',
    head: 'GET / HTTP/1.1\r\nHost: a\r\n\r\n',
  });
  assert.deepEqual(await route(['\x16\x03']), { to: 'decoy', head: '\x16\x03' });
});

test('a first request that never completes is closed at the header timeout', () => {
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    const [a, b] = duplexPair();
    const never = {
      handle() {
        assert.fail('handed over');
      },
      handleConnection() {
        assert.fail('handed over');
      },
      close() {},
    };
    new SecretPrefixFront('/Secret123', never, never, 1000).handle(b, Buffer.alloc(0));
    a.write('GET /Secret123/ser');
    mock.timers.tick(999);
    assert.equal(b.destroyed, false);
    mock.timers.tick(1);
    assert.equal(b.destroyed, true);
  } finally {
    mock.timers.reset();
  }
});
