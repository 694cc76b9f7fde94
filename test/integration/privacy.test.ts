// docs/privacy.md, checked: traffic to a known host name, from a known client address, leaves no
// trace of either in any file of the data directory (the SQLite database with its WAL, keys,
// certificates) or in any output of the server and the client, even with every debug log on.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { startOrigin, type Origin } from '../helpers/origin.js';
import {
  dialerFor,
  fetchThrough,
  startOperatorServer,
  tempDataDir,
  type OperatorServer,
} from '../helpers/operator.js';
import { freePort, startLadder, type Peer } from '../helpers/peers.js';
import { curl } from '../helpers/curl.js';

// A reserved name (RFC 2606 .test) that only the server's --hosts file resolves, to loopback.
const NAME = 'privacy-probe.ladder.test';
// The client connects from this loopback address, used by nothing else in the test.
const CLIENT_ADDR = '127.0.0.66';

describe(
  'privacy: no destination or client address is stored or logged',
  { timeout: 90_000 },
  () => {
    let origin: Origin;
    let srv: OperatorServer;
    let client: Peer | undefined;
    const data = tempDataDir();
    const hostsFile = join(data.dir, '..', 'hosts');
    before(async () => {
      origin = await startOrigin();
      writeFileSync(hostsFile, `127.0.0.1 ${NAME}\n`);
      srv = await startOperatorServer(data.dir, ['--hosts', hostsFile], undefined, {
        ...process.env,
        NODE_DEBUG: 'ladder*',
      });
    });
    after(async () => {
      await client?.stop();
      await srv?.peer.stop();
      await origin?.close();
      data.remove();
    });

    test('by name through a real client, and from a known address, then search everything', async () => {
      const key = (await srv.api('POST', '/access-keys', { name: 'privacy' })).body as {
        method: string;
        password: string;
        accessUrl: string;
      };
      const socks = await freePort();
      client = await startLadder(
        ['client', '--server', key.accessUrl, '--socks', `127.0.0.1:${socks}`, '--no-http'],
        /listening/,
        {
          env: { ...process.env, NODE_DEBUG: 'ladder*' },
        },
      );
      const r = await curl([
        '--socks5-hostname',
        `127.0.0.1:${socks}`,
        `http://${NAME}:${origin.port}/hello`,
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(
        r.body.toString(),
        'hello\n',
        'the name resolved on the server and the page came back',
      );
      const direct = await fetchThrough(
        dialerFor(srv.port, key, CLIENT_ADDR),
        origin.port,
        '/hello',
        NAME,
      );
      assert.match(direct.head, /^HTTP\/1\.1 200/);
      // A failed dial too (nothing listens on port 1): errors must not name the target either.
      await fetchThrough(dialerFor(srv.port, key, CLIENT_ADDR), 1, '/', NAME);
      // Stopping the server writes the pending usage and completes the WAL.
      await client.stop();
      await srv.peer.stop();
      const db = new Database(join(data.dir, 'ladder.db'), { readonly: true });
      const used = db.prepare('SELECT SUM(bytes) AS n FROM usage_daily').get() as { n: number };
      db.close();
      assert.ok(used.n > 0, 'the usage rows are in the database searched below');

      const haystacks: [string, Buffer][] = [
        ['server output', Buffer.from(srv.peer.output())],
        ['client output', Buffer.from(client.output())],
      ];
      for (const f of readdirSync(data.dir)) haystacks.push([f, readFileSync(join(data.dir, f))]);
      assert.ok(haystacks.some(([f]) => f === 'ladder.db'));
      const needles = [NAME, 'privacy-probe', CLIENT_ADDR, `:${origin.port}`];
      for (const [where, bytes] of haystacks)
        for (const n of needles) {
          assert.equal(bytes.includes(Buffer.from(n)), false, `${where} contains ${n}`);
          // SQLite stores text as UTF-8; also look for UTF-16 in case a column were stored so.
          assert.equal(
            bytes.includes(Buffer.from(n, 'utf16le')),
            false,
            `${where} contains ${n} (UTF-16)`,
          );
        }
      // The debug logs were on and did say things (the test would be empty otherwise).
      assert.match(srv.peer.output(), /^LADDER:SERVER \d+: dial failed ERR_DIAL_REFUSED$/m);
    });
  },
);
