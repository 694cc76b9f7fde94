// The connection table's counting wrapper passes the lent-read contract through (core/lent-read.ts):
// a stream dialed with recycled reads stays a lending stream once wrapped, a consumer's hold reaches
// the stream below, and a chunk left buffered in the wrapper is held for it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import { HOLD, holdChunks, lendsChunks } from '../core/lent-read.js';
import { ConnectionTable } from './connection-table.js';

/** A stream that lends its chunks and counts the holds it was given. */
function lender(): Duplex & { holds: number } {
  const d = new Duplex({ read() {}, write: (_c, _e, cb) => cb() }) as Duplex & {
    holds: number;
    [HOLD]: () => void;
  };
  d.holds = 0;
  d[HOLD] = () => d.holds++;
  return d;
}

async function wrapped(inner: Duplex): Promise<Duplex> {
  const table = new ConnectionTable();
  return table.wrap({ dial: () => Promise.resolve(inner) }).dial({ host: '198.18.0.1', port: 80 });
}

test('a wrapped lending stream lends: a hold reaches the stream below', async () => {
  const inner = lender();
  const outer = await wrapped(inner);
  assert.ok(lendsChunks(outer));
  holdChunks(outer);
  assert.equal(inner.holds, 1);
  outer.destroy();
});

test('a chunk left buffered in the wrapper is held; one handed on at once is not', async () => {
  const inner = lender();
  const outer = await wrapped(inner);
  inner.emit('data', Buffer.from('kept')); // nobody reads `outer` yet: it stays buffered there
  assert.equal(inner.holds, 1);
  const got: Buffer[] = [];
  outer.on('data', (c: Buffer) => got.push(Buffer.from(c)));
  await new Promise((r) => setImmediate(r)); // flowing from now on
  inner.emit('data', Buffer.from('passed'));
  assert.equal(inner.holds, 1);
  assert.deepEqual(got.map(String), ['kept', 'passed']);
  outer.destroy();
});

test('a stream that does not lend is not made to look like one', async () => {
  const outer = await wrapped(new Duplex({ read() {}, write: (_c, _e, cb) => cb() }));
  assert.equal(lendsChunks(outer), false);
  outer.destroy();
});
