/**
 * Parity gate (issue #16): Ladder's fp=chrome ClientHello against the live Chromium of this machine.
 * Chromium fetches a few hundred distinct names from a capturing listener on 127.0.0.1; Ladder builds
 * as many hellos for the same name; the two sets are compared field by field, by JA4, and by the
 * distribution of extension orders. Every difference is collected and named, so when Chromium
 * changes the failure says what changed (then update src/codec/tls-client-hello.ts and
 * docs/tls-fingerprint.md from the new capture). The resumption hello is compared the same way:
 * Chromium and Ladder each connect again and again to one HTTPS server of Node's that issues
 * tickets, and the hellos that offer a ticket are compared.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { EXT, isGrease, type ClientHelloInfo } from '../../src/codec/tls-client-hello.js';
import { chromeClientHello } from '../../src/transport/chrome-hello.js';
import { chromeTlsConnect } from '../../src/transport/chrome-tls.js';
import { ChromeSessionCache } from '../../src/transport/chrome-sessions.js';
import {
  captureChromeHellos,
  chromeSequentialFetches,
  chromiumMissing,
  ticketServer,
} from '../helpers/chromium-capture.js';
import { differences, hex, parseHello as parse, pskOffer } from '../helpers/hello-compare.js';
import { makeCert } from '../helpers/tls-cert.js';

const N = 300;
const why = chromiumMissing();
if (why) console.log(`Chromium parity tests skipped: ${why}`);

/** Mean position of each non-GREASE extension over a set of hellos. */
function meanPositions(xs: ClientHelloInfo[]): Map<number, number> {
  const sum = new Map<number, number>();
  for (const c of xs)
    c.extensions.forEach((t, i) => !isGrease(t) && sum.set(t, (sum.get(t) ?? 0) + i));
  return new Map([...sum].map(([t, s]) => [t, s / xs.length]));
}

describe(
  'fp=chrome ClientHello against live Chromium',
  { skip: why ?? false, timeout: 120_000 },
  () => {
    let chrome: ClientHelloInfo[];
    let ladder: ClientHelloInfo[];
    before(async () => {
      chrome = (await captureChromeHellos(N, 60_000)).map(parse);
      // The capture fetches https://h<i>.hello.test:<port>/ — the same name lengths for Ladder.
      ladder = chrome.map((c) => parse(chromeClientHello(c.sni, ['h2', 'http/1.1']).record));
    });

    test('field by field: suites, groups, shares, sigalgs, versions, ALPN, ALPS, GREASE, lengths, JA4', () => {
      assert.deepEqual(differences(chrome, ladder), []);
    });

    test('a fresh extension order per connection, GREASE first and last, positions spread alike', () => {
      const orders = (xs: ClientHelloInfo[]): number =>
        new Set(xs.map((c) => c.extensions.filter((t) => !isGrease(t)).join(','))).size;
      // 17! orders: a repeat among N would mean a fixed or poorly drawn permutation.
      assert.equal(orders(chrome), N, 'Chromium: every order distinct');
      assert.equal(orders(ladder), N, 'Ladder: every order distinct');
      const a = meanPositions(chrome);
      const b = meanPositions(ladder);
      // Under a uniform permutation each mean is (n-1)/2 with a standard error near 0.3 for N = 300;
      // 2.0 is more than four standard errors of the difference.
      const off = [...a].filter(([t, m]) => Math.abs(m - (b.get(t) ?? -99)) > 2.0);
      assert.deepEqual(
        off.map(
          ([t, m]) =>
            `${hex(t)}: Chromium mean position ${m.toFixed(1)}, Ladder ${b.get(t)?.toFixed(1)}`,
        ),
        [],
      );
    });
  },
);

test('Ladder hellos are one record with no SNI for an IP literal and no ALPS without h2', () => {
  const ip = parse(chromeClientHello('127.0.0.1', ['http/1.1']).record);
  assert.equal(ip.sni, undefined);
  assert.equal(ip.alpsProtocols, undefined);
  assert.deepEqual(ip.alpn, ['http/1.1']);
});

describe(
  'fp=chrome WebSocket ClientHello against Chromium opening wss://',
  { skip: why ?? false, timeout: 120_000 },
  () => {
    test('field by field (ALPN http/1.1 alone, no ALPS), as the WebSocket dialer sends it', async () => {
      const chrome = (await captureChromeHellos(100, 60_000, 'websocket')).map(parse);
      const ladder = chrome.map((c) => parse(chromeClientHello(c.sni, ['http/1.1']).record));
      assert.deepEqual(differences(chrome, ladder), []);
      assert.deepEqual(chrome[0]!.alpn, ['http/1.1']);
    });
  },
);

/**
 * TLS 1.3 connections per side. Node's server gives two tickets on a full handshake and none on a resumed
 * one, and each ticket is offered once: full, resumed, resumed, full, ... so 36 give 24 resumption
 * hellos, enough for distinct orders and the ticket ages to show.
 */
const CONNECTIONS = 36;

