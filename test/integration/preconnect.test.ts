/**
 * Connections opened ahead through a real `ladder server` with a plain Trojan key (fp=chrome): the
 * second of two sequential requests rides the connection opened after the first, counted in
 * connections accepted and bytes carried at a TCP relay in front of the server, not in time;
 * closing the key's dialers (the client stopping) closes the one waiting; with preconnect off,
 * a request opens one connection and nothing else.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import { formatTrojanUri } from '../../src/codec/trojan-uri.js';
import { dialersFromKey } from '../../src/transport/key-dialers.js';
import { wasOpenedAhead } from '../../src/transport/preconnect.js';
import { freePort, startLadder, type Peer } from '../helpers/peers.js';
import { makeCert, type TestCert } from '../helpers/tls-cert.js';
import { tcpEcho, type Running } from '../helpers/echo.js';

const PASSWORD = 'preconnect-test-password';

/** A loopback relay to the server that counts connections and the bytes each carried upstream. */
interface Relay {
  port: number;
  conns: { up: number; closed: boolean }[];
  /** Resolves once `n` connections were accepted. */
  accepted(n: number): Promise<void>;
  /** Resolves once connection `i` (from 0) closed. */
  closed(i: number): Promise<void>;
  close(): void;
}

async function relayTo(port: number): Promise<Relay> {
  const sockets = new Set<Socket>();
  const conns: Relay['conns'] = [];
  const server: Server = createServer((c) => {
    const entry = { up: 0, closed: false };
    conns.push(entry);
    const s = connect(port, '127.0.0.1');
    for (const x of [c, s]) {
      sockets.add(x);
      x.on('error', () => {
        c.destroy();
        s.destroy();
      });
    }
    c.on('data', (d: Buffer) => (entry.up += d.length));
    c.pipe(s);
    s.pipe(c);
    c.once('close', () => {
      s.destroy();
      entry.closed = true;
      server.emit('changed');
    });
    server.emit('changed');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const until = async (ok: () => boolean): Promise<void> => {
    while (!ok()) await once(server, 'changed');
  };
  return {
    port: (server.address() as AddressInfo).port,
    conns,
    accepted: (n) => until(() => conns.length >= n),
    closed: (i) => until(() => conns[i]?.closed === true),
    close: () => {
      for (const x of sockets) x.destroy();
      server.close();
    },
  };
}

/** Sends `payload` to the echo server through `stream` and reads it all back. */
async function echoThrough(stream: Duplex, payload: Buffer): Promise<void> {
  let got = 0;
  const back = new Promise<void>((resolve, reject) => {
    stream.on('data', (d: Buffer) => {
      got += d.length;
      if (got >= payload.length) resolve();
    });
    stream.once('error', reject);
    stream.once('close', () => reject(new Error(`closed after ${got} bytes`)));
  });
  stream.write(payload);
  await back;
  stream.destroy();
}

let cert: TestCert;
let server: Peer;
let relay: Relay;
let echo: Running;

before(async () => {
  cert = makeCert();
  echo = await tcpEcho();
  const port = await freePort();
  server = await startLadder([
    'server',
    '--allow-private-targets',
    '--listen',
    `127.0.0.1:${port}`,
    '--key',
    formatTrojanUri({ password: PASSWORD, host: '127.0.0.1', port }),
    '--tls-cert',
    cert.certFile,
    '--tls-key',
    cert.keyFile,
    '--no-udp',
  ]);
  relay = await relayTo(port);
});

after(async () => {
  relay?.close();
  await server?.stop();
  await echo?.close();
  cert?.remove();
});

const env = { readFile: () => '', warn: () => {} };

function key(): string {
  return formatTrojanUri({
    password: PASSWORD,
    host: '127.0.0.1',
    port: relay.port,
    sni: 'localhost',
    pinSha256: cert.pin,
  });
}

test('the second of two sequential requests rides the connection opened ahead; close() closes the next one', async () => {
  const first = relay.conns.length;
  // The idle bound is long here so that a slow machine's first request cannot outlast it.
  const d = dialersFromKey(key(), { preconnect: true, preconnectIdleMs: 60_000 }, env);
  const target = { host: '127.0.0.1', port: echo.port };
  try {
    const one = await d.stream.dial(target);
    assert.equal(wasOpenedAhead(one), false);
    await echoThrough(one, Buffer.from('hello'));
    await relay.accepted(first + 2); // the request's connection and the one opened ahead

    const big = Buffer.alloc(64 * 1024, 7);
    const two = await d.stream.dial(target);
    assert.equal(wasOpenedAhead(two), true);
    await echoThrough(two, big);
    await relay.accepted(first + 3); // used: the next one is opened ahead
    const [c1, c2, c3] = relay.conns.slice(first);
    assert.ok(c2!.up >= big.length, `the second request went over the second connection`);
    assert.ok(c1!.up < big.length && c3!.up < big.length);
    await relay.closed(first);
    await relay.closed(first + 1);
    assert.equal(relay.conns[first + 2]!.closed, false, 'the third waits for a request');

    d.close(); // as the client does when it stops
    await relay.closed(first + 2);
    assert.equal(relay.conns.length, first + 3, 'and none is opened after');
  } finally {
    d.close();
  }
});

test('with preconnect off a request opens its own connection and nothing else', async () => {
  const first = relay.conns.length;
  const d = dialersFromKey(key(), { preconnect: false }, env);
  const one = await d.stream.dial({ host: '127.0.0.1', port: echo.port });
  await echoThrough(one, Buffer.from('hello'));
  await relay.closed(first);
  assert.equal(relay.conns.length, first + 1);
  d.close();
});
