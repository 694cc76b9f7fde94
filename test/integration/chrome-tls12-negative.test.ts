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
      sessionId: Buffer.alloc(0),
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

/** One connection to a running scripted server: 'ping' out, its echo back, or the failure. */
async function once(
  port: number,
  sessions: ChromeSessionCache,
  timeoutMs = 5000,
): Promise<{ err: (Error & { code?: string }) | null; reused?: boolean; echo?: string }> {
  try {
    const tls = await chromeTlsConnect(
      { host: '127.0.0.1', port },
      { sni: 'localhost', pinSha256: cert.pin, sessions, timeoutMs },
    );
    try {
      const echo = await new Promise<Buffer>((resolve, reject) => {
        tls.once('data', resolve);
        tls.on('error', reject);
        tls.once('close', () => reject(new Error('closed before the echo')));
        tls.write('ping');
      });
      return { err: null, reused: tls.isSessionReused(), echo: echo.toString() };
    } finally {
      tls.destroy();
    }
  } catch (e) {
    return { err: e as Error };
  }
}

/** A TLS 1.2 session held for any server, offered by its id (or its ticket, when it has one). */
function held12(s: Partial<ChromeSession12>): ChromeSessionCache {
  const session: ChromeSession12 = {
    ticket: Buffer.alloc(0),
    sessionId: Buffer.alloc(32, 5),
    master: Buffer.alloc(48, 9),
    suite: 0xc02b,
    receivedMs: Date.now(),
    lifetimeS: 3600,
    chain: [],
    ...s,
  };
  return new (class extends ChromeSessionCache {
    override get12(): ChromeSession12 {
      return session;
    }
  })();
}

describe(
  'fp=chrome client, TLS 1.2 resumption by session id (no ticket)',
  { timeout: 60_000 },
  () => {
    before(() => {
      cert = makeCert();
      base = { chain: [new X509Certificate(cert.cert).raw], key: createPrivateKey(cert.key) };
    });
    after(() => cert.remove());

    test('the server’s id is offered again and again; the abbreviated handshake resumes', async () => {
      const seen: { offered: Buffer; given: Buffer }[] = [];
      const kept = new Map<string, Buffer>();
      const srv = await scriptServer12({
        ...base,
        sessions: kept,
        serverHello: (sh) =>
          void seen.push({ offered: Buffer.from(sh.clientSessionId), given: sh.sessionId }),
      });
      try {
        const sessions = new ChromeSessionCache();
        const runs = [];
        for (let i = 0; i < 3; i++) runs.push(await once(srv.port, sessions));
        for (const r of runs) assert.equal(r.err, null, r.err?.message);
        assert.deepEqual(
          runs.map((r) => [r.reused, r.echo]),
          [
            [false, 'ping'],
            [true, 'ping'],
            [true, 'ping'],
          ],
        );
        assert.equal(seen[0]!.offered.length, 32, 'a fresh hello: a random id');
        assert.notDeepEqual(seen[0]!.offered, seen[0]!.given);
        assert.deepEqual(
          seen[1]!.offered,
          seen[0]!.given,
          'the second hello offers the server’s id',
        );
        assert.deepEqual(seen[2]!.offered, seen[0]!.given, 'a TLS 1.2 session is not single-use');
        assert.deepEqual(seen[1]!.given, seen[1]!.offered, 'the server echoed it');
        // The server forgets the session: a full handshake, whose new id is offered next.
        kept.clear();
        const full = await once(srv.port, sessions);
        assert.equal(full.err, null);
        assert.equal(full.reused, false);
        const again = await once(srv.port, sessions);
        assert.equal(again.reused, true);
        assert.deepEqual(seen[4]!.offered, seen[3]!.given);
        assert.notDeepEqual(seen[3]!.given, seen[0]!.given);
      } finally {
        await srv.close();
      }
    });

    test('a tampered Finished in the abbreviated handshake: decrypt_error', async () => {
      let tamper = false;
      const seen: { offered: Buffer; given: Buffer }[] = [];
      const srv = await scriptServer12({
        ...base,
        sessions: new Map(),
        serverHello: (sh) =>
          void seen.push({ offered: Buffer.from(sh.clientSessionId), given: sh.sessionId }),
        finished: (vd) => void (tamper && (vd[0]! ^= 1)),
      });
      try {
        const sessions = new ChromeSessionCache();
        assert.equal((await once(srv.port, sessions)).err, null);
        tamper = true;
        const r = await once(srv.port, sessions);
        assert.deepEqual(seen[1]!.offered, seen[0]!.given, 'the session was offered by its id');
        // One server for both connections: the alert is read from the message.
        expectFailure({ ...r, alert: null }, 'ERR_TLS_PROTOCOL', null, /Finished.*decrypt_error/);
      } finally {
        await srv.close();
      }
    });

    test('the offered id echoed, then a full handshake: unexpected_message', async () => {
      // BoringSSL: an echoed id is a resumption; a Certificate where the ChangeCipherSpec is due is
      // an unexpected message.
      const r = await run(
        { serverHello: (sh) => void (sh.sessionId = sh.clientSessionId) },
        { sessions: held12({}) },
      );
      expectFailure(r, 'ERR_TLS_PROTOCOL', 'unexpected_message', /ChangeCipherSpec was due/);
    });

    test('a session with a ticket and an id: the ticket is offered, beside a random id', async () => {
      let offered: Buffer | null = null;
      const r = await run(
        { serverHello: (sh) => void (offered = Buffer.from(sh.clientSessionId)) },
        { sessions: held12({ ticket: Buffer.alloc(64, 3) }) },
      );
      assert.equal(r.err, null);
      assert.equal(offered!.length, 32);
      assert.notDeepEqual(offered, Buffer.alloc(32, 5));
    });

    test('an id-only session offered: the hello carries that id, whatever its length', async () => {
      let offered: Buffer | null = null;
      const r = await run(
        { serverHello: (sh) => void (offered = Buffer.from(sh.clientSessionId)) },
        { sessions: held12({ sessionId: Buffer.from([1, 2, 3]) }) },
      );
      assert.equal(r.err, null, 'not resumed: a full handshake');
      assert.deepEqual(
        offered,
        Buffer.from([1, 2, 3]),
        'an id of any length up to 32 is sent as is',
      );
    });

    test('fuzz: one flipped byte in an abbreviated answer fails cleanly or is harmless', async () => {
      let flip: { at: number; x: number } | null = null;
      const kept = new Map<string, Buffer>();
      const srv = await scriptServer12({
        ...base,
        sessions: kept,
        wire: (recs) => {
          if (!flip) return recs;
          const all = Buffer.concat(recs);
          all[flip.at % all.length]! ^= flip.x;
          return [all];
        },
      });
      try {
        assert.equal((await once(srv.port, new ChromeSessionCache())).err, null);
        // Every run offers the session the server keeps, whatever the run before did to it.
        const [id, master] = [...kept][0]!;
        const offer = { sessionId: Buffer.from(id, 'hex'), master };
        assert.equal((await once(srv.port, held12(offer))).reused, true);
        await fc.assert(
          fc.asyncProperty(fc.nat(), fc.integer({ min: 1, max: 255 }), async (at, x) => {
            flip = { at, x };
            // A flipped length leaves the client waiting for bytes that never come: its dial timeout
            // (a LadderError, whatever the load) ends it sooner.
            const r = await once(srv.port, held12(offer), 1000);
            assert.ok(r.err === null || r.err instanceof LadderError, String(r.err));
          }),
          { numRuns: 40 },
        );
      } finally {
        await srv.close();
      }
    });
  },
);

