/**
 * ALPS (application_settings 17613, draft-vvv-tls-alps) as Chromium answers it. A scripted TLS 1.3
 * server negotiates h2 and ALPS; it opens the client's second flight with the client's handshake
 * key. Chromium's flight and Ladder's are compared record by record and message by message: the
 * ChangeCipherSpec, then one sealed record carrying the client's EncryptedExtensions (the ALPS
 * settings) and its Finished. Chromium's settings for h2 are empty (HttpNetworkSession gives h2
 * ALPS "with empty data"; BoringSSL copies them into the extension as they are), so the message
 * is the same bytes on both sides. The placement follows from the layout: the EncryptedExtensions
 * share a record with the client's Finished, which covers the server's Finished, so both left after
 * it, and the order inside the record puts them before the client's Finished (and before the
 * empty Certificate a CertificateRequest asks for). Then what a server must not do with ALPS, each
 * refused with the alert BoringSSL sends.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { LadderError } from '../../src/errors.js';
import { ALERT, chromeTlsConnect } from '../../src/transport/chrome-tls.js';
import { TlsWriter } from '../../src/codec/tls-wire.js';
import { launchChromium } from '../helpers/chromium.js';
import { chromiumMissing } from '../helpers/chromium-capture.js';
import {
  scriptServer,
  type ClientFlight,
  type Msg,
  type Script,
} from '../helpers/tls13-script-server.js';
import { makeCert, type TestCert } from '../helpers/tls-cert.js';

const ALPN = 0x0010;
const ALPS = 0x44cd;

/** An h2 SETTINGS frame (RFC 9113 §6.5: HEADER_TABLE_SIZE 4096), the server's ALPS settings. */
const SERVER_SETTINGS = Buffer.from('000006040000000000000100001000', 'hex');

const alpnExt = (p: string): [number, Buffer] => [
  ALPN,
  new TlsWriter().vec(2, (l) => l.vec(1, (n) => n.bytes(Buffer.from(p, 'latin1')))).toBuffer(),
];
const alpsExt = (settings = SERVER_SETTINGS): [number, Buffer] => [ALPS, settings];

/** A server flight whose EncryptedExtensions carry `exts` (and optionally a CertificateRequest). */
function withExtensions(exts: [number, Buffer][], certificateRequest = false): Script['flight'] {
  return (m, finished, certificateVerify) => {
    const ee: Msg = {
      type: 8,
      body: new TlsWriter()
        .vec(2, (x) => {
          for (const [t, d] of exts) x.u16(t).vec(2, (v) => v.bytes(d));
        })
        .toBuffer(),
    };
    // §4.3.2: an empty context; signature_algorithms (ECDSA P-256 SHA-256) is its one extension.
    const request: Msg = {
      type: 13,
      body: new TlsWriter()
        .vec(1, () => {})
        .vec(2, (x) => x.u16(0x000d).vec(2, (v) => v.vec(2, (l) => l.u16(0x0403))))
        .toBuffer(),
    };
    const msgs = certificateRequest ? [ee, request, m[1]!] : [ee, m[1]!];
    msgs.push(certificateVerify(msgs));
    msgs.push(finished(msgs));
    return msgs;
  };
}

let cert: TestCert;
let base: Pick<Script, 'chain' | 'key'>;

/** A bound on waiting for an event that should come (a hang fails here, with what it waited for). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer!: NodeJS.Timeout;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
  });
  return Promise.race([p, bound]).finally(() => clearTimeout(timer));
}

/** Ladder's fp=chrome client against the scripted server: its error and alert, or its flight. */
async function ladder(
  script: Partial<Script>,
  alpn?: string[],
): Promise<{
  err: (Error & { code?: string }) | null;
  alert: number | null;
  flight?: ClientFlight;
}> {
  const srv = await scriptServer({ ...base, ...script });
  try {
    try {
      const tls = await chromeTlsConnect(
        { host: '127.0.0.1', port: srv.port },
        {
          sni: 'localhost',
          pinSha256: cert.pin,
          sessions: null,
          timeoutMs: 10_000,
          ...(alpn ? { alpn } : {}),
        },
      );
      const flight = await within(srv.flight, 10_000, "Ladder's second flight");
      tls.destroy();
      return { err: null, alert: null, flight };
    } catch (e) {
      return { err: e as Error, alert: await within(srv.alert, 10_000, 'alert or close') };
    }
  } finally {
    await srv.close();
  }
}

function expectRefusal(
  r: Awaited<ReturnType<typeof ladder>>,
  alert: keyof typeof ALERT,
  message: RegExp,
): void {
  assert.ok(r.err, 'the handshake must fail');
  assert.ok(
    r.err instanceof LadderError,
    `a LadderError, not ${r.err.constructor.name}: ${r.err.message}`,
  );
  assert.equal(r.err.code, 'ERR_TLS_PROTOCOL', r.err.message);
  assert.match(r.err.message, message);
  assert.equal(r.alert, ALERT[alert], `alert ${alert} sent (${r.err.message})`);
}

