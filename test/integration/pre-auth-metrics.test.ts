// The pre-authentication guard's counts reach Prometheus: a real `ladder server` with
// --max-unauthenticated-per-source 1 and a short --auth-timeout; one silent connection is held, a
// second from the same source is refused at accept, the first is closed at the deadline, and
// /metrics says so (pending, refused by cap, expired) without naming an address.
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

test('pre-auth refusals and expiries are Prometheus counters, with no address', async () => {
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
      // Long enough that the held connection is still held when the second arrives.
      '--auth-timeout',
      '4',
      '--max-unauthenticated-per-source',
      '1',
    ],
    /metrics at (http:\/\/\S+)/,
  );
  try {
    const url = /metrics at (http:\/\/\S+)/.exec(peer.output())![1]!;
    let text = '';
    const scrape = async (): Promise<string> => (text = await (await fetch(url)).text());
    await scrape();
    assert.equal(value(text, 'ladder_unauthenticated_connections'), 0);
    assert.equal(value(text, 'ladder_unauthenticated_refused_total{cap="source"}'), 0);
    assert.equal(value(text, 'ladder_unauthenticated_expired_total'), 0);

    const held = await openSilent(port);
    // The server's accept may come after the client's connect: ask until it has counted it.
    for (let i = 0; i < 400 && value(text, 'ladder_unauthenticated_connections') !== 1; i++)
      await scrape();
    assert.equal(value(text, 'ladder_unauthenticated_connections'), 1, 'the first is held');

    const refused = await openSilent(port);
    await refused.closed; // closed at accept: its source is at its cap
    await scrape();
    assert.equal(value(text, 'ladder_unauthenticated_refused_total{cap="source"}'), 1);
    assert.equal(value(text, 'ladder_unauthenticated_refused_total{cap="total"}'), 0);
    assert.equal(value(text, 'ladder_unauthenticated_expired_total'), 0);

    await held.closed; // the deadline
    await scrape();
    assert.equal(value(text, 'ladder_unauthenticated_expired_total'), 1);
    assert.equal(value(text, 'ladder_unauthenticated_connections'), 0);
    assert.match(text, /^# TYPE ladder_unauthenticated_refused_total counter$/m);
    assert.match(text, /^# TYPE ladder_unauthenticated_expired_total counter$/m);
    assert.doesNotMatch(text, /127\.0\.0\.|::1|::ffff/, 'no address in any label');
  } finally {
    await peer.stop();
  }
});