/** ALPN "h2" in the ServerHello: with it the client does False Start. */
const ALPN_H2: [number, Buffer] = [0x0010, Buffer.from([0, 3, 2, 0x68, 0x32])];

/**
 * A False Start connection: it must open before the server's Finished (the scripted server answers
 * the client's Finished with its own, then echoes), then end as the server's Finished decides.
 */
async function falseStart(script: Partial<Script12>): Promise<{
  opened: boolean;
  err: (Error & { code?: string }) | null;
  data: string;
  alert: number | null;
}> {
  const srv = await scriptServer12({
    ...base,
    ...script,
    serverHello: (sh) => void sh.exts.set(...ALPN_H2),
  });
  try {
    let opened = false;
    let data = '';
    let err: (Error & { code?: string }) | null = null;
    try {
      const tls = await chromeTlsConnect(
        { host: '127.0.0.1', port: srv.port },
        { sni: 'localhost', pinSha256: cert.pin, sessions: null, timeoutMs: 5000 },
      );
      opened = true;
      await new Promise<void>((resolve) => {
        tls.on('data', (d: Buffer) => {
          data += d.toString();
          resolve();
        });
        tls.on('error', (e) => {
          err = e;
          resolve();
        });
        tls.once('close', () => resolve());
        tls.write('ping');
      });
      tls.destroy();
    } catch (e) {
      err = e as Error;
    }
    return { opened, err, data, alert: err ? await srv.alert : null };
  } finally {
    await srv.close();
  }
}

describe(
  'fp=chrome client, TLS 1.2 False Start: the server’s Finished still decides',
  { timeout: 60_000 },
  () => {
    before(() => {
      cert = makeCert();
      base = { chain: [new X509Certificate(cert.cert).raw], key: createPrivateKey(cert.key) };
    });
    after(() => cert.remove());

    test('a good Finished: the echo arrives', async () => {
      const r = await falseStart({});
      assert.equal(r.err, null);
      assert.equal(r.opened, true);
      assert.equal(r.data, 'ping');
    });

    test('a bad Finished, the echo right behind it: decrypt_error, no data passed on', async () => {
      const r = await falseStart({ finished: (vd) => void (vd[0]! ^= 1) });
      assert.equal(r.opened, true, 'False Start: the connection opened before the Finished');
      expectFailure({ ...r, err: r.err }, 'ERR_TLS_PROTOCOL', 'decrypt_error', /Finished/);
      assert.equal(r.data, '', 'no data from a server whose Finished failed');
    });

    test('application data before the Finished: unexpected_message, none passed on', async () => {
      const r = await falseStart({
        last: (recs) => [Buffer.from([23, 3, 3, 0, 1, 0]), ...recs],
      });
      assert.equal(r.opened, true);
      expectFailure(r, 'ERR_TLS_PROTOCOL', 'unexpected_message', /before the handshake finished/);
      assert.equal(r.data, '');
    });
  },
);