/** The flight as the comparison reads it: records, message types, EE bodies (Finished is random). */
function shape(f: ClientFlight): unknown {
  return {
    records: f.records.map((r) => `${r.type}:${r.length}`),
    messages: f.messages.map((m) =>
      m.type === 20 ? `20 (${m.body.length} bytes)` : `${m.type} ${m.body.toString('hex')}`,
    ),
  };
}

const why = chromiumMissing();
if (why) console.log(`Chromium ALPS parity skipped: ${why}`);

describe('ALPS: the client flight, Chromium and Ladder', { timeout: 120_000 }, () => {
  before(() => {
    cert = makeCert();
    base = { chain: [new X509Certificate(cert.cert).raw], key: createPrivateKey(cert.key) };
  });
  after(() => cert.remove());

  /** Chromium's second flight against a scripted server answering with `exts` (one fetch). */
  async function chromium(
    cases: { name: string; exts: [number, Buffer][] }[],
  ): Promise<ClientFlight[]> {
    const browser = await launchChromium([
      '--disable-quic',
      '--host-resolver-rules=MAP *.hello.test 127.0.0.1, EXCLUDE localhost',
      '--ignore-certificate-errors',
    ]);
    try {
      const page = await browser.newPage();
      const out: ClientFlight[] = [];
      for (const c of cases) {
        const srv = await scriptServer({ ...base, flight: withExtensions(c.exts) });
        try {
          // The fetch is not awaited: the server answers nothing after the handshake.
          await page.evaluate((url) => {
            void fetch(url, { mode: 'no-cors' }).catch(() => {});
          }, `https://${c.name}.hello.test:${srv.port}/`);
          out.push(await within(srv.flight, 30_000, `Chromium's second flight (${c.name})`));
        } finally {
          await srv.close();
        }
      }
      return out;
    } finally {
      await browser.close();
    }
  }

  test(
    'against live Chromium: ALPS for h2 (EE with empty settings, then Finished) and no ALPS',
    { skip: why ?? false },
    async () => {
      const [alps, none] = await chromium([
        { name: 'alps', exts: [alpnExt('h2'), alpsExt()] },
        { name: 'no-alps', exts: [alpnExt('h2')] },
      ]);
      const l1 = await ladder({ flight: withExtensions([alpnExt('h2'), alpsExt()]) });
      const l2 = await ladder({ flight: withExtensions([alpnExt('h2')]) });
      assert.equal(l1.err, null);
      assert.equal(l2.err, null);
      assert.deepEqual(shape(l1.flight!), shape(alps!));
      assert.deepEqual(shape(l2.flight!), shape(none!));
      // What Chromium 156 sends, named so a change says what changed: ChangeCipherSpec, then one
      // record with EncryptedExtensions { application_settings: "" } and Finished.
      assert.deepEqual(shape(alps!), {
        records: ['20:1', `23:${10 + 36 + 1 + 16}`],
        messages: ['8 000444cd0000', '20 (32 bytes)'],
      });
    },
  );

  test('Ladder with a CertificateRequest: EncryptedExtensions, empty Certificate, Finished in one record', async () => {
    const r = await ladder({ flight: withExtensions([alpnExt('h2'), alpsExt()], true) });
    assert.equal(r.err, null);
    assert.deepEqual(shape(r.flight!), {
      records: ['20:1', `23:${10 + 8 + 36 + 1 + 16}`],
      messages: ['8 000444cd0000', '11 00000000', '20 (32 bytes)'],
    });
  });

  test('ALPS for a protocol it was not offered for (ALPN http/1.1): illegal_parameter', async () => {
    const r = await ladder({ flight: withExtensions([alpnExt('http/1.1'), alpsExt()]) });
    expectRefusal(r, 'illegal_parameter', /ALPS for "http\/1\.1"/);
  });

  test('ALPS without ALPN: illegal_parameter', async () => {
    const r = await ladder({ flight: withExtensions([alpsExt()]) });
    expectRefusal(r, 'illegal_parameter', /ALPS without ALPN/);
  });

  test('ALPS twice: decode_error', async () => {
    const r = await ladder({ flight: withExtensions([alpnExt('h2'), alpsExt(), alpsExt()]) });
    expectRefusal(r, 'decode_error', /repeats extension 17613/);
  });

  test('ALPS to a client that offered no h2 (and so no ALPS): unsupported_extension', async () => {
    const r = await ladder({ flight: withExtensions([alpnExt('http/1.1'), alpsExt()]) }, [
      'http/1.1',
    ]);
    expectRefusal(r, 'unsupported_extension', /ALPS without h2 offered/);
  });

  test('ALPS with empty server settings is taken as any other value', async () => {
    const r = await ladder({ flight: withExtensions([alpnExt('h2'), alpsExt(Buffer.alloc(0))]) });
    assert.equal(r.err, null);
    assert.equal(r.flight!.messages[0]!.body.toString('hex'), '000444cd0000');
  });
});
