/**
 * The DoT and DoH resolvers (src/probe/encrypted-dns.ts) against loopback DoT and DoH servers (Node's
 * tls and https servers answering from test/helpers/dns-server.ts), over a DirectDialer: one
 * connection for successive queries, pipelining with answers out of order, reopening a closed
 * connection, the certificate checks, the per-query deadline, the cap on pending queries, and the
 * bounds on answers.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { DirectDialer } from '../../src/transport/direct.js';
import { issueCertificate, type IssuedCertificate } from '../../src/server/certificates.js';
import {
  DohResolver,
  DotResolver,
  type EncryptedDnsOptions,
} from '../../src/probe/encrypted-dns.js';
import type { Resolver } from '../../src/probe/dns-client.js';
import { DNS_TYPE } from '../../src/codec/dns.js';
import {
  startDohServer,
  startDotServer,
  type TlsDnsOptions,
  type TlsDnsServer,
} from '../helpers/dns-server.js';

const ZONE: Record<string, string[]> = {
  'a.lab': ['198.18.0.1'],
  'b.lab': ['198.18.0.2'],
  'c.lab': ['198.18.0.3'],
  'd.lab': ['198.18.0.4'],
};
/** Long enough for any loaded machine: the tests that need a timeout give their own. */
const TIMEOUT_MS = 20_000;

let ca: IssuedCertificate;
let leaf: IssuedCertificate;
let nameOnly: IssuedCertificate;
const servers: TlsDnsServer[] = [];
const resolvers: { close(): void }[] = [];

before(() => {
  ca = issueCertificate({ commonName: 'Ladder test CA', isCA: true, serial: randomBytes(20) });
  const issuer = { cert: ca.cert, key: ca.keyObject };
  leaf = issueCertificate({
    commonName: 'localhost',
    altNames: ['localhost', '127.0.0.1'],
    issuer,
    serial: randomBytes(20),
  });
  nameOnly = issueCertificate({
    commonName: 'localhost',
    altNames: ['localhost'],
    issuer,
    serial: randomBytes(20),
  });
});

after(async () => {
  for (const r of resolvers) r.close();
  await Promise.all(servers.map((s) => s.close()));
});

async function dot(o: Partial<TlsDnsOptions> = {}): Promise<TlsDnsServer> {
  const s = await startDotServer(ZONE, { cert: leaf.cert, key: leaf.key, ...o });
  servers.push(s);
  return s;
}

async function doh(o: Partial<TlsDnsOptions> = {}) {
  const s = await startDohServer(ZONE, { cert: leaf.cert, key: leaf.key, ...o });
  servers.push(s);
  return s;
}

function resolver(
  kind: typeof DotResolver | typeof DohResolver,
  port: number,
  o: Partial<EncryptedDnsOptions> = {},
): DotResolver | DohResolver {
  const r = new kind({
    dialer: new DirectDialer(),
    server: { host: 'localhost', port },
    ca: ca.cert,
    ...o,
  });
  resolvers.push(r);
  return r;
}

async function addresses(r: Resolver, name: string, timeoutMs = TIMEOUT_MS) {
  const l = await r.lookup(name, DNS_TYPE.A, { timeoutMs });
  return l.failure ?? l.addresses.join(',');
}

test('DoT: pipelined queries on one connection, answered out of order, matched by ID', async () => {
  const s = await dot({ batch: 4 });
  const r = resolver(DotResolver, s.port);
  const got = await Promise.all(['a.lab', 'b.lab', 'c.lab', 'd.lab'].map((n) => addresses(r, n)));
  assert.deepEqual(got, ['198.18.0.1', '198.18.0.2', '198.18.0.3', '198.18.0.4']);
  assert.equal(s.peers.length, 1, 'one connection for all four');
  assert.equal(await addresses(r, 'nx.lab'), 'dns_nxdomain_error');
  assert.equal(s.peers.length, 1, 'and it is kept for the next query');
  assert.match(r.address, /^tls:\/\/localhost:\d+$/);
});

test('DoT and DoH: a connection the server closed is reopened by the next query', async () => {
  for (const [kind, s] of [
    [DotResolver, await dot({ closeAfterAnswer: true })],
    [DohResolver, await doh({ closeAfterAnswer: true })],
  ] as const) {
    const r = resolver(kind, s.port);
    assert.equal(await addresses(r, 'a.lab'), '198.18.0.1');
    assert.equal(await addresses(r, 'b.lab'), '198.18.0.2');
    assert.equal(s.peers.length, 2, `${kind.name}: a second connection`);
  }
});

