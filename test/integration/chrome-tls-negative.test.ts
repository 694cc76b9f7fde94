/**
 * The fp=chrome client against a scripted TLS 1.3 server that breaks one thing at a time: each
 * case must end the handshake with the right LadderError code and, where RFC 8446 asks for one,
 * the right alert, within a bounded time. Then fuzz: random server answers and random byte flips
 * of a valid flight end in a LadderError or a handshake, never another exception or a hang.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { brotliCompressSync } from 'node:zlib';
import fc from 'fast-check';
import { LadderError } from '../../src/errors.js';
import { ALERT, chromeTlsConnect } from '../../src/transport/chrome-tls.js';
import { TlsWriter } from '../../src/codec/tls-wire.js';
import { ChromeSessionCache, type ChromeSession } from '../../src/transport/chrome-sessions.js';
import { certificateBody, scriptServer, type Script } from '../helpers/tls13-script-server.js';
import { makeCert, type TestCert } from '../helpers/tls-cert.js';

let cert: TestCert;
let base: Pick<Script, 'chain' | 'key'>;

async function run(
  script: Partial<Script>,
  opts: { pin?: string; now?: Date; ca?: string; sessions?: ChromeSessionCache } = {},
): Promise<{ err: (Error & { code?: string }) | null; alert: number | null }> {
  const srv = await scriptServer({ ...base, ...script });
  try {
    let err: (Error & { code?: string }) | null = null;
    try {
      const tls = await chromeTlsConnect(
        { host: '127.0.0.1', port: srv.port },
        {
          sni: 'localhost',
          ...(opts.ca ? { ca: opts.ca } : { pinSha256: opts.pin ?? cert.pin }),
          ...(opts.now ? { now: () => opts.now! } : {}),
          ...(opts.sessions ? { sessions: opts.sessions } : {}),
          timeoutMs: 5000,
        },
      );
      tls.destroy();
    } catch (e) {
      err = e as Error;
    }
    const alert = err ? await srv.alert : null;
    return { err, alert };
  } finally {
    await srv.close();
  }
}

function expectFailure(
  r: Awaited<ReturnType<typeof run>>,
  code: string,
  alert: keyof typeof ALERT | null,
  message?: RegExp,
): void {
  assert.ok(r.err, 'the handshake must fail');
  assert.ok(
    r.err instanceof LadderError,
    `a LadderError, not ${r.err.constructor.name}: ${r.err.message}`,
  );
  assert.equal(r.err.code, code, r.err.message);
  if (message) assert.match(r.err.message, message);
  if (alert !== null) assert.equal(r.alert, ALERT[alert], `alert ${alert} sent (${r.err.message})`);
}

describe('fp=chrome client: every MUST abort', { timeout: 120_000 }, () => {
  before(() => {
    cert = makeCert();
    base = { chain: [new X509Certificate(cert.cert).raw], key: createPrivateKey(cert.key) };
  });
  after(() => cert.remove());

  test('the scripted server itself completes a handshake (pin and CA)', async () => {
    assert.equal((await run({})).err, null);
    assert.equal((await run({}, { ca: cert.cert })).err, null);
  });

  test('a tampered server Finished: decrypt_error', async () => {
    const r = await run({
      flight: (m) => {
        m[3]!.body[0]! ^= 1;
        return m;
      },
    });
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'decrypt_error', /Finished/);
  });

  test('a bad CertificateVerify signature: decrypt_error', async () => {
    const r = await run({
      flight: (m, fin) => {
        const body = m[2]!.body;
        body[body.length - 5]! ^= 0x40;
        return [m[0]!, m[1]!, m[2]!, fin(m.slice(0, 3))];
      },
    });
    expectFailure(r, 'ERR_TLS_CERT', 'decrypt_error', /CertificateVerify/);
  });

  test('reordered messages (Certificate before EncryptedExtensions): unexpected_message', async () => {
    const r = await run({ flight: (m) => [m[1]!, m[0]!, m[2]!, m[3]!] });
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'unexpected_message');
  });

  test('a missing Certificate (Finished after EncryptedExtensions): unexpected_message', async () => {
    const r = await run({ flight: (m, fin) => [m[0]!, fin([m[0]!])] });
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'unexpected_message');
  });

  test('a chain of 100 certificates: bad_certificate, bounded', async () => {
    const r = await run({ chain: Array.from({ length: 100 }, () => base.chain[0]!) });
    expectFailure(r, 'ERR_TLS_CERT', 'bad_certificate', /more than 10/);
  });

  const compressedFlight =
    (mutate: (cc: { type: number; body: Buffer }) => void = () => {}): Script['flight'] =>
    (m, fin, cv) => {
      const plain = certificateBody(base.chain);
      const cc = {
        type: 25,
        body: new TlsWriter()
          .u16(2)
          .u24(plain.length)
          .vec(3, (v) => v.bytes(brotliCompressSync(plain)))
          .toBuffer(),
      };
      mutate(cc);
      const v = cv([m[0]!, cc]);
      return [m[0]!, cc, v, fin([m[0]!, cc, v])];
    };

  test('a compressed certificate (brotli): decompressed, verified, accepted', async () => {
    assert.equal((await run({ flight: compressedFlight() })).err, null);
    assert.equal((await run({ flight: compressedFlight() }, { ca: cert.cert })).err, null);
  });

  test('a compressed certificate with an algorithm never offered (zlib): bad_certificate', async () => {
    const r = await run({ flight: compressedFlight((cc) => void cc.body.writeUInt16BE(1, 0)) });
    expectFailure(r, 'ERR_TLS_CERT', 'bad_certificate', /algorithm 1/);
  });

  for (const [name, declared, size] of [
    ['declares 16 MiB', 0xffffff, 1000],
    ['declares 1000 bytes, holds 64 MiB of zeros', 1000, 64 << 20],
  ] as const)
    test(`a compressed certificate bomb that ${name}: bad_certificate, bounded`, async () => {
      const bomb = brotliCompressSync(Buffer.alloc(size));
      const before = process.memoryUsage().rss;
      const r = await run({
        flight: (m, fin) => {
          const cc = {
            type: 25,
            body: new TlsWriter()
              .u16(2)
              .u24(declared)
              .vec(3, (v) => v.bytes(bomb))
              .toBuffer(),
          };
          return [m[0]!, cc, m[2]!, fin([m[0]!, cc, m[2]!])];
        },
      });
      expectFailure(r, 'ERR_TLS_CERT', 'bad_certificate', /compressed certificate/);
      assert.ok(process.memoryUsage().rss - before < 32 << 20, 'memory stayed bounded');
    });

  test('a cipher suite never offered (0x1304): illegal_parameter', async () => {
    const r = await run({ serverHello: (sh) => void (sh.cipher = 0x1304) });
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'illegal_parameter', /cipher suite 0x1304/);
  });

  test('a group with no share sent (P-256): illegal_parameter', async () => {
    const r = await run({ serverHello: (sh) => void (sh.group = 0x0017) });
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'illegal_parameter', /group 0x17/);
  });

  test('our session id not echoed: illegal_parameter', async () => {
    const r = await run({ serverHello: (sh) => void (sh.sessionId = Buffer.alloc(32)) });
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'illegal_parameter', /session id/);
  });

  test('a version never offered: illegal_parameter', async () => {
    const r = await run({ serverHello: (sh) => void (sh.versions = 0x0305) });
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'illegal_parameter');
  });

  test('an extension never offered in the ServerHello: unsupported_extension', async () => {
    const r = await run({ serverHello: (sh) => void (sh.extra = Buffer.from([0x12, 0x34, 0, 0])) });
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'unsupported_extension');
  });

  test('an extension never offered in EncryptedExtensions: unsupported_extension', async () => {
    const r = await run({
      flight: (m, fin) => {
        const ee = { type: 8, body: Buffer.from([0, 4, 0x12, 0x34, 0, 0]) };
        return [ee, m[1]!, m[2]!, fin([ee, m[1]!, m[2]!])];
      },
    });
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'unsupported_extension');
  });

  test('TLS 1.2 with the downgrade sentinel: illegal_parameter', async () => {
    const sh = new TlsWriter()
      .u8(2)
      .vec(3, (b) =>
        b
          .u16(0x0303)
          .bytes(Buffer.concat([Buffer.alloc(24, 7), Buffer.from('444f574e47524401', 'hex')]))
          .vec(1, () => {})
          .u16(0xc02b)
          .u8(0)
          .vec(2, () => {}),
      )
      .toBuffer();
    const r = await run({ raw: Buffer.concat([Buffer.from([22, 3, 3, 0, sh.length]), sh]) });
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'illegal_parameter', /downgrade/);
  });

  /** A cache that offers this session to any server. */
  const offering = (suite: number): ChromeSessionCache => {
    const fake: ChromeSession = {
      ticket: Buffer.alloc(40, 1),
      psk: Buffer.alloc(suite === 0x1302 ? 48 : 32, 2),
      suite,
      ageAdd: 0,
      receivedMs: Date.now(),
      lifetimeS: 3600,
      chain: [],
      alpn: false,
    };
    return new (class extends ChromeSessionCache {
      override take(): ChromeSession {
        return fake;
      }
    })();
  };
  const pskExt = (index: number): Buffer => Buffer.from([0x00, 0x29, 0, 2, 0, index]);

  test('pre_shared_key when no PSK was offered: unsupported_extension', async () => {
    const r = await run({ serverHello: (sh) => void (sh.extra = pskExt(0)) });
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'unsupported_extension');
  });

  test('a PSK identity never offered (1 of 1): illegal_parameter', async () => {
    const r = await run(
      { serverHello: (sh) => void (sh.extra = pskExt(1)) },
      { sessions: offering(0x1301) },
    );
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'illegal_parameter', /PSK identity 1/);
  });

  test("resumption with a suite of another hash than the PSK's: illegal_parameter", async () => {
    const r = await run(
      { serverHello: (sh) => void (sh.extra = pskExt(0)) },
      { sessions: offering(0x1302) },
    );
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'illegal_parameter', /hash/);
  });

  test('a server that claims the PSK without knowing it: its records fail (bad_record_mac)', async () => {
    const r = await run(
      { serverHello: (sh) => void (sh.extra = pskExt(0)) },
      { sessions: offering(0x1301) },
    );
    // (The alert goes under keys this server cannot derive: not checked.)
    expectFailure(r, 'ERR_TLS_PROTOCOL', null, /authentication tag/);
  });

  test('an offered PSK the server ignores: full handshake, certificate checked', async () => {
    assert.equal((await run({}, { sessions: offering(0x1301) })).err, null);
    const r = await run({}, { sessions: offering(0x1301), pin: 'ab'.repeat(32) });
    expectFailure(r, 'ERR_TLS_CERT', 'bad_certificate', /pin/);
  });

  test('an oversized record: record_overflow', async () => {
    const r = await run({
      raw: Buffer.concat([Buffer.from([22, 3, 3, 0x40, 0x01]), Buffer.alloc(16385)]),
    });
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'record_overflow');
  });

  test('a record whose tag fails: bad_record_mac', async () => {
    const r = await run({
      wire: (recs) => {
        recs[2]![10]! ^= 1;
        return recs;
      },
    });
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'bad_record_mac');
  });

  test('an alert instead of a ServerHello: ERR_TLS_ALERT naming it', async () => {
    const r = await run({ raw: Buffer.from([21, 3, 3, 0, 2, 2, 40]) });
    expectFailure(r, 'ERR_TLS_ALERT', null, /handshake_failure/);
  });

  test('garbage, and a truncated record then close: a clear error, no hang', async () => {
    expectFailure(
      await run({ raw: Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n') }),
      'ERR_TLS_PROTOCOL',
      null,
    );
    expectFailure(
      await run({ raw: Buffer.from([22, 3, 3, 0, 90, 2, 0]) }),
      'ERR_TLS_PROTOCOL',
      null,
      /closed/,
    );
  });

  test('an expired certificate (checked against the CA at a later date): certificate_expired', async () => {
    const r = await run({}, { ca: cert.cert, now: new Date(Date.now() + 10 * 86400_000) });
    expectFailure(r, 'ERR_TLS_CERT', 'certificate_expired');
  });

  test('fuzz: random server answers end in a LadderError, never another error or a hang', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ minLength: 0, maxLength: 300 }),
          fc
            .uint8Array({ minLength: 0, maxLength: 200 })
            .map((b) => Uint8Array.from([22, 3, 3, b.length >> 8, b.length & 0xff, ...b])),
        ),
        async (bytes) => {
          const r = await run({ raw: Buffer.from(bytes) });
          assert.ok(r.err instanceof LadderError, String(r.err));
        },
      ),
      { numRuns: 60 },
    );
  });

  test('fuzz: one flipped byte anywhere in a valid answer fails cleanly or is harmless', async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat(), fc.integer({ min: 1, max: 255 }), async (at, x) => {
        const r = await run({
          wire: (recs) => {
            const all = Buffer.concat(recs);
            all[at % all.length]! ^= x;
            return [all];
          },
        });
        assert.ok(r.err === null || r.err instanceof LadderError, String(r.err));
      }),
      { numRuns: 60 },
    );
  });
});
