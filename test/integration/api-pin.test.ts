// The management API client checks the pinned certificate during the TLS handshake, before it
// writes the request line (which carries the secret path) or the body (a new key's password). A
// recording man in the middle on loopback, with a certificate of its own, must receive nothing; a
// wrong pin against the real server must change nothing there.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import type { AddressInfo, Socket } from 'node:net';
import { LADDER_CLI } from '../helpers/peers.js';
import { makeCert, type TestCert } from '../helpers/tls-cert.js';
import { startOperatorServer, tempDataDir, type OperatorServer } from '../helpers/operator.js';

function ladder(args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [LADDER_CLI, ...args], { timeout: 20_000 }, (e, out, err) =>
      resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out, err }),
    );
  });
}

/**
 * A TLS server with its own certificate that records every decrypted byte a client sends and
 * answers nothing. `settled()` resolves once every connection it accepted has closed, so the
 * recording is complete when it is read.
 */
interface Recorder {
  port: number;
  received(): Buffer;
  connections(): number;
  settled(): Promise<void>;
  close(): Promise<void>;
}

async function startRecorder(cert: TestCert): Promise<Recorder> {
  const chunks: Buffer[] = [];
  const open = new Set<Socket>();
  let accepted = 0;
  let idle: (() => void) | undefined;
  const server: Server = createServer({ cert: cert.cert, key: cert.key }, (tls: TLSSocket) => {
    tls.on('data', (c: Buffer) => {
      chunks.push(c);
      // Enough of a request arrived to prove the recorder sees plaintext: answer so the client ends.
      if (Buffer.concat(chunks).includes('\r\n\r\n'))
        tls.end('HTTP/1.1 418 I am a recorder\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
    });
    tls.on('error', () => {});
  });
  server.on('connection', (raw: Socket) => {
    accepted++;
    open.add(raw);
    raw.on('close', () => {
      open.delete(raw);
      if (open.size === 0) idle?.();
    });
  });
  server.on('tlsClientError', () => {});
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    received: () => Buffer.concat(chunks),
    connections: () => accepted,
    settled: () =>
      open.size === 0
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            idle = resolve;
          }),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
}

describe(
  'management API client: the pin is checked before anything is sent',
  { timeout: 90_000 },
  () => {
    const data = tempDataDir();
    const mitmCert = makeCert();
    let srv: OperatorServer;
    let mitm: Recorder;
    let secretPath: string;
    before(async () => {
      srv = await startOperatorServer(data.dir);
      mitm = await startRecorder(mitmCert);
      secretPath = new URL(srv.apiUrl).pathname;
      assert.ok(secretPath.length > 8, 'the API URL has a secret path');
    });
    after(async () => {
      await mitm?.close();
      await srv?.peer.stop();
      mitmCert.remove();
      data.remove();
    });

    const mitmUrl = (): string => `https://127.0.0.1:${mitm.port}${secretPath}`;

    test('a man in the middle with another certificate receives no byte of the path or body', async () => {
      const before = mitm.connections();
      const r = await ladder([
        'keys',
        'create',
        '--name',
        'secret-name-in-the-body',
        '--api',
        mitmUrl(),
        '--cert-sha256',
        srv.certSha256,
      ]);
      assert.equal(r.code, 1, r.err);
      assert.match(r.err, /not the one given with --cert-sha256/);
      assert.equal(mitm.connections(), before + 1, 'the client did reach the man in the middle');
      await mitm.settled();
      assert.equal(mitm.received().length, 0, `recorded: ${mitm.received().toString('latin1')}`);
    });

    test('control: with the man in the middle pinned, the recorder does see the secret path', async () => {
      const r = await ladder(['keys', 'list', '--api', mitmUrl(), '--cert-sha256', mitmCert.pin]);
      assert.notEqual(r.code, 0, 'a 418 is not a key list');
      await mitm.settled();
      assert.ok(
        mitm.received().includes(secretPath),
        'a recorder that cannot see the path would prove nothing above',
      );
    });

    test('a wrong pin against the real server deletes nothing', async () => {
      const made = await ladder([
        'keys',
        'create',
        '--name',
        'keep me',
        '--api',
        srv.apiUrl,
        '--cert-sha256',
        srv.certSha256,
        '--json',
      ]);
      assert.equal(made.code, 0, made.err);
      const id = (JSON.parse(made.out) as { id: string }).id;
      const wrong = await ladder([
        'keys',
        'delete',
        id,
        '--api',
        srv.apiUrl,
        '--cert-sha256',
        mitmCert.pin,
      ]);
      assert.equal(wrong.code, 1);
      assert.match(wrong.err, /not the one given with --cert-sha256/);
      const still = await srv.api('GET', `/access-keys/${id}`);
      assert.equal(still.status, 200, 'the key still exists after a delete with a wrong pin');
      const right = await ladder([
        'keys',
        'delete',
        id,
        '--api',
        srv.apiUrl,
        '--cert-sha256',
        srv.certSha256,
      ]);
      assert.equal(right.code, 0, right.err);
      assert.equal(
        (await srv.api('GET', `/access-keys/${id}`)).status,
        404,
        'control: a pinned delete deletes',
      );
    });
  },
);
