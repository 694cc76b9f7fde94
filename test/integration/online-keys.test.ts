// Online keys against real servers on loopback: Ladder's server serving a signed key document at a
// secret path of its decoy site (--publish), and HTTPS mirrors that misbehave: a bad signature, an
// older document, one that never answers, a redirect loop, a 100 MB body, and every mirror down but
// one. Each gets a clear message and leaves the kept document as it was.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:https';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cappedFetch } from '../../src/app/capped-fetch.js';
import { resolveOnlineKey } from '../../src/app/online-keys.js';
import {
  rawPublicKey,
  signKeyDocument,
  type KeyDocumentBody,
} from '../../src/codec/key-document.js';
import { formatLadderOnlineKey } from '../../src/codec/online-key.js';
import { DirectDialer } from '../../src/transport/direct.js';
import { makeCert, type TestCert } from '../helpers/tls-cert.js';
import { freePort, startLadder, type Peer } from '../helpers/peers.js';

const SS1 = 'ss://Y2hhY2hhMjAtaWV0Zi1wb2x5MTMwNTpvbmU@198.18.0.1:4321';
const SS2 = 'ss://Y2hhY2hhMjAtaWV0Zi1wb2x5MTMwNTp0d28@198.18.0.2:4321';

describe('online keys over real HTTPS on loopback', { timeout: 120_000 }, () => {
  let cert: TestCert;
  let mirror: Server;
  let base = '';
  const sockets = new Set<Socket>();
  const operator = generateKeyPairSync('ed25519');
  const forger = generateKeyPairSync('ed25519');
  const pub = rawPublicKey(operator.publicKey);
  const routes = new Map<string, (res: import('node:http').ServerResponse) => void>();
  let ladder: Peer | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'ladder-online-'));

  const doc = (serial: number, keys: string[], mirrors: string[] = [], key = operator.privateKey) =>
    signKeyDocument(
      { serial, issued: new Date(0).toISOString(), keys, mirrors } satisfies KeyDocumentBody,
      key,
    );
  const fetchText =
    (o: { timeoutMs?: number } = {}) =>
    async (url: string) =>
      (await cappedFetch(url, { dialer: new DirectDialer(), ca: cert.cert, ...o })).body.toString(
        'utf8',
      );

  before(async () => {
    cert = makeCert();
    mirror = createServer({ cert: cert.cert, key: cert.key }, (req, res) => {
      const h = routes.get(req.url ?? '');
      if (h) h(res);
      else res.writeHead(404).end('not here');
    });
    mirror.on('connection', (s: Socket) => {
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
    });
    await new Promise<void>((r) => mirror.listen(0, '127.0.0.1', r));
    base = `https://127.0.0.1:${(mirror.address() as import('node:net').AddressInfo).port}`;
    routes.set('/never', () => {
      // accepts the request and never answers: the fetch's deadline ends it
    });
    routes.set('/loop', (res) => res.writeHead(302, { Location: '/loop' }).end());
    routes.set('/huge', (res) => {
      // 100 MB in 64 KiB chunks, written only as the reader takes them; stops when cut off.
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      let left = 1600;
      const pump = () => {
        while (left > 0 && !res.destroyed) {
          left--;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        if (left === 0) res.end();
      };
      pump();
    });
    routes.set('/huge-declared', (res) =>
      res.writeHead(200, { 'Content-Length': String(100 * 1024 * 1024) }).write('x'),
    );
  });
  after(async () => {
    await ladder?.stop();
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => mirror?.close(() => r()));
    cert?.remove();
    rmSync(dir, { recursive: true, force: true });
  });

  test("Ladder's server serves the signed document at a secret path of its decoy site", async () => {
    const file = join(dir, 'keys.json');
    writeFileSync(file, doc(1, [SS1, SS2]));
    const port = await freePort();
    const secret = '/k/0123456789abcdef0123/doc';
    ladder = await startLadder([
      'server',
      '--listen',
      `127.0.0.1:${port}`,
      '--key',
      'trojan://online-keys-test-password@127.0.0.1:443',
      '--tls-cert',
      cert.certFile,
      '--tls-key',
      cert.keyFile,
      '--publish',
      `${secret}=${file}`,
    ]);
    const uri = formatLadderOnlineKey(`https://127.0.0.1:${port}${secret}`, pub, 'Team');
    const r = await resolveOnlineKey(uri, undefined, fetchText());
    assert.equal(r.body?.serial, 1);
    assert.match(r.resolved, /^ladder:\/\//);
    // Publishing again needs no restart; the client takes the newer one.
    writeFileSync(file, doc(2, [SS2]));
    const r2 = await resolveOnlineKey(uri, r, fetchText());
    assert.equal(r2.body?.serial, 2);
    assert.equal(r2.resolved, `${SS2}#Team`);
    // Outside the secret path, the decoy's usual answer.
    await assert.rejects(fetchText()(`https://127.0.0.1:${port}/k/guess`), /HTTP 404/);
  });

  test('a bad signature and an older document are refused; the kept one stays', async () => {
    const kept = { resolved: SS1, doc: doc(5, [SS1]) };
    routes.set('/forged', (res) => res.end(doc(9, [SS2], [], forger.privateKey)));
    await assert.rejects(
      resolveOnlineKey(formatLadderOnlineKey(`${base}/forged`, pub), kept, fetchText()),
      (err: Error & { code?: string }) =>
        err.code === 'ERR_KEY_DOCUMENT' && /does not verify/.test(err.message),
    );
    routes.set('/older', (res) => res.end(doc(4, [SS2])));
    await assert.rejects(
      resolveOnlineKey(formatLadderOnlineKey(`${base}/older`, pub), kept, fetchText()),
      /serial 4 is older than the kept 5/,
    );
    routes.set('/same', (res) => res.end(doc(5, [SS1])));
    const same = await resolveOnlineKey(
      formatLadderOnlineKey(`${base}/same`, pub),
      kept,
      fetchText(),
    );
    assert.equal(same.resolved, SS1);
  });

  test('a server that never answers, a redirect loop, a 100 MB body: each a clear message', async () => {
    await assert.rejects(
      fetchText({ timeoutMs: 1000 })(`${base}/never`),
      /no complete answer within 1 s/,
    );
    await assert.rejects(fetchText()(`${base}/loop`), /more than 5 redirects/);
    await assert.rejects(fetchText()(`${base}/huge`), /over 64 KiB/);
    await assert.rejects(fetchText()(`${base}/huge-declared`), /over 64 KiB/);
    await assert.rejects(fetchText()(`http://127.0.0.1:1/x`), /only https:\/\//);
    // Outline's form through the same caps: an answer that is a web page.
    routes.set('/page', (res) => res.end('<html>hello</html>'));
    await assert.rejects(
      resolveOnlineKey(`ssconf://${base.slice('https://'.length)}/page`, undefined, fetchText()),
      /neither an ss:\/\/ key, JSON nor YAML|not a key document/,
    );
    routes.set('/outline', (res) =>
      res.end(
        JSON.stringify({
          server: '198.18.0.9',
          server_port: 443,
          password: 'p',
          method: 'chacha20-ietf-poly1305',
        }),
      ),
    );
    const o = await resolveOnlineKey(
      `ssconf://${base.slice('https://'.length)}/outline#Home`,
      undefined,
      fetchText(),
    );
    assert.match(o.resolved, /^ss:\/\/.*@198\.18\.0\.9:443#Home$/);
  });

  test('every mirror down but one: the client tries them in turn and takes the good one', async () => {
    const closedPort = await freePort();
    const mirrors = [
      `https://127.0.0.1:${closedPort}/doc`,
      `${base}/never`,
      `${base}/forged`,
      `${base}/older`,
      `${base}/good`,
    ];
    const kept = { resolved: SS1, doc: doc(5, [SS1], mirrors) };
    routes.set('/good', (res) => res.end(doc(6, [SS2], mirrors)));
    routes.set('/first', (res) => res.writeHead(503).end());
    const r = await resolveOnlineKey(
      formatLadderOnlineKey(`${base}/first`, pub),
      kept,
      fetchText({ timeoutMs: 1000 }),
    );
    assert.equal(r.body?.serial, 6);
    assert.equal(r.resolved, SS2);
    // With the good one down too, the message lists each mirror's failure.
    routes.delete('/good');
    await assert.rejects(
      resolveOnlineKey(
        formatLadderOnlineKey(`${base}/first`, pub),
        kept,
        fetchText({ timeoutMs: 1000 }),
      ),
      (err: Error) =>
        /no mirror gave a usable key document/.test(err.message) &&
        /HTTP 503/.test(err.message) &&
        /does not verify/.test(err.message) &&
        /older than the kept 5/.test(err.message) &&
        /no complete answer/.test(err.message),
    );
  });
});
