import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect } from 'node:tls';
import { createServer } from 'node:net';
import { classifyFirstBytes } from './tls-hello.js';

test('a real ClientHello from Node is TLS', async () => {
  const first = await new Promise<Buffer>((resolve) => {
    const srv = createServer((s) =>
      s.once('data', (d: Buffer) => {
        resolve(d);
        s.destroy();
        srv.close();
      }),
    );
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address() as { port: number };
      const c = connect({
        host: '127.0.0.1',
        port: addr.port,
        servername: 'example.test',
        rejectUnauthorized: false,
      });
      c.on('error', () => {});
    });
  });
  assert.equal(classifyFirstBytes(first), 'tls');
  assert.equal(classifyFirstBytes(first.subarray(0, 5)), null);
});

test('random salts and an Outline-style TLS-looking prefix are not TLS', () => {
  let tls = 0;
  for (let i = 0; i < 20_000; i++) if (classifyFirstBytes(randomBytes(64)) === 'tls') tls++;
  assert.equal(tls, 0);
  // Outline's documented TLS-like prefix, followed by a random salt
  const prefixed = Buffer.concat([
    Buffer.from('160301', 'hex'),
    Buffer.from([0x00, 0xa8, 0x01, 0x01]),
    randomBytes(40),
  ]);
  assert.equal(classifyFirstBytes(prefixed), 'other');
  assert.equal(classifyFirstBytes(Buffer.from('GET / HTTP/1.1\r\n')), 'other');
});
