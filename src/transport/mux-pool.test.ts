/**
 * MuxPool's placement of sessions over in-memory connections (no sockets): with `connections`, the
 * first session of a cold pool opens them all, going on the first without waiting for the others;
 * a session that finds every open connection busy with fewer than `connections` left opens one more
 * ahead; later sessions go on the open connection with the fewest, and no more than `connections`
 * are opened while they have room; with the default (1) every session rides one connection, as in
 * v2ray. The tests decide when each connection opens, so nothing depends on timing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import { duplexPair } from '../../test/helpers/duplex-pair.js';
import { MuxCool, type MuxSession } from '../stream/mux-cool.js';
import { MuxPool } from './mux-pool.js';

const TARGET = { host: 'origin.example', port: 443 };

interface Conn {
  /** Lets the pool have this connection. */
  open(): void;
  /** Fails its opening. */
  fail(err: Error): void;
  client: Duplex;
}

/**
 * A pool whose connections open when the test says so; `placed()` names a session's connection.
 * With `answerEnd: false` the server never reads its sessions, so it never answers a client's End:
 * an ended session stays open as it does for a round trip on a long path.
 */
function harness(connections?: number, { answerEnd = true } = {}) {
  const conns: Conn[] = [];
  const arrivals: number[] = [];
  const waiters: ((i: number) => void)[] = [];
  const pool = new MuxPool({
    concurrency: 8,
    ...(connections !== undefined ? { connections } : {}),
    connect: () =>
      new Promise<Duplex>((resolve, reject) => {
        const index = conns.length;
        const [client, server] = duplexPair();
        new MuxCool(server, {
          role: 'server',
          onSession: (s) => {
            s.on('error', () => {}); // the connection's end, when the test closes it
            if (answerEnd) s.resume();
            const w = waiters.shift();
            if (w) w(index);
            else arrivals.push(index);
          },
        });
        conns.push({ open: () => resolve(client), fail: reject, client });
      }),
  });
  /** Writes a byte on `s` (its New frame leaves with data) and resolves with the connection it reached. */
  const sessions: MuxSession[] = [];
  const placed = (s: MuxSession): Promise<number> => {
    sessions.push(s);
    s.write('x');
    const got = arrivals.shift();
    if (got !== undefined) return Promise.resolve(got);
    return new Promise((resolve) => waiters.push(resolve));
  };
  const close = (): void => {
    for (const s of sessions) s.destroy();
    for (const c of conns) c.client.destroy();
  };
  return { pool, conns, placed, close };
}

/** Lets the pool see a connection that has just opened (its promise settles in microtasks). */
const settled = (): Promise<void> => new Promise((r) => setImmediate(r));

test('connections 3: a cold start opens all three; sessions spread over the open ones', async () => {
  const h = harness(3);
  try {
    const p1 = h.pool.open(TARGET);
    assert.equal(h.conns.length, 3, 'the first session opens every connection');
    h.conns[0]!.open();
    const s1 = await p1;
    assert.equal(await h.placed(s1), 0);

    // Connection 0 is busy, the others still opening: this session does not wait for them.
    const s2 = await h.pool.open(TARGET);
    assert.equal(await h.placed(s2), 0, 'an open connection before one still opening');

    h.conns[1]!.open();
    h.conns[2]!.open();
    await settled();
    const s3 = await h.pool.open(TARGET);
    assert.equal(await h.placed(s3), 1, 'an idle connection takes the next session');
    const s4 = await h.pool.open(TARGET);
    assert.equal(await h.placed(s4), 2, 'and the other idle one the one after');
    const s5 = await h.pool.open(TARGET);
    assert.equal(await h.placed(s5), 1, 'fewest sessions, the older on a tie');
    assert.equal(h.conns.length, 3, 'never more than `connections` while they have room');
    assert.equal(h.pool.connections, 3);
  } finally {
    h.close();
  }
});

test('connections 3: sessions one after another stay on the first connection', async () => {
  const h = harness(3);
  try {
    for (let i = 0; i < 5; i++) {
      const p = h.pool.open(TARGET);
      h.conns[0]?.open();
      const s = await p;
      assert.equal(await h.placed(s), 0);
      s.destroy();
      await once(s, 'close');
    }
    h.conns[1]!.open();
    h.conns[2]!.open();
    await settled();
    for (let i = 0; i < 3; i++) {
      const s = await h.pool.open(TARGET);
      assert.equal(await h.placed(s), 0, 'a tie goes to the older, warmer connection');
      s.destroy();
      await once(s, 'close');
    }
    assert.equal(h.conns.length, 3, 'only the cold start opened connections');
  } finally {
    h.close();
  }
});

test('connections 3: a session whose End has left is no load, though open until the peer answers', async () => {
  const h = harness(3, { answerEnd: false });
  try {
    const p = h.pool.open(TARGET);
    for (const c of h.conns) c.open();
    await settled();
    const first = await p;
    assert.equal(await h.placed(first), 0);
    first.end();
    await once(first, 'finish');
    for (let i = 0; i < 3; i++) {
      const s = await h.pool.open(TARGET);
      assert.equal(await h.placed(s), 0, `session ${i + 2} on the first connection`);
      s.end();
      await once(s, 'finish');
      assert.ok(!s.destroyed, 'still open: the server has not answered End');
    }

    // A session still in use makes its connection busy: the next one goes on an idle connection;
    // ended sessions weigh nothing there either.
    const live = await h.pool.open(TARGET);
    assert.equal(await h.placed(live), 0);
    const second = await h.pool.open(TARGET);
    assert.equal(await h.placed(second), 1, 'the idle connection, not the one with a live session');
    second.end();
    await once(second, 'finish');
    const third = await h.pool.open(TARGET);
    assert.equal(await h.placed(third), 1, 'its ended session is no load: a tie, the older');
    assert.equal(h.conns.length, 3);
  } finally {
    h.close();
  }
});

test('default: concurrent sessions share one connection, as in v2ray', async () => {
  const h = harness();
  try {
    const p = h.pool.open(TARGET);
    h.conns[0]!.open();
    const sessions = [await p];
    for (let i = 0; i < 5; i++) sessions.push(await h.pool.open(TARGET));
    for (const s of sessions) assert.equal(await h.placed(s), 0);
    assert.equal(h.conns.length, 1);
  } finally {
    h.close();
  }
});

test('a connection opened ahead that fails costs no session; the next busy moment tries again', async () => {
  const h = harness(2);
  try {
    const p1 = h.pool.open(TARGET);
    assert.equal(h.conns.length, 2, 'opened ahead at the cold start');
    h.conns[0]!.open();
    const s1 = await p1;
    assert.equal(await h.placed(s1), 0);
    h.conns[1]!.fail(new Error('refused'));
    await settled();
    assert.equal(h.pool.connections, 1, 'the failed one left the pool');
    const s2 = await h.pool.open(TARGET);
    assert.equal(h.conns.length, 3, 'connection 0 busy: opened ahead again');
    assert.equal(await h.placed(s2), 0, 'without waiting for it');
    h.conns[2]!.open();
    await settled();
    const s3 = await h.pool.open(TARGET);
    assert.equal(await h.placed(s3), 2);
  } finally {
    h.close();
  }
});
