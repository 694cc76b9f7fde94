/**
 * The front-end conformance suite (STYLE.md habit 9): every local front end (SOCKS5, HTTP proxy, and
 * any later one) passes the same tests, driven by real curl against a local origin on 127.0.0.1:
 * a 64 MiB download checked by hash, uploads with Content-Length and chunked bodies, keep-alive
 * (two requests in one curl run over one origin connection), a refused destination, a dial timeout,
 * a forbidden destination, and credentials (right, wrong, missing). What the client sees for a
 * failure differs by protocol, so each front end says how to recognise it.
 *
 * Also here: the local origin the suite talks to, and `blackHole()`, a loopback port that never
 * answers a SYN (for timeouts without leaving the machine).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import type { StreamDialer } from '../../src/transport/types.js';
import { DirectDialer } from '../../src/transport/direct.js';
import { curl, type CurlResult } from './curl.js';
import { hasCommand } from './peers.js';

// ---------------------------------------------------------------------------------------------
// The origin

const BLOCK = randomBytes(1 << 20);

/** SHA-256 of what `/bytes/<n>` serves. */
export function bytesHash(n: number): string {
  const h = createHash('sha256');
  for (let left = n; left > 0; left -= BLOCK.length)
    h.update(BLOCK.subarray(0, Math.min(left, BLOCK.length)));
  return h.digest('hex');
}

export interface TestOrigin {
  port: number;
  /** TCP connections the origin has accepted so far. */
  readonly connections: number;
  /** Closes idle keep-alive connections (as a server's keep-alive timeout would). */
  dropIdle(): void;
  close(): Promise<void>;
}

/**
 * An HTTP/1.1 origin on 127.0.0.1 (node:http, keep-alive):
 * - `/bytes/<n>`: n bytes with Content-Length, streamed with backpressure
 * - `/chunked/<n>`: n bytes, chunked
 * - `/close/<n>`: n bytes, no framing: ends by closing (HTTP/1.0 style)
 * - `/hello`: "hello\n"
 * - `/drip`: 1 KiB every 20 ms, chunked, for at most 10 s (a transfer that is still going)
 * - `/upload` (any method with a body): answers "<bytes> <sha256>" of the body it received
 * - `/headers`: the request's header fields as JSON (what the proxy forwarded)
 */
