// The probe's connections at once (`--concurrent`, attemptsAtOnce): all of them are held open until
// the last has its answer, so a censor counting live connections sees them together even when one
// is slow. A TLS server on loopback plays the Trojan server: it answers each request at once, and
// holds the last ClientHello until the client has read every other answer; by then a connection
// closed after its answer would be gone. The requests ask for keep-alive so the origin does not
// close them either.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { issueCertificate } from '../../src/server/certificates.js';
import { attemptsAtOnce, type CheckEnv } from '../../src/probe/transport-check.js';
import { transportsFromKey, type ProbeTransport } from '../../src/probe/transports.js';
import { ConnectionBudget } from '../../src/probe/manners.js';
import type { Resolver } from '../../src/probe/dns-client.js';

const N = 4;
const cert = issueCertificate({
  commonName: 'localhost',
  altNames: ['localhost'],
  serial: randomBytes(16),
});

let server: Server;
let port = 0;
let hellos = 0;
/** Lets the last ClientHello go on. */
let releaseLast: (() => void) | undefined;
const requests: string[] = [];
const sockets = new Set<TLSSocket>();

before(async () => {
  server = createServer({
    cert: cert.cert,
    key: cert.key,
    SNICallback: (_name, cb) => {
      if (++hellos < N) cb(null, undefined);
      else releaseLast = () => cb(null, undefined);
    },
  });
  server.on('secureConnection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
    let got = '';
    s.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      const at = got.indexOf('GET ');
      if (at < 0 || !got.includes('\r\n\r\n', at)) return;
      const request = got.slice(at);
      got = '';
      requests.push(request);
      s.write('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
      if (/^Connection: close\r$/im.test(request)) s.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  port = (server.address() as AddressInfo).port;
});
after(async () => {
  for (const s of sockets) s.destroy();
  await new Promise<void>((r) => server.close(() => r()));
});

const noResolver: Resolver = {
  engine: 'udp',
  address: '127.0.0.1',
  lookup: () => Promise.reject(new Error('no lookups in this test')),
};

const env: CheckEnv = {
  now: () => performance.now(),
  timeoutMs: 30_000,
  attempts: 1,
  backoffBaseMs: 0,
  sleep: () => Promise.resolve(),
  resolver: noResolver,
  dnsGraceMs: 0,
  checkUrl: new URL('http://origin.example/'),
  throughputMaxBytes: 0,
  throughputMaxMs: 0,
  controlResolver: { host: '127.0.0.1', port: 53 },
  budget: new ConnectionBudget(2 * N),
};

test(`${N} connections at once: the first ${N - 1} stay open while the last one's handshake is held`, async () => {
  const pin = cert.fingerprint256.replace(/:/g, '').toLowerCase();
  const base = transportsFromKey(
    `trojan://pw@127.0.0.1:${port}?sni=localhost&pin=${pin}&fp=node`,
  )[0]!;
  const streams: Duplex[] = [];
  let answered = 0;
  let openAtRelease = -1;
  // The client's streams, to see which are still open when the last handshake goes on.
  const t: ProbeTransport = {
    ...base,
    dialers: (address, o) => {
      const d = base.dialers(address, o);
      return {
        stream: {
          dial: async (target, signal) => {
            const s = await d.stream.dial(target, signal);
            streams.push(s);
            s.once('data', () => {
              if (++answered !== N - 1) return;
              // After the answer's reader and whatever it runs next (a close after the answer).
              setImmediate(() => {
                openAtRelease = streams.filter((x) => !x.destroyed).length;
                releaseLast!();
              });
            });
            return s;
          },
        },
      };
    },
  };
  const attempts = await attemptsAtOnce(t, '127.0.0.1', 1, N, env);
  assert.deepEqual(
    attempts.map((a) => a.kind),
    Array(N).fill('ok'),
  );
  assert.deepEqual(
    attempts.map((a) => a.n),
    [1, 2, 3, 4],
  );
  assert.equal(openAtRelease, N - 1, 'every answered connection still open');
  assert.equal(requests.length, N);
  for (const r of requests) assert.match(r, /^Connection: keep-alive\r$/m);
  assert.ok(
    streams.every((s) => s.destroyed),
    'all closed once the last had its answer',
  );
});
