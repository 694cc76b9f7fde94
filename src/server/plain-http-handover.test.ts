import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough, type Duplex } from 'node:stream';
import { PlainHttpHandover, isPlainHttpStart } from './plain-http-handover.js';

test("nginx's first-byte rule: 0x16 and high-bit bytes are TLS, every other byte plain HTTP", () => {
  for (let b = 0; b < 256; b++) assert.equal(isPlainHttpStart(b), b !== 0x16 && b < 0x80, `${b}`);
});

/** Feeds `pieces`; resolves with whether the shadow reacted (its callback ran) after each one. */
async function reactions(pieces: string[], end = false): Promise<boolean[]> {
  let fired = false;
  const h = new PlainHttpHandover(
    () => {},
    () => (fired = true),
  );
  const out: boolean[] = [];
  for (const p of pieces) {
    h.feed(Buffer.from(p, 'latin1'));
    await new Promise((r) => process.nextTick(r));
    out.push(fired && h.reacted);
  }
  if (end) {
    h.feedEnd();
    await new Promise((r) => process.nextTick(r));
    out.push(fired && h.reacted);
  }
  return out;
}

test('the shadow waits on a partial head and reacts where nginx would answer or close', async () => {
  assert.deepEqual(await reactions(['GET / HT', 'TP/1.1\r\nHost: a\r\n', '\r\n']), [
    false,
    false,
    true,
  ]);
  assert.deepEqual(await reactions(['G', 'E', 'T', ' /\r\n']), [false, false, false, true]);
  assert.deepEqual(await reactions(['GE', '\x00']), [false, true], 'a byte no method has');
  assert.deepEqual(await reactions(['\x01']), [true]);
  assert.deepEqual(await reactions(['GET / HTTP/1.1\r\nHo'], true), [false, true], 'the end');
});

test('commit hands every byte fed, in order, to the answer; abandon hands nothing', () => {
  const got: string[] = [];
  const answer = (_c: Duplex, head: Buffer): void => void got.push(head.toString('latin1'));
  const h = new PlainHttpHandover(answer);
  for (const p of ['GET ', '/ HTTP/1.1\r\n', 'Host: a\r\n\r\n', 'extra']) h.feed(Buffer.from(p));
  h.commit(new PassThrough());
  h.commit(new PassThrough());
  assert.deepEqual(got, ['GET / HTTP/1.1\r\nHost: a\r\n\r\nextra']);
  const a = new PlainHttpHandover(answer);
  a.feed(Buffer.from('GET'));
  a.abandon();
  a.commit(new PassThrough());
  assert.equal(got.length, 1);
});
