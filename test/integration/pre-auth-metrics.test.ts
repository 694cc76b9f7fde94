// The pre-authentication guard's counts reach Prometheus, from a real `ladder server`: with
// --max-unauthenticated-per-source 1 one silent connection is held and a second from the same
// source is refused at accept; with a short --auth-timeout a silent connection is closed at the
// deadline. /metrics says so (pending, refused by cap, expired) without naming an address. The
// refusal runs under a deadline far longer than the test, so no timing decides which happens.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { freePort, startLadder } from '../helpers/peers.js';
import { formatSsUri } from '../../src/codec/access-key-uri.js';

function openSilent(port: number): Promise<{ sock: Socket; closed: Promise<void> }> {
  const sock = connect(port, '127.0.0.1');
  sock.on('error', () => {});
  const closed = new Promise<void>((r) => sock.once('close', () => r()));
  return new Promise((resolve, reject) => {
    sock.once('connect', () => resolve({ sock, closed }));
    sock.once('error', reject);
  });
}

function value(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

async function server(
  flags: string[],
): Promise<{ url: string; port: number; stop(): Promise<void> }> {
  const port = await freePort();
  const key = formatSsUri({
    method: 'chacha20-ietf-poly1305',
    password: 'pre-auth-metrics',
    host: '127.0.0.1',
    port,
  });
  const peer = await startLadder(
    [
      'server',
      '--listen',
      `127.0.0.1:${port}`,
      '--key',
      key,
      '--no-udp',
      '--metrics',
      '127.0.0.1:0',
      ...flags,
    ],
    /metrics at (http:\/\/\S+)/,
  );
  const url = /metrics at (http:\/\/\S+)/.exec(peer.output())![1]!;
  return { url, port, stop: () => peer.stop() };
}

async function scrape(url: string): Promise<string> {
  return (await fetch(url)).text();
}

test('a connection past its source cap is counted as refused, with no address', async () => {
  const srv = await server(['--auth-timeout', '600', '--max-unauthenticated-per-source', '1']);
  try {
    let text = await scrape(srv.url);
    assert.equal(value(text, 'ladder_unauthenticated_connections'), 0);
    assert.equal(value(text, 'ladder_unauthenticated_refused_total{cap="source"}'), 0);
    const held = await openSilent(srv.port);
    // The server's accept may come after the client's connect: ask until it has counted it.
    for (let i = 0; i < 400 && value(text, 'ladder_unauthenticated_connections') !== 1; i++)
      text = await scrape(srv.url);
    assert.equal(value(text, 'ladder_unauthenticated_connections'), 1, 'the first is held');
    const refused = await openSilent(srv.port);
    await refused.closed; // closed at accept: its source is at its cap
    text = await scrape(srv.url);
    assert.equal(value(text, 'ladder_unauthenticated_refused_total{cap="source"}'), 1);
    assert.equal(value(text, 'ladder_unauthenticated_refused_total{cap="total"}'), 0);
    assert.equal(value(text, 'ladder_unauthenticated_connections'), 1);
    assert.match(text, /^# TYPE ladder_unauthenticated_refused_total counter$/m);
    assert.doesNotMatch(text, /127\.0\.0\.|::1|::ffff/, 'no address in any label');
    held.sock.destroy();
    await held.closed;
    for (let i = 0; i < 400 && value(text, 'ladder_unauthenticated_connections') !== 0; i++)
      text = await scrape(srv.url);
    assert.equal(value(text, 'ladder_unauthenticated_connections'), 0, 'released on close');
    assert.equal(value(text, 'ladder_unauthenticated_expired_total'), 0);
  } finally {
    await srv.stop();
  }
});

test('a silent connection closed at the deadline is counted as expired', async () => {
  const srv = await server(['--auth-timeout', '0.5']);
  try {
    assert.equal(value(await scrape(srv.url), 'ladder_unauthenticated_expired_total'), 0);
    const silent = await openSilent(srv.port);
    await silent.closed; // the deadline
    const text = await scrape(srv.url);
    assert.equal(value(text, 'ladder_unauthenticated_expired_total'), 1);
    assert.equal(value(text, 'ladder_unauthenticated_connections'), 0);
    assert.match(text, /^# TYPE ladder_unauthenticated_expired_total counter$/m);
  } finally {
    await srv.stop();
  }
});
