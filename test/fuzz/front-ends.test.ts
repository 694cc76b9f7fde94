/**
 * Fuzzing the front ends. Parsers: random, truncated, bit-flipped and oversized bytes, and valid
 * messages mutated, into every SOCKS5 and HTTP decoder: the only outcomes allowed are a value, null
 * ("need more"), or a CodecError; random valid values round-trip; the chunked scanner agrees with
 * itself however its input is split. Servers: hostile and mutated handshakes and requests at running
 * SOCKS5 and HTTP proxies: no crash, no hang, and each still serves real requests afterwards.
 * Bounded runs: a few seconds in all.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import fc from 'fast-check';
import { CodecError } from '../../src/errors.js';
import {
  decodeGreeting,
  decodeMethodSelection,
  decodeReply,
  decodeRequest,
  decodeUdpDatagram,
  decodeUdpHeader,
  decodeUserPass,
  decodeUserPassReply,
  encodeRequest,
  encodeUserPass,
  requestLength,
  userPassLength,
} from '../../src/codec/socks5.js';
import {
  ChunkedBodyScanner,
  MAX_HEAD_BYTES,
  decodeRequestHead,
  decodeResponseHead,
  encodeRequestHead,
  parseAbsoluteForm,
  parseAuthority,
  requestBodyFraming,
  requestHeadLength,
  responseBodyFraming,
  routeRequest,
  type HttpRequestHead,
} from '../../src/codec/http-proxy.js';
import { Socks5Server } from '../../src/proxy/socks5-server.js';
import { HttpProxyServer } from '../../src/proxy/http-proxy.js';
import { DirectDialer } from '../../src/transport/direct.js';
import { startTestOrigin, type TestOrigin } from '../helpers/front-end-suite.js';
import { curl } from '../helpers/curl.js';
import { hasCommand } from '../helpers/peers.js';

/** Runs f; a CodecError is an allowed outcome, anything else thrown is a bug. */
function allowed<T>(f: () => T): T | CodecError {
  try {
    return f();
  } catch (e) {
    if (e instanceof CodecError) return e;
    throw e;
  }
}

const latin1 = (s: string): Buffer => Buffer.from(s, 'latin1');

const VALID_HTTP = [
  'GET http://example.com/a?b HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n',
  'CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n',
  'POST http://192.0.2.1:8080/ HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc',
  'PUT http://h/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
  'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello',
  'HTTP/1.0 404 Not Found\r\n\r\n',
].map(latin1);
const VALID_SOCKS = [
  '050100',
  '0503000102',
  '0105616c69636506733363726574',
  '050100030b6578616d706c652e636f6d1f90',
  '0501000420010db80000000000000000000000010050',
  '05000001000000000000',
  '000000017f0000010035ff',
].map((h) => Buffer.from(h, 'hex'));

/** Valid messages with damage: truncated, bit-flipped, bytes inserted (CR, LF, NUL, ':', ' '). */
function mutated(valid: Buffer[]): fc.Arbitrary<Buffer> {
  return fc
    .tuple(
      fc.constantFrom(...valid),
      fc.array(
        fc.tuple(
          fc.constantFrom('cut', 'flip', 'insert'),
          fc.nat(),
          fc.constantFrom(0x0d, 0x0a, 0x00, 0x3a, 0x20, 0xff, 0x30, 0x3b),
        ),
        { maxLength: 4 },
      ),
    )
    .map(([base, edits]) => {
      let b = Buffer.from(base);
      for (const [kind, at, byte] of edits) {
        const i = b.length === 0 ? 0 : at % b.length;
        if (kind === 'cut') b = b.subarray(0, i);
        else if (kind === 'flip' && b.length > 0) b[i] = b[i]! ^ (1 << (at % 8));
        else b = Buffer.concat([b.subarray(0, i), Buffer.from([byte]), b.subarray(i)]);
      }
      return b;
    });
}

const anyBytes = fc.oneof(
  fc.uint8Array({ maxLength: 700 }).map((u) => Buffer.from(u)),
  mutated(VALID_HTTP),
  mutated(VALID_SOCKS),
);

test('fuzz: every SOCKS5 decoder returns, needs more, or throws CodecError', () => {
  fc.assert(
    fc.property(anyBytes, fc.nat(8), (b, off) => {
      const at = Math.min(off, b.length);
      for (const decode of [
        decodeGreeting,
        decodeMethodSelection,
        decodeUserPass,
        decodeUserPassReply,
        decodeRequest,
        decodeReply,
        decodeUdpHeader,
      ]) {
        const r = allowed(() => decode(b, at));
        if (r !== null && !(r instanceof CodecError))
          assert.ok(r.bytesRead > 0 && at + r.bytesRead <= b.length, 'bytesRead within the input');
      }
      allowed(() => decodeUdpDatagram(b));
    }),
    { numRuns: 1500 },
  );
});