/** Chromium's and Ladder's hellos to one name, each side reconnecting to its own ticket server. */
async function reconnect(
  version: 'TLSv1.3' | 'TLSv1.2',
  connections: number,
  tickets = true,
): Promise<{ chrome: Buffer[]; ladder: Buffer[]; made: [number, number] }> {
  const cert = makeCert();
  const name = 'resume.hello.test';
  const chromeSrv = await ticketServer(cert.cert, cert.key, version, tickets);
  const ladderSrv = await ticketServer(cert.cert, cert.key, version, tickets);
  try {
    await chromeSequentialFetches(name, chromeSrv.port, connections);
    const sessions = new ChromeSessionCache();
    for (let i = 0; i < connections; i++) {
      const tls = await chromeTlsConnect(
        { host: '127.0.0.1', port: ladderSrv.port },
        { sni: name, pinSha256: cert.pin, sessions, timeoutMs: 10_000 },
      );
      const ended = new Promise<void>((r) => tls.on('end', r));
      tls.on('data', () => {});
      tls.write(`GET / HTTP/1.1\r\nHost: ${name}\r\n\r\n`);
      await ended;
      tls.destroy();
    }
    assert.equal(chromeSrv.records.length, connections, 'Chromium: one connection per fetch');
    return {
      chrome: [...chromeSrv.records],
      ladder: [...ladderSrv.records],
      made: [chromeSrv.sessionsMade(), ladderSrv.sessionsMade()],
    };
  } finally {
    await chromeSrv.close();
    await ladderSrv.close();
    cert.remove();
  }
}

const orders = (xs: ClientHelloInfo[]): number =>
  new Set(xs.map((c) => c.extensions.filter((t) => !isGrease(t)).join(','))).size;

describe(
  'fp=chrome resumption ClientHello against Chromium reconnecting',
  { skip: why ?? false, timeout: 120_000 },
  () => {
    test('TLS 1.3: field by field, pre_shared_key last, psk_dhe_ke, no early_data, ages obfuscated', async () => {
      const { chrome: c, ladder: l } = await reconnect('TLSv1.3', CONNECTIONS);
      // Which connections offer a ticket: how many are kept and how often each is used.
      const pattern = (records: Buffer[]): string =>
        records.map((r) => (pskOffer(parse(r)) ? 'R' : '-')).join('');
      assert.equal(pattern(l), pattern(c));
      const resumed = (records: Buffer[]): ClientHelloInfo[] =>
        records.map(parse).filter((h) => pskOffer(h) !== null);
      const chrome = resumed(c);
      const ladder = resumed(l);
      const n = chrome.length;
      assert.ok(n >= CONNECTIONS / 2, `Chromium resumed ${n} of ${CONNECTIONS}`);
      assert.deepEqual(differences(chrome, ladder), []);
      assert.equal(orders(chrome), n, 'Chromium: a fresh order per resumption hello');
      assert.equal(orders(ladder), n, 'Ladder: a fresh order per resumption hello');
      // An age sent in clear is the milliseconds since the ticket came (well under 2^20 here);
      // an obfuscated one adds a random 32-bit ticket_age_add, under 2^20 once in 4,096.
      const obfuscated = (xs: ClientHelloInfo[]): boolean =>
        xs.filter((h) => pskOffer(h)!.identities[0]!.age >= 2 ** 20).length >= xs.length / 2;
      assert.ok(obfuscated(chrome), 'Chromium obfuscates the ticket age');
      assert.ok(obfuscated(ladder), 'Ladder obfuscates the ticket age');
    });

    test('TLS 1.2: the ticket in session_ticket on every reconnection, a fresh session id', async () => {
      const connections = 13;
      const { chrome: c, ladder: l } = await reconnect('TLSv1.2', connections);
      const ticket = (r: Buffer): string =>
        Buffer.from(parse(r).extensionData.get(EXT.SESSION_TICKET) ?? []).toString('hex');
      const pattern = (records: Buffer[]): string =>
        records.map((r) => (ticket(r) === '' ? '-' : 'R')).join('');
      assert.equal(pattern(l), pattern(c));
      assert.equal(pattern(c), `-${'R'.repeat(connections - 1)}`, 'Chromium resumes every time');
      // The same ticket again and again (a TLS 1.2 session is not single-use).
      for (const side of [c, l]) assert.equal(new Set(side.slice(1).map(ticket)).size, 1);
      const chrome = c.slice(1).map(parse);
      const ladder = l.slice(1).map(parse);
      assert.deepEqual(differences(chrome, ladder), []);
      for (const xs of [chrome, ladder]) {
        assert.equal(
          new Set(xs.map((h) => Buffer.from(h.sessionId).toString('hex'))).size,
          xs.length,
        );
        assert.equal(orders(xs), xs.length);
      }
    });

    test('TLS 1.2 by session id (no tickets): the server’s id on every reconnection', async () => {
      const connections = 8;
      const { chrome: c, ladder: l, made } = await reconnect('TLSv1.2', connections, false);
      assert.deepEqual(made, [1, 1], 'one session each, resumed on every reconnection');
      const id = (r: Buffer): string => Buffer.from(parse(r).sessionId).toString('hex');
      for (const side of [c, l]) {
        assert.equal(new Set(side.slice(1).map(id)).size, 1, 'the same id each time');
        assert.notEqual(id(side[1]!), id(side[0]!), 'the server’s, not the first hello’s');
        for (const r of side)
          assert.equal(parse(r).extensionData.get(EXT.SESSION_TICKET)?.length, 0);
      }
      assert.deepEqual(differences(c.slice(1).map(parse), l.slice(1).map(parse)), []);
    });
  },
);
