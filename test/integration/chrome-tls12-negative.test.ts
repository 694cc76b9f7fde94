/**
 * The fp=chrome client's TLS 1.2 path against a scripted server that breaks one thing at a time:
 * each case ends the handshake with the right LadderError code and the alert RFC 5246 (or RFC 7627,
 * 5746, 8446 §4.1.3) asks for. Then fuzz: one flipped byte anywhere in a valid TLS 1.2 answer, and
 * random messages in place of the server's first flight, end in a LadderError or a handshake, never
 * another exception or a hang.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import fc from 'fast-check';
import { LadderError } from '../../src/errors.js';
import { ALERT, chromeTlsConnect } from '../../src/transport/chrome-tls.js';
import { ChromeSessionCache, type ChromeSession12 } from '../../src/transport/chrome-sessions.js';
import { scriptServer12, type Script12 } from '../helpers/tls12-script-server.js';
import { makeCert, type TestCert } from '../helpers/tls-cert.js';

let cert: TestCert;
let base: Pick<Script12, 'chain' | 'key'>;

async function run(
  script: Partial<Script12>,
  opts: { ca?: string; sessions?: ChromeSessionCache } = {},
): Promise<{ err: (Error & { code?: string }) | null; alert: number | null; echo?: string }> {
  const srv = await scriptServer12({ ...base, ...script });
  try {
    let err: (Error & { code?: string }) | null = null;
    let echo: string | undefined;
    try {
      const tls = await chromeTlsConnect(
        { host: '127.0.0.1', port: srv.port },
        {
          sni: 'localhost',
          ...(opts.ca ? { ca: opts.ca } : { pinSha256: cert.pin }),
          ...(opts.sessions ? { sessions: opts.sessions } : {}),
          timeoutMs: 5000,
        },
      );
      assert.equal(tls.getProtocol(), 'TLSv1.2');
      let late: Error | null = null;
      const closed = new Promise((r) => tls.once('close', r));
      const got = new Promise<Buffer>((resolve, reject) => {
        tls.once('data', resolve);
        tls.on('error', (e) => {
          late = e;
          reject(e);
        });
        tls.once('close', () => reject(new Error('closed before the echo')));
      });
      tls.write('ping');
      try {
        echo = (await got).toString();
        // A server that goes on after the echo: its end decides the outcome.
        if (script.afterEcho) {
          await closed;
          err = late;
        }
      } catch (e) {
        err = e as Error;
      }
      tls.destroy();
    } catch (e) {
      err = e as Error;
    }
    const alert = err ? await srv.alert : null;
    return { err, alert, ...(echo !== undefined ? { echo } : {}) };
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

describe('fp=chrome client, TLS 1.2: every MUST abort', { timeout: 120_000 }, () => {
  before(() => {
    cert = makeCert();
    base = { chain: [new X509Certificate(cert.cert).raw], key: createPrivateKey(cert.key) };
  });
  after(() => cert.remove());

  test('the scripted server itself completes a handshake and echoes (pin and CA)', async () => {
    const a = await run({});
    assert.equal(a.err, null);
    assert.equal(a.echo, 'ping');
    assert.equal((await run({}, { ca: cert.cert })).err, null);
  });

  test('a bad ServerKeyExchange signature: decrypt_error', async () => {
    const r = await run({ ske: (p) => void (p.signature[p.signature.length - 3]! ^= 0x10) });
    expectFailure(r, 'ERR_TLS_CERT', 'decrypt_error', /ServerKeyExchange signature/);
  });

  test('a tampered server Finished: decrypt_error', async () => {
    const r = await run({ finished: (vd) => void (vd[0]! ^= 1) });
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'decrypt_error', /Finished/);
  });

  test('a cipher suite never offered (0xc009): illegal_parameter', async () => {
    const r = await run({ serverHello: (sh) => void (sh.cipher = 0xc009) });
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'illegal_parameter', /never offered/);
  });

  test('a TLS 1.3 suite in a TLS 1.2 ServerHello: illegal_parameter', async () => {
    const r = await run({ serverHello: (sh) => void (sh.cipher = 0x1301) });
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'illegal_parameter');
  });

  test('a CBC suite Chrome offers (0xc013): handshake_failure naming fp=node', async () => {
    const r = await run({ serverHello: (sh) => void (sh.cipher = 0xc013) });
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'handshake_failure', /fp=node/);
  });

  test('no extended master secret: handshake_failure', async () => {
    const r = await run({ serverHello: (sh) => void sh.exts.delete(0x0017) });
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'handshake_failure', /extended master secret/);
  });

  test('renegotiation_info not empty: handshake_failure', async () => {
    const r = await run({
      serverHello: (sh) => void sh.exts.set(0xff01, Buffer.from([12, ...Buffer.alloc(12)])),
    });
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'handshake_failure', /renegotiation_info/);
  });

  test('the TLS 1.3 downgrade sentinel (DOWNGRD\\x01 and \\x00): illegal_parameter', async () => {
    for (const last of ['01', '00']) {
      const r = await run({
        serverHello: (sh) => Buffer.from(`444f574e475244${last}`, 'hex').copy(sh.random, 24),
      });
      expectFailure(r, 'ERR_TLS_PROTOCOL', 'illegal_parameter', /downgrade/);
    }
  });

  test('TLS 1.1: protocol_version', async () => {
    const r = await run({ serverHello: (sh) => void (sh.version = 0x0302) });
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'protocol_version');
  });

  test('our random session id echoed (a resumption never offered): illegal_parameter', async () => {
    const r = await run({ serverHello: (sh) => void (sh.sessionId = sh.clientSessionId) });
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'illegal_parameter', /never offered/);
  });

  test('a TLS 1.2 session resumed with another cipher suite: illegal_parameter', async () => {
    // A session held for any server (its ticket is never opened: the server just echoes the id).
    const held: ChromeSession12 = {
      ticket: Buffer.alloc(100, 7),
      master: Buffer.alloc(48, 9),
      suite: 0xc02f,
      receivedMs: Date.now(),
      lifetimeS: 3600,
      chain: [],
    };
    class Held extends ChromeSessionCache {
      override get12(): ChromeSession12 {
        return held;
      }
    }
    const r = await run(
      {
        serverHello: (sh) => {
          sh.sessionId = sh.clientSessionId;
          sh.cipher = 0xc02b;
        },
      },
      { sessions: new Held() },
    );
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'illegal_parameter', /not the session's/);
  });

  test('an empty session id (no session to resume later): accepted', async () => {
    const r = await run({ serverHello: (sh) => void (sh.sessionId = Buffer.alloc(0)) });
    assert.equal(r.err, null);
  });

  test('an extension never offered in the ServerHello (key_share): unsupported_extension', async () => {
    const r = await run({ serverHello: (sh) => void sh.exts.set(0x0033, Buffer.alloc(4)) });
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'unsupported_extension');
  });

  test('ec_point_formats without uncompressed: illegal_parameter', async () => {
    const r = await run({ serverHello: (sh) => void sh.exts.set(0x000b, Buffer.from([1, 1])) });
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'illegal_parameter', /uncompressed/);
  });

  test('a group never offered (P-521) in the ServerKeyExchange: illegal_parameter', async () => {
    const r = await run({ ske: (p) => void (p.group = 0x0019) });
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'illegal_parameter', /group/);
  });

  test('the hybrid group (1.3 only) in the ServerKeyExchange: illegal_parameter', async () => {
    const r = await run({ ske: (p) => void (p.group = 0x11ec) });
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'illegal_parameter', /group/);
  });

  test('an RSA scheme for an ECDSA suite: illegal_parameter', async () => {
    const r = await run({ ske: (p) => void (p.scheme = 0x0804) });
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'illegal_parameter', /scheme/);
  });

  test('ServerHelloDone before ServerKeyExchange: unexpected_message', async () => {
    const r = await run({ flight: (m) => [m[0]!, m[2]!] });
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'unexpected_message');
  });

  test('a NewSessionTicket not announced: unexpected_message', async () => {
    const r = await run({
      last: (recs) => [Buffer.from([22, 3, 3, 0, 10, 4, 0, 0, 6, 0, 0, 0, 1, 0, 0]), ...recs],
    });
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'unexpected_message');
  });

  test('application data before the server Finished: unexpected_message', async () => {
    const r = await run({ last: (recs) => [Buffer.from([23, 3, 3, 0, 1, 0]), ...recs] });
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'unexpected_message');
  });

  test('a tampered protected record: bad_record_mac', async () => {
    const r = await run({
      last: (recs) => {
        recs[1]![recs[1]!.length - 1]! ^= 1;
        return recs;
      },
    });
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'bad_record_mac');
  });

  test('a HelloRequest after the handshake: no_renegotiation', async () => {
    const r = await run({
      afterEcho: (seal) => [seal(Buffer.from([0, 0, 0, 0]), 22)],
    });
    expectFailure(r, 'ERR_TLS_PROTOCOL', 'no_renegotiation', /renegotiate/);
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

  test('fuzz: random messages for the first flight end in a LadderError', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            type: fc.constantFrom(0, 4, 11, 12, 13, 14, 20, 22, 25),
            body: fc.uint8Array({ maxLength: 120 }).map((b) => Buffer.from(b)),
          }),
          { maxLength: 4 },
        ),
        fc.nat(2),
        async (random, keep) => {
          const r = await run({
            flight: (m) => [...m.slice(0, keep), ...random],
            endAfterFlight: true,
          });
          assert.ok(r.err instanceof LadderError, String(r.err));
        },
      ),
      { numRuns: 60 },
    );
  });
});