test('fuzz: every HTTP decoder returns, needs more, or throws CodecError', () => {
  fc.assert(
    fc.property(anyBytes, fc.constantFrom('GET', 'HEAD', 'CONNECT'), (b, method) => {
      const req = allowed(() => decodeRequestHead(b, 0));
      if (req !== null && !(req instanceof CodecError)) {
        assert.ok(req.bytesRead <= b.length);
        allowed(() => routeRequest(req.value));
        allowed(() => requestBodyFraming(req.value));
      }
      const res = allowed(() => decodeResponseHead(b, 0));
      if (res !== null && !(res instanceof CodecError))
        allowed(() => responseBodyFraming(method, res.value));
      const text = b.toString('latin1');
      allowed(() => parseAuthority(text));
      allowed(() => parseAbsoluteForm(text));
      allowed(() => parseAbsoluteForm(`http://${text}`));
      allowed(() => new ChunkedBodyScanner().scan(b, 0));
    }),
    { numRuns: 1500 },
  );
});

test('fuzz: oversized heads are refused at the bound, not buffered without end', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: MAX_HEAD_BYTES, max: 4 * MAX_HEAD_BYTES }),
      fc.nat(255),
      (n, fill) => {
        const b = Buffer.alloc(n, fill === 0x0d || fill === 0x0a ? 0x61 : fill);
        const r = allowed(() => decodeRequestHead(b, 0));
        assert.ok(r instanceof CodecError, 'a head with no end within the bound is an error');
      },
    ),
    { numRuns: 30 },
  );
});

test('fuzz: the chunked scanner gives the same answer however its input is split', () => {
  const chunked = fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 6 }).map((chunks) => {
    const parts = chunks.map((c) =>
      Buffer.concat([latin1(`${c.length.toString(16)}\r\n`), Buffer.from(c), latin1('\r\n')]),
    );
    return Buffer.concat([
      ...parts.filter((_, i) => chunks[i]!.length > 0),
      latin1('0\r\n\r\nNEXT'),
    ]);
  });
  fc.assert(
    fc.property(
      fc.oneof(chunked, mutated([latin1('4\r\nWiki\r\n0\r\nT: 1\r\n\r\nNEXT')])),
      fc.array(fc.nat(), { maxLength: 5 }),
      (body, cuts) => {
        const whole = new ChunkedBodyScanner();
        const wholeResult = allowed(() => whole.scan(body, 0));
        const points = [...new Set(cuts.map((c) => c % (body.length + 1)))].sort((a, b) => a - b);
        const split = new ChunkedBodyScanner();
        let taken = 0;
        let error: CodecError | null = null;
        let start = 0;
        for (const end of [...points, body.length]) {
          if (split.done || error) break;
          const r = allowed(() => split.scan(body.subarray(start, end), 0));
          if (r instanceof CodecError) error = r;
          else taken += r;
          start = end;
        }
        if (wholeResult instanceof CodecError) assert.ok(error, 'split input fails too');
        else {
          assert.equal(error, null);
          assert.equal(split.done, whole.done);
          assert.equal(taken, wholeResult);
        }
      },
    ),
    { numRuns: 1500 },
  );
});

const token = fc.stringMatching(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}$/);
const fieldValue = fc.stringMatching(
  /^[\x21-\x7e\xa0-\xff]([\x20-\x7e\xa0-\xff]{0,30}[\x21-\x7e\xa0-\xff])?$/,
);

