// A ladder:// key end to end: a real server with Shadowsocks and Trojan on one port, and a real
// client given a key whose first transport is refused silently (as a censor's FET drop looks from
// the client: the connection opens, data goes out, nothing comes back, then it closes). After two
// such closes the client moves to Trojan by itself, and stays there.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startOrigin, type Origin } from '../helpers/origin.js';
import { startOperatorServer, tempDataDir, type OperatorServer } from '../helpers/operator.js';
import { freePort, startLadder, type Peer } from '../helpers/peers.js';
import { curl } from '../helpers/curl.js';
import { formatLadderKey, parseLadderKey } from '../../src/codec/ladder-key.js';
import { formatSsUri } from '../../src/codec/access-key-uri.js';
import { formatTrojanUri, parseTrojanUri } from '../../src/codec/trojan-uri.js';

describe('ladder:// key failover', { timeout: 90_000 }, () => {
  let origin: Origin;
  let srv: OperatorServer;
  let client: Peer | undefined;
  const data = tempDataDir();
  before(async () => {
    origin = await startOrigin();
    srv = await startOperatorServer(data.dir, ['--trojan', '--auth-timeout', '1']);
  });
  after(async () => {
    await client?.stop();
    await srv?.peer.stop();
    await origin?.close();
    data.remove();
  });

  test('the API hands out a ladder:// key with Trojan first, and the client follows it', async () => {
    const k = (await srv.api('POST', '/access-keys', { name: 'bundle' })).body as {
      method: 'chacha20-ietf-poly1305';
      password: string;
      accessUrl: string;
      ladder: { bundleUrl: string; trojanUrl: string };
    };
    const bundle = parseLadderKey(k.ladder.bundleUrl);
    // Trojan first, with Mux.Cool (Ladder's client and server both speak it), then Shadowsocks.
    assert.deepEqual(bundle.transports, [
      formatTrojanUri({ ...parseTrojanUri(k.ladder.trojanUrl), mux: 8 }),
      k.accessUrl,
    ]);
    assert.equal(
      parseTrojanUri(k.ladder.trojanUrl).mux,
      undefined,
      'the trojan:// key alone stays plain',
    );
    assert.equal(bundle.name, 'bundle');

    // Now a key whose first transport is refused: the right server, a password it does not know.
    const refused = formatSsUri({
      method: k.method,
      password: 'not-a-key-of-this-server',
      host: '127.0.0.1',
      port: srv.port,
    });
    const key = formatLadderKey({ transports: [refused, k.ladder.trojanUrl] });
    const socks = await freePort();
    client = await startLadder(
      ['client', '--server', key, '--socks', `127.0.0.1:${socks}`, '--no-http'],
      /carrying traffic.*\n/,
    );
    assert.match(
      client.output(),
      /carrying traffic through 2 transports, first 127\.0\.0\.1:\d+ with chacha20/,
    );
    const get = () =>
      curl(['--socks5-hostname', `127.0.0.1:${socks}`, `http://127.0.0.1:${origin.port}/hello`], 5);
    const first = await get();
    const second = await get();
    assert.notEqual(first.code, 0, 'silently refused');
    assert.notEqual(second.code, 0);
    // The switch happens when the second refused connection closes, which can come a moment after
    // curl has given up on it; wait for it (bounded) rather than race it.
    for (let t = Date.now(); Date.now() - t < 5_000 && !/now using/.test(client.output());)
      await new Promise((r) => setTimeout(r, 50));
    const third = await get();
    assert.equal(third.code, 0, `after two silent closes the client moved on: ${third.stderr}`);
    assert.equal(third.body.toString(), 'hello\n');
    assert.match(
      client.output(),
      /now using 127\.0\.0\.1:\d+ with trojan over TLS \(pinned certificate\) \(2 connections in a row closed without an answer\)/,
    );
    const fourth = await get();
    assert.equal(fourth.code, 0, 'and it stays with the transport that works');
  });
});