export async function startTestOrigin(): Promise<TestOrigin> {
  let connections = 0;
  const server: HttpServer = createHttpServer({ keepAlive: true }, (req, res) => {
    const url = req.url ?? '';
    const m = /^\/(bytes|chunked|close)\/(\d+)$/.exec(url);
    if (m) {
      const n = Number(m[2]);
      if (m[1] === 'bytes') res.setHeader('content-length', n);
      if (m[1] === 'close') res.shouldKeepAlive = false;
      res.setHeader('content-type', 'application/octet-stream');
      if (m[1] === 'close') {
        // node:http frames a response it knows nothing about by closing when told HTTP/1.0
        res.useChunkedEncodingByDefault = false;
        res.sendDate = false;
      }
      let left = n;
      const pump = (): void => {
        while (left > 0) {
          const chunk = BLOCK.subarray(0, Math.min(left, BLOCK.length));
          left -= chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
      return;
    }
    if (url === '/hello') {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 6 });
      res.end('hello\n');
      return;
    }
    if (url === '/drip') {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      let n = 0;
      const t = setInterval(() => {
        if (++n > 500 || res.destroyed) {
          clearInterval(t);
          res.end();
        } else res.write(BLOCK.subarray(0, 1024));
      }, 20);
      res.on('close', () => clearInterval(t));
      return;
    }
    if (url === '/headers') {
      const body = JSON.stringify(req.rawHeaders);
      res.writeHead(200, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
      });
      res.end(body);
      return;
    }
    if (url === '/upload') {
      const h = createHash('sha256');
      let n = 0;
      req.on('data', (d: Buffer) => {
        n += d.length;
        h.update(d);
      });
      req.on('end', () => res.end(`${n} ${h.digest('hex')}`));
      return;
    }
    res.writeHead(404, { 'content-length': 0 });
    res.end();
  });
  server.on('connection', () => connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    get connections() {
      return connections;
    },
    dropIdle: () => server.closeIdleConnections(),
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** A port on 127.0.0.1 that nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/**
 * A loopback port that never completes a handshake: a listener (python3, listen(0), never
 * accepting) whose one-slot accept queue is filled, after which the kernel drops further SYNs.
 * Null when python3 is missing or the kernel behaves otherwise.
 */
export async function blackHole(): Promise<{ port: number; close(): void } | null> {
  if (!hasCommand('python3')) return null;
  const child: ChildProcess = spawn(
    'python3',
    [
      '-c',
      'import socket,sys\ns=socket.socket();s.bind(("127.0.0.1",0));s.listen(0)\nprint(s.getsockname()[1],flush=True)\nsys.stdin.read()',
    ],
    { stdio: ['pipe', 'pipe', 'ignore'] },
  );
  const port = await new Promise<number | null>((resolve) => {
    child.once('error', () => resolve(null));
    child.once('exit', () => resolve(null));
    createInterface({ input: child.stdout! }).once('line', (l) => resolve(Number(l)));
  });
  const fillers: Socket[] = [];
  const close = (): void => {
    for (const f of fillers) f.destroy();
    child.kill(); // the process we started, by its handle
  };
  if (!port) {
    close();
    return null;
  }
  for (let i = 0; i < 8; i++) {
    const s = connect(port, '127.0.0.1');
    s.on('error', () => {});
    fillers.push(s);
    const ok = await new Promise<boolean>((r) => {
      const t = setTimeout(() => r(false), 300);
      s.once('connect', () => {
        clearTimeout(t);
        r(true);
      });
    });
    if (!ok) return { port, close };
  }
  close();
  return null;
}

// ---------------------------------------------------------------------------------------------
// The suite

export interface FrontEndUnderTest {
  /** curl arguments that route a request through this front end, with credentials if given. */
  via(user?: string): string[];
  close(): Promise<void>;
}

export interface FrontEndSpec {
  /** Starts a front end on 127.0.0.1 with this dialer (and users, when given). */
  start(options: { dialer: StreamDialer; users?: Map<string, string> }): Promise<FrontEndUnderTest>;
  /**
   * How a failed dial shows to curl. `cause` names the failure (ERR_DIAL_REFUSED,
   * ERR_DIAL_TIMEOUT, ERR_DIAL_FORBIDDEN); `r` is curl's result with `-w '\n%{http_code}'`.
   */
  expectDialFailure(r: CurlResult, cause: string): void;
  /** How refused credentials (wrong or missing) show to curl. */
  expectAuthRefused(r: CurlResult): void;
}

const DOWNLOAD = 64 * 1024 * 1024 + 5;
const UPLOAD = 8 * 1024 * 1024 + 11;

export function frontEndSuite(name: string, spec: FrontEndSpec): void {
  const skip = hasCommand('curl') ? false : 'needs curl';
  describe(`front-end suite: ${name}`, { skip }, () => {
    let origin: TestOrigin;
    let open: FrontEndUnderTest;
    let authed: FrontEndUnderTest;
    let dir: string;
    const url = (path: string): string => `http://127.0.0.1:${origin.port}${path}`;
    before(async () => {
      origin = await startTestOrigin();
      open = await spec.start({ dialer: new DirectDialer() });
      authed = await spec.start({
        dialer: new DirectDialer(),
        users: new Map([
          ['alice', 's3cret'],
          ['bob', 'pässwörd'],
        ]),
      });
      dir = mkdtempSync(join(tmpdir(), 'ladder-fe-'));
    });
    after(async () => {
      await open.close();
      await authed.close();
      await origin.close();
      rmSync(dir, { recursive: true, force: true });
    });

    test('a 64 MiB download arrives intact', async () => {
      const r = await curl([...open.via(), url(`/bytes/${DOWNLOAD}`)], 60);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.body.length, DOWNLOAD);
      assert.equal(r.sha256, bytesHash(DOWNLOAD));
    });

    test('a chunked download and a close-delimited download arrive intact', async () => {
      const n = 3 * 1024 * 1024 + 1;
      for (const kind of ['chunked', 'close']) {
        const r = await curl([...open.via(), url(`/${kind}/${n}`)]);
        assert.equal(r.code, 0, `${kind}: ${r.stderr}`);
        assert.equal(r.sha256, bytesHash(n), kind);
      }
    });

    test('uploads with Content-Length and chunked arrive intact', async () => {
      const file = join(dir, 'upload.bin');
      const data = randomBytes(UPLOAD);
      writeFileSync(file, data);
      const want = `${UPLOAD} ${createHash('sha256').update(data).digest('hex')}`;
      const sized = await curl([...open.via(), '--data-binary', `@${file}`, url('/upload')]);
      assert.equal(sized.code, 0, sized.stderr);
      assert.equal(sized.body.toString(), want);
      const chunked = await curl([
        ...open.via(),
        '-H',
        'Transfer-Encoding: chunked',
        '--data-binary',
        `@${file}`,
        url('/upload'),
      ]);
      assert.equal(chunked.code, 0, chunked.stderr);
      assert.equal(chunked.body.toString(), want);
    });

    test('keep-alive: two requests in one curl run share one origin connection', async () => {
      const before = origin.connections;
      const r = await curl([...open.via(), url('/hello'), url('/hello')]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.body.toString(), 'hello\nhello\n');
      assert.equal(origin.connections - before, 1, 'one connection to the origin');
    });

    test('a refused destination names the cause', async () => {
      const r = await curl([
        ...open.via(),
        '-w',
        '\n%{http_code}',
        url('/').replace(String(origin.port), String(await closedPort())),
      ]);
      spec.expectDialFailure(r, 'ERR_DIAL_REFUSED');
    });

    test('a destination that never answers: the timeout is named', async (t) => {
      const hole = await blackHole();
      if (!hole) return t.skip('needs python3 for a loopback port that drops SYNs');
      const fe = await spec.start({ dialer: new DirectDialer({ connectTimeoutMs: 200 }) });
      try {
        const r = await curl([
          ...fe.via(),
          '-w',
          '\n%{http_code}',
          `http://127.0.0.1:${hole.port}/`,
        ]);
        spec.expectDialFailure(r, 'ERR_DIAL_TIMEOUT');
      } finally {
        await fe.close();
        hole.close();
      }
    });

    test('a destination the dialer forbids: named as forbidden', async () => {
      const fe = await spec.start({ dialer: new DirectDialer({ allow: () => false }) });
      try {
        const r = await curl([...fe.via(), '-w', '\n%{http_code}', url('/hello')]);
        spec.expectDialFailure(r, 'ERR_DIAL_FORBIDDEN');
      } finally {
        await fe.close();
      }
    });

    test('credentials: right ones pass (also non-ASCII), wrong and missing ones are refused', async () => {
      for (const user of ['alice:s3cret', 'bob:pässwörd']) {
        const ok = await curl([...authed.via(user), url('/hello')]);
        assert.equal(ok.code, 0, `${user}: ${ok.stderr}`);
        assert.equal(ok.body.toString(), 'hello\n');
      }
      for (const user of ['alice:wrong', 'bob:s3cret', 'mallory:s3cret', undefined]) {
        const bad = await curl([...authed.via(user), '-w', '\n%{http_code}', url('/hello')]);
        assert.ok(!bad.body.toString().startsWith('hello'), `${user} got through`);
        spec.expectAuthRefused(bad);
      }
    });

    test('close() ends open sessions and stops accepting', async () => {
      const fe = await spec.start({ dialer: new DirectDialer() });
      let flowing!: () => void;
      const underway = new Promise<void>((r) => (flowing = r));
      const slow = curl([...fe.via(), url('/drip')], 30, flowing);
      // the transfer is open through the front end (or curl ended first: then the test fails here)
      await Promise.race([
        underway,
        slow.then((r) => assert.fail(`curl ended before the transfer started: ${r.stderr}`)),
      ]);
      await fe.close();
      const r = await slow;
      assert.notEqual(r.code, 0, 'the transfer was cut');
      assert.ok(r.body.length < 500 * 1024, 'before the origin finished');
      const after = await curl([...fe.via(), url('/hello')]);
      assert.notEqual(after.code, 0, 'no longer accepting');
    });
  });
}