test('fuzz: random valid request heads and SOCKS messages round-trip', () => {
  fc.assert(
    fc.property(
      token,
      fc.stringMatching(/^[\x21-\x7e]{1,40}$/),
      fc.constantFrom('1.0' as const, '1.1' as const),
      fc.array(fc.tuple(token, fieldValue), { maxLength: 20 }),
      (method, target, version, headers) => {
        const head: HttpRequestHead = { method, target, version, headers };
        const out = Buffer.alloc(requestHeadLength(head));
        assert.equal(encodeRequestHead(head, out, 0), out.length);
        assert.deepEqual(decodeRequestHead(out, 0), { value: head, bytesRead: out.length });
      },
    ),
    { numRuns: 500 },
  );
  const host = fc.oneof(
    fc.ipV4(),
    fc.ipV6().filter((h) => !h.includes('.')),
    fc.domain(),
  );
  fc.assert(
    fc.property(
      fc.nat(255),
      host,
      fc.nat(65535),
      fc.string({ maxLength: 255 }),
      (command, h, port, user) => {
        const r = { command, target: { host: h, port } };
        const b = Buffer.alloc(requestLength(r));
        encodeRequest(r, b, 0);
        const d = decodeRequest(b, 0);
        assert.ok(d);
        assert.equal(d.value.command, command);
        assert.equal(d.value.target.port, port);
        if (Buffer.byteLength(user) <= 255) {
          const up = { username: user, password: user };
          const u = Buffer.alloc(userPassLength(up));
          encodeUserPass(up, u, 0);
          assert.deepEqual(decodeUserPass(u, 0)?.value, up);
        }
      },
    ),
    { numRuns: 500 },
  );
});

// ---------------------------------------------------------------------------------------------
// Running servers

let origin: TestOrigin;
let socks: Socks5Server;
let http: HttpProxyServer;
let socksPort: number;
let httpPort: number;

before(async () => {
  origin = await startTestOrigin();
  // Only the test origin may be dialed: mutated targets must never leave loopback (nor reach DNS).
  const allow = (h: string, p: number): boolean => h === '127.0.0.1' && p === origin.port;
  socks = new Socks5Server({
    dialer: new DirectDialer({ allow }),
    handshakeTimeoutMs: 300,
    users: new Map([['alice', 's3cret']]),
  });
  socksPort = (await socks.listen('127.0.0.1', 0)).port;
  http = new HttpProxyServer({
    dialer: new DirectDialer({ allow }),
    headTimeoutMs: 300,
  });
  httpPort = (await http.listen('127.0.0.1', 0)).port;
});
after(async () => {
  await socks.close();
  await http.close();
  await origin.close();
});

/** Sends pieces (optionally half-closing), then waits, bounded, for the server to close or go quiet. */
function hit(port: number, pieces: Uint8Array[], end: boolean): Promise<void> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    const t = setTimeout(() => {
      s.destroy();
      resolve();
    }, 500);
    s.on('connect', () => {
      for (const p of pieces) s.write(p);
      if (end) s.end();
    });
    s.on('data', () => {});
    s.on('close', () => {
      clearTimeout(t);
      resolve();
    });
    s.on('error', () => {});
  });
}

const skip = hasCommand('curl') ? false : 'needs curl';

test(
  'hostile and mutated handshakes at the SOCKS5 server: no crash, still serving',
  { skip },
  async () => {
    const o = origin.port;
    const handshake = Buffer.concat([
      Buffer.from('050102' + '0105616c69636506733363726574', 'hex'),
      Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, o >> 8, o & 0xff]),
    ]);
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof(mutated([handshake]), fc.uint8Array({ maxLength: 3000 })), {
          minLength: 1,
          maxLength: 3,
        }),
        fc.boolean(),
        async (pieces, end) => {
          await Promise.all(Array.from({ length: 4 }, () => hit(socksPort, pieces, end)));
        },
      ),
      { numRuns: 40 },
    );
    const r = await curl([
      '--socks5-hostname',
      `alice:s3cret@127.0.0.1:${socksPort}`,
      `http://127.0.0.1:${o}/hello`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.body.toString(), 'hello\n');
  },
);

test(
  'hostile and mutated requests at the HTTP proxy: no crash, still serving',
  { skip },
  async () => {
    const o = origin.port;
    const valid = [
      `GET http://127.0.0.1:${o}/hello HTTP/1.1\r\nHost: x\r\n\r\n`,
      `POST http://127.0.0.1:${o}/upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`,
      `POST http://127.0.0.1:${o}/upload HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello`,
      `CONNECT 127.0.0.1:${o} HTTP/1.1\r\n\r\nGET /hello HTTP/1.1\r\n\r\n`,
    ].map(latin1);
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof(mutated(valid), fc.uint8Array({ maxLength: 3000 })), {
          minLength: 1,
          maxLength: 3,
        }),
        fc.boolean(),
        async (pieces, end) => {
          await Promise.all(Array.from({ length: 4 }, () => hit(httpPort, pieces, end)));
        },
      ),
      { numRuns: 40 },
    );
    const r = await curl(['-x', `http://127.0.0.1:${httpPort}`, `http://127.0.0.1:${o}/hello`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.body.toString(), 'hello\n');
  },
);