test('DoH: POST application/dns-message, successive queries on one keep-alive connection', async () => {
  const s = await doh();
  const r = resolver(DohResolver, s.port, { path: '/q?x=1' });
  const got = await Promise.all(['a.lab', 'b.lab', 'c.lab'].map((n) => addresses(r, n)));
  assert.deepEqual(got, ['198.18.0.1', '198.18.0.2', '198.18.0.3']);
  assert.equal(s.peers.length, 1);
  assert.deepEqual(s.paths, Array(3).fill('POST /q?x=1 application/dns-message'));
});

test('DoH: a non-200 answer, a wrong media type and an oversized body each fail the query', async () => {
  const notFound = await doh({ status: 404 });
  assert.equal(
    await addresses(resolver(DohResolver, notFound.port), 'a.lab'),
    'http_request_failed',
  );
  const html = await doh({ contentType: 'text/html' });
  assert.match(
    await addresses(resolver(DohResolver, html.port), 'a.lab'),
    /not application\/dns-message/,
  );
  const big = await doh({ body: Buffer.alloc(70_000) });
  assert.match(await addresses(resolver(DohResolver, big.port), 'a.lab'), /at most 65535/);
});

test('TLS: Node’s roots do not trust the test CA; an IP host needs the IP in the certificate', async () => {
  const s = await dot();
  const untrusted = new DotResolver({
    dialer: new DirectDialer(),
    server: { host: 'localhost', port: s.port },
  });
  resolvers.push(untrusted);
  assert.equal(await addresses(untrusted, 'a.lab'), 'ssl_unknown_authority');
  // 127.0.0.1: no SNI; the certificate names the address, so it passes
  assert.equal(
    await addresses(
      resolver(DotResolver, s.port, { server: { host: '127.0.0.1', port: s.port } }),
      'a.lab',
    ),
    '198.18.0.1',
  );
  const named = await dot({ cert: nameOnly.cert, key: nameOnly.key });
  const byIp = resolver(DotResolver, named.port, {
    server: { host: '127.0.0.1', port: named.port },
  });
  assert.equal(await addresses(byIp, 'a.lab'), 'ssl_invalid_hostname');
});

test('a silent server: each query ends at its deadline, and the pending queries are capped', async () => {
  for (const [kind, s] of [
    [DotResolver, await dot({ silent: true })],
    [DohResolver, await doh({ silent: true })],
  ] as const) {
    const r = resolver(kind, s.port, { maxPending: 2 });
    const controller = new AbortController();
    const waiting = ['a.lab', 'b.lab'].map((n) =>
      r.lookup(n, DNS_TYPE.A, { timeoutMs: TIMEOUT_MS, signal: controller.signal }),
    );
    // a third while two are pending fails at once, whatever the deadline
    const third = await r.lookup('c.lab', DNS_TYPE.A, { timeoutMs: TIMEOUT_MS });
    assert.match(String(third.failure), /over 2 queries pending/, kind.name);
    controller.abort();
    for (const l of await Promise.all(waiting)) assert.equal(l.addresses.length, 0);
    // the deadline of one query: a short one, since nothing will ever answer
    assert.equal(await addresses(r, 'd.lab', 50), 'generic_timeout_error', kind.name);
  }
});

test('a query given up before its connection fails leaves no unhandled rejection', async () => {
  const s = await dot();
  const port = s.port;
  await s.close(); // nothing listens there now
  for (const kind of [DotResolver, DohResolver]) {
    const direct = new DirectDialer();
    let failed!: () => void;
    const dialFailed = new Promise<void>((r) => (failed = r));
    const r = resolver(kind, port, {
      dialer: {
        dial: (t, signal) =>
          direct.dial(t, signal).catch((err: unknown) => {
            failed();
            throw err;
          }),
      },
    });
    const gaveUp = r.lookup('a.lab', DNS_TYPE.A, {
      timeoutMs: TIMEOUT_MS,
      signal: AbortSignal.abort(),
    });
    assert.equal((await gaveUp).failure, 'generic_timeout_error');
    await dialFailed;
    // an unhandled rejection would be reported once the microtasks have run
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(await addresses(r, 'a.lab'), 'connection_refused', kind.name);
  }
});
