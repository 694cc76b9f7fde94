/**
 * The front-end conformance suite, with real curl: SOCKS5 and the HTTP proxy, over the direct
 * dialer (the tunnel's dialers pass the dialer suite separately).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { Socks5Server, socksReplyFor } from '../../src/proxy/socks5-server.js';
import { DialError, type ErrorCode } from '../../src/errors.js';
import { HttpProxyServer } from '../../src/proxy/http-proxy.js';
import { DirectDialer, DirectPacketDialer } from '../../src/transport/direct.js';
import { SOCKS_CMD, SOCKS_REPLY } from '../../src/codec/socks5.js';
import { startOrigin, expectedHash, type Origin } from '../helpers/origin.js';
import { closedPort } from '../helpers/echo.js';
import { socksRequest } from '../helpers/socks5-client.js';
import { curl } from '../helpers/curl.js';
import { hasCommand } from '../helpers/peers.js';

const skip = hasCommand('curl') ? false : 'needs curl (apt-get install curl)';
const SIZE = 16 * 1024 * 1024 + 3;

interface FrontEnd {
  /** curl arguments that route through the front end */
  via(extra?: { user?: string }): string[];
  close(): Promise<void>;
  port: number;
}

function frontEndSuite(
  name: string,
  make: (users?: Map<string, string>) => Promise<FrontEnd>,
): void {
  describe(name, { skip }, () => {
    let origin: Origin;
    let fe: FrontEnd;
    let authed: FrontEnd;
    before(async () => {
      origin = await startOrigin();
      fe = await make();
      authed = await make(new Map([['alice', 's3cret']]));
    });
    after(async () => {
      await fe.close();
      await authed.close();
      await origin.close();
    });

    test('a 16 MiB download arrives intact', async () => {
      const r = await curl([...fe.via(), `http://127.0.0.1:${origin.port}/bytes/${SIZE}`]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.sha256, expectedHash(SIZE));
    });

    test('two requests in one curl run (keep-alive to the proxy)', async () => {
      const r = await curl([
        ...fe.via(),
        `http://127.0.0.1:${origin.port}/hello`,
        `http://127.0.0.1:${origin.port}/hello`,
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.body.toString(), 'hello\nhello\n');
    });

    test('credentials: right ones pass, wrong ones are refused', async () => {
      const ok = await curl([
        ...authed.via({ user: 'alice:s3cret' }),
        `http://127.0.0.1:${origin.port}/hello`,
      ]);
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(ok.body.toString(), 'hello\n');
      const bad = await curl([
        ...authed.via({ user: 'alice:wrong' }),
        '-w',
        '%{http_code}',
        `http://127.0.0.1:${origin.port}/hello`,
      ]);
      assert.ok(bad.code !== 0 || bad.body.toString().endsWith('407'), 'wrong password refused');
    });
  });
}

frontEndSuite('SOCKS5 front end', async (users) => {
  const s = new Socks5Server({
    dialer: new DirectDialer(),
    packetDialer: new DirectPacketDialer(),
    ...(users ? { users } : {}),
  });
  const a = await s.listen('127.0.0.1', 0);
  return {
    port: a.port,
    via: (o) => ['--socks5-hostname', `${o?.user ? `${o.user}@` : ''}127.0.0.1:${a.port}`],
    close: () => s.close(),
  };
});

frontEndSuite('HTTP proxy front end', async (users) => {
  const s = new HttpProxyServer({ dialer: new DirectDialer(), ...(users ? { users } : {}) });
  const a = await s.listen('127.0.0.1', 0);
  return {
    port: a.port,
    via: (o) => ['-x', `http://127.0.0.1:${a.port}`, ...(o?.user ? ['-U', o.user] : [])],
    close: () => s.close(),
  };
});

describe('SOCKS5 reply codes (RFC 1928 §6)', () => {
  let s: Socks5Server;
  let port: number;
  before(async () => {
    s = new Socks5Server({ dialer: new DirectDialer() });
    port = (await s.listen('127.0.0.1', 0)).port;
  });
  after(() => s.close());

  test('a refused target gets 0x05, and the connection closes', async () => {
    const r = await socksRequest(port, SOCKS_CMD.CONNECT, {
      host: '127.0.0.1',
      port: await closedPort(),
    });
    assert.equal(r.code, SOCKS_REPLY.CONNECTION_REFUSED);
    r.socket.destroy();
  });

  test('every dial failure maps to its reply code (no DNS query is sent: mapping only)', () => {
    const cases: [ErrorCode, number][] = [
      ['ERR_DIAL_REFUSED', SOCKS_REPLY.CONNECTION_REFUSED],
      ['ERR_DIAL_UNREACHABLE', SOCKS_REPLY.NETWORK_UNREACHABLE],
      ['ERR_DIAL_DNS', SOCKS_REPLY.HOST_UNREACHABLE],
      ['ERR_DIAL_TIMEOUT', SOCKS_REPLY.TTL_EXPIRED],
      ['ERR_DIAL_FORBIDDEN', SOCKS_REPLY.NOT_ALLOWED],
      ['ERR_SERVER_UNREACHABLE', SOCKS_REPLY.NETWORK_UNREACHABLE],
      ['ERR_DIAL', SOCKS_REPLY.GENERAL_FAILURE],
    ];
    for (const [code, reply] of cases)
      assert.equal(socksReplyFor(new DialError(code, 'x')), reply, code);
    assert.equal(socksReplyFor(new Error('plain')), SOCKS_REPLY.GENERAL_FAILURE);
  });

  test('BIND gets 0x07 (command not supported)', async () => {
    const r = await socksRequest(port, SOCKS_CMD.BIND, { host: '127.0.0.1', port: 1 });
    assert.equal(r.code, SOCKS_REPLY.COMMAND_NOT_SUPPORTED);
    r.socket.destroy();
  });

  test('an unknown address type gets 0x08', async () => {
    const reply = await rawExchange(port, [
      Buffer.from([5, 1, 0]),
      Buffer.from([5, 1, 0, 9, 1, 2, 3, 4, 0, 80]),
    ]);
    assert.deepEqual([...reply.subarray(0, 2)], [5, 0]);
    assert.equal(reply[3], SOCKS_REPLY.ADDRESS_TYPE_NOT_SUPPORTED);
  });

  test('no acceptable method gets 0xFF', async () => {
    const reply = await rawExchange(port, [Buffer.from([5, 1, 0x02])]);
    assert.deepEqual([...reply], [5, 0xff]);
  });
});

describe('HTTP proxy statuses name the cause', { skip }, () => {
  let s: HttpProxyServer;
  let port: number;
  before(async () => {
    s = new HttpProxyServer({ dialer: new DirectDialer() });
    port = (await s.listen('127.0.0.1', 0)).port;
  });
  after(() => s.close());

  test('a refused target: 502 with the error code in the body', async () => {
    const dead = await closedPort();
    const r = await curl([
      '-x',
      `http://127.0.0.1:${port}`,
      '-w',
      '\n%{http_code}',
      `http://127.0.0.1:${dead}/`,
    ]);
    assert.match(r.body.toString(), /ERR_DIAL_REFUSED[\s\S]*\n502$/);
    const c = await curl([
      '-x',
      `http://127.0.0.1:${port}`,
      '-p',
      '-w',
      '%{http_code}',
      `http://127.0.0.1:${dead}/`,
    ]);
    assert.notEqual(c.code, 0, 'CONNECT to a refused target fails');
  });

  test('an origin-form request: 400 explaining this is a proxy', async () => {
    const r = await curl(['-w', '\n%{http_code}', `http://127.0.0.1:${port}/index.html`]);
    assert.match(r.body.toString(), /proxy[\s\S]*\n400$/);
  });

  test('an oversized head: 431', async () => {
    const big = 'x'.repeat(40_000);
    const r = await curl([
      '-x',
      `http://127.0.0.1:${port}`,
      '-H',
      `X-Big: ${big}`,
      '-w',
      '%{http_code}',
      'http://127.0.0.1:9/',
    ]);
    assert.match(r.body.toString(), /431$/);
  });

  test('garbage instead of HTTP: 400', async () => {
    const reply = await rawExchange(port, [Buffer.from('\x16\x03\x01garbage\r\n\r\n', 'latin1')]);
    assert.match(reply.toString('latin1'), /^HTTP\/1\.1 400/);
  });
});

/** Sends pieces and returns everything received until the server closes (bounded). */
function rawExchange(port: number, pieces: Buffer[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    const parts: Buffer[] = [];
    const t = setTimeout(() => {
      s.destroy();
      resolve(Buffer.concat(parts));
    }, 3000);
    s.on('connect', () => {
      for (const p of pieces) s.write(p);
    });
    s.on('data', (d) => parts.push(d));
    s.on('close', () => {
      clearTimeout(t);
      resolve(Buffer.concat(parts));
    });
    s.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? undefined : reject(e)));
  });
}
