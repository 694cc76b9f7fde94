/**
 * The management API does not identify the server: a request outside its secret prefix gets
 * exactly what the main port's decoy gives, its certificate names what the main port's names, and
 * with `--api main` it has no port of its own while Outline-style calls still work.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:tls';
import { connect as tcpConnect } from 'node:net';
import { X509Certificate } from 'node:crypto';
import { startOperatorServer, tempDataDir, type OperatorServer } from '../helpers/operator.js';

/** One raw exchange over TLS: everything the server sent until it closed, Date blanked. */
function ask(port: number, bytes: string): Promise<{ text: string; cert: X509Certificate }> {
  return new Promise((resolve, reject) => {
    let cert: X509Certificate | undefined;
    const s = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      cert = s.getPeerX509Certificate();
      s.end(bytes);
    });
    let out = '';
    s.on('data', (d: Buffer) => (out += d.toString('latin1')));
    s.on('error', reject);
    s.on('close', () => {
      if (!cert) return reject(new Error('no certificate'));
      resolve({ text: out.replace(/\r\nDate: [^\r]*\r\n/g, '\r\nDate: (date)\r\n'), cert });
    });
  });
}

/** One raw exchange over plain TCP (to a TLS port): everything until the close, Date blanked. */
function askPlain(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tcpConnect(port, '127.0.0.1', () => s.write(bytes));
    let out = '';
    s.on('data', (d: Buffer) => (out += d.toString('latin1')));
    s.on('error', reject);
    s.on('close', () => resolve(out.replace(/\r\nDate: [^\r]*\r\n/g, '\r\nDate: (date)\r\n')));
  });
}

const PROBES = [
  'GET / HTTP/1.1\r\nHost: a\r\n\r\n',
  'GET /server HTTP/1.1\r\nHost: a\r\n\r\n',
  'POST /access-keys HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}',
  'GET /robots.txt HTTP/1.0\r\n\r\n',
  'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
  '\x01\x02\x03 not http\r\n\r\n',
];

describe('management API on its own port', { timeout: 60_000 }, () => {
  const data = tempDataDir();
  let srv: OperatorServer;
  before(async () => {
    srv = await startOperatorServer(data.dir, ['--trojan']);
  });
  after(async () => {
    await srv?.peer.stop();
    data.remove();
  });

  test('outside the secret prefix the API port answers as the main port decoy does', async () => {
    const apiPort = Number(new URL(srv.apiUrl).port);
    assert.notEqual(apiPort, srv.port);
    for (const p of PROBES) {
      const [main, api] = await Promise.all([ask(srv.port, p), ask(apiPort, p)]);
      assert.equal(api.text, main.text, JSON.stringify(p));
      assert.doesNotMatch(api.text, /ResourceNotFound|application\/json/);
    }
    const home = await ask(apiPort, PROBES[0]!);
    assert.match(home.text, /^HTTP\/1\.1 200 OK\r\nServer: nginx\/1\.22\.1\r\n/);
  });

  test("plain HTTP to the API port gets nginx's 497 page, as on the main port, even on the secret prefix", async () => {
    const api = new URL(srv.apiUrl);
    for (const path of ['/', `${api.pathname}/server`]) {
      const req = `GET ${path} HTTP/1.1\r\nHost: a\r\n\r\n`;
      const [main, onApi] = await Promise.all([
        askPlain(srv.port, req),
        askPlain(Number(api.port), req),
      ]);
      assert.equal(onApi, main, path);
      assert.match(
        onApi,
        /^HTTP\/1\.1 400 Bad Request\r\n[^]*The plain HTTP request was sent to HTTPS port/,
      );
    }
  });

  test('the API certificate names what the main one names, and no address', async () => {
    const apiPort = Number(new URL(srv.apiUrl).port);
    const [main, api] = await Promise.all([ask(srv.port, PROBES[0]!), ask(apiPort, PROBES[0]!)]);
    assert.equal(api.cert.subject, main.cert.subject);
    assert.equal(api.cert.subjectAltName, main.cert.subjectAltName);
    assert.doesNotMatch(
      `${api.cert.subject} ${api.cert.subjectAltName}`,
      /IP Address|127\.0\.0\.1|localhost/,
    );
    // the secret prefix still reaches the API
    assert.equal((await srv.api('GET', '/server')).status, 200);
  });
});

describe('management API on the main TLS port (--api main)', { timeout: 60_000 }, () => {
  const data = tempDataDir();
  let srv: OperatorServer;
  before(async () => {
    srv = await startOperatorServer(data.dir, ['--trojan', '--api', 'main']);
  });
  after(async () => {
    await srv?.peer.stop();
    data.remove();
  });

  test('apiUrl names the main port and its certificate; Outline calls work', async () => {
    assert.equal(Number(new URL(srv.apiUrl).port), srv.port);
    const main = await ask(srv.port, PROBES[0]!);
    assert.equal(main.cert.fingerprint256.replace(/:/g, ''), srv.certSha256);
    const server = await srv.api('GET', '/server');
    assert.equal(server.status, 200);
    assert.equal(typeof (server.body as { serverId?: unknown }).serverId, 'string');
    const made = await srv.api('POST', '/access-keys', { name: 'phone' });
    assert.equal(made.status, 201);
    const id = (made.body as { id: string }).id;
    const list = await srv.api('GET', '/access-keys');
    assert.ok((list.body as { accessKeys: { id: string }[] }).accessKeys.some((k) => k.id === id));
    assert.equal((await srv.api('DELETE', `/access-keys/${id}`)).status, 204);
  });

  test('outside the prefix the main port is still the decoy', async () => {
    const r = await ask(srv.port, PROBES[1]!);
    assert.match(r.text, /^HTTP\/1\.1 404 Not Found\r\nServer: nginx\/1\.22\.1\r\n/);
    assert.doesNotMatch(r.text, /ResourceNotFound/);
  });
});
