import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { statSync } from 'node:fs';
import { builtinPagesMtimeMs, DecoySite } from './decoy-site.js';
import { duplexPair } from '../../../test/helpers/duplex-pair.js';

/** Feeds `chunks` then the client's end; resolves with what came back once the decoy closed. */
function exchange(site: DecoySite, chunks: Uint8Array[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const [client, server] = duplexPair();
    const got: Buffer[] = [];
    client.on('data', (d: Buffer) => got.push(d));
    // The decoy closes after the client's end without a timer of its own; this bound, far past
    // any loaded machine's delay, only turns a hang into a failure.
    const guard = setTimeout(() => reject(new Error('the decoy did not close')), 60_000);
    server.once('close', () => {
      clearTimeout(guard);
      resolve(Buffer.concat(got).toString('latin1'));
    });
    site.handle(server, Buffer.alloc(0));
    for (const c of chunks) client.write(c);
    client.end();
  });
}

const piece = fc.oneof(
  fc.uint8Array({ maxLength: 64 }),
  fc
    .constantFrom(
      'GET ',
      'HEAD ',
      'POST ',
      '/',
      '/about.html',
      '/%2e%2e/',
      ' HTTP/1.1',
      ' HTTP/1.0',
      '\r\n',
      '\n',
      'Host: a\r\n',
      'Range: bytes=0-3,5-\r\n',
      'Content-Length: 5\r\n',
      'Transfer-Encoding: chunked\r\n',
      '3\r\nabc\r\n0\r\n\r\n',
      'If-None-Match: *\r\n',
      'Connection: close\r\n',
    )
    .map((s) => Buffer.from(s, 'latin1')),
);

test('fuzz: any bytes, in any chunks, then an end: the decoy answers or not, and always closes', async () => {
  const site = new DecoySite();
  try {
    await fc.assert(
      fc.asyncProperty(fc.array(piece, { maxLength: 30 }), async (chunks) => {
        const out = await exchange(site, chunks);
        if (out.length > 0) assert.match(out, /^(HTTP\/1\.1 \d{3} |<)/);
      }),
      { numRuns: 400 },
    );
  } finally {
    site.close();
  }
});

test('a burst of 999 pipelined requests (past the 64 KiB pending-bytes cap) is answered in full', async () => {
  const site = new DecoySite();
  try {
    const req = 'GET /about.html HTTP/1.1\r\nHost: a\r\n\r\n';
    const out = await exchange(site, [Buffer.from(req.repeat(999), 'latin1')]);
    assert.equal(out.match(/HTTP\/1\.1 200 OK/g)?.length, 999);
  } finally {
    site.close();
  }
});

test("two sites of one install, made at different times, give the built-in pages the pages module's mtime", async (t) => {
  const get = [Buffer.from('GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n', 'latin1')];
  const validators = async (site: DecoySite) => {
    try {
      const out = await exchange(site, get);
      return out.split('\r\n').filter((l) => /^(Last-Modified|ETag):/.test(l));
    } finally {
      site.close();
    }
  };
  t.mock.timers.enable({ apis: ['Date'], now: Date.UTC(2030, 0, 1) });
  const first = new DecoySite();
  t.mock.timers.setTime(Date.UTC(2031, 5, 1));
  const second = new DecoySite();
  t.mock.timers.reset();
  const [a, b] = [await validators(first), await validators(second)];
  assert.equal(a.length, 2);
  assert.deepEqual(a, b);
  const mtime = statSync(new URL('./pages.js', import.meta.url)).mtimeMs;
  assert.equal(builtinPagesMtimeMs(), mtime);
  assert.ok(a.includes(`Last-Modified: ${new Date(mtime).toUTCString()}`), a.join(' '));
});

test("gzip: Debian's `gzip on;` by default, nginx's own default (off) with gzip: false", async () => {
  const req = Buffer.from(
    'GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n',
  );
  const on = await exchange(new DecoySite(), [req]);
  assert.match(on, /^HTTP\/1\.1 200 OK\r\n[^]*\r\nTransfer-Encoding: chunked\r\n/);
  assert.match(on, /\r\nETag: W\/"[0-9a-f]+-[0-9a-f]+"\r\nContent-Encoding: gzip\r\n\r\n/);
  const off = await exchange(new DecoySite({ gzip: false }), [req]);
  assert.doesNotMatch(off, /Content-Encoding|Transfer-Encoding/);
  assert.match(off, /\r\nContent-Length: \d+\r\n/);
});
