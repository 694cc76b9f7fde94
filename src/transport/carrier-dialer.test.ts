// The carrier dialer's stall detection on a fake clock (node:test mock timers), with in-memory
// carriers scripted as the server: a carrier that delivered bytes and then went silent before its
// NEXT is replaced after `stallMs`, the next resuming at the offset held, with one carrier in
// flight at most; a carrier that never delivered, a reader that stopped reading, or stallMs 0 do
// not open another.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { Duplex } from 'node:stream';
import {
  CARRIER_FRAME,
  carrierFrame,
  decodeCarrierOpen,
  type CarrierOpen,
} from '../codec/trojan-carrier.js';
import { CarrierStream, type CarrierDialerOptions } from './carrier-dialer.js';
import type { StreamDialer } from './types.js';
import { duplexPair } from '../../test/helpers/duplex-pair.js';

const STALL_MS = 1000;
const TARGET = { host: 'origin.example', port: 80 };

/** The server's end of one carrier: what it was opened with, and a way to send frames. */
interface ServerEnd {
  readonly end: Duplex;
  readonly open: Promise<CarrierOpen>;
  readonly clientEnd: Duplex;
}

/**
 * An inner dialer whose carriers are duplex pairs. Dials after the first wait until `release()`,
 * so a test can see how many are in flight.
 */
function scriptedInner(): {
  inner: StreamDialer;
  carriers: ServerEnd[];
  dials: () => number;
  release: () => void;
} {
  const carriers: ServerEnd[] = [];
  let dials = 0;
  let waiting: (() => void)[] = [];
  const inner: StreamDialer = {
    async dial() {
      dials++;
      if (dials > 1) await new Promise<void>((r) => waiting.push(r));
      const [client, server] = duplexPair();
      let head = Buffer.alloc(0);
      const open = new Promise<CarrierOpen>((resolve) => {
        const onData = (b: Buffer): void => {
          head = Buffer.concat([head, b]);
          const o = decodeCarrierOpen(head, 0);
          if (o === null) return;
          server.off('data', onData);
          resolve(o.value);
        };
        server.on('data', onData);
      });
      carriers.push({ end: server, open, clientEnd: client });
      return client;
    },
  };
  return {
    inner,
    carriers,
    dials: () => dials,
    release: () => {
      const w = waiting;
      waiting = [];
      for (const r of w) r();
    },
  };
}

/** Lets queued stream callbacks and promise reactions run (setImmediate is not faked). */
const settle = () => new Promise<void>((r) => setImmediate(r));

async function advance(t: TestContext, ms: number): Promise<void> {
  t.mock.timers.tick(ms);
  await settle();
}

async function session(
  t: TestContext,
  o: Partial<CarrierDialerOptions> = {},
): Promise<{ s: CarrierStream; fake: ReturnType<typeof scriptedInner> }> {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
  const fake = scriptedInner();
  const s = new CarrierStream(fake.inner, TARGET, {
    carrierBytes: 8192,
    prefetch: false,
    stallMs: STALL_MS,
    ...o,
  });
  await s.start();
  await settle();
  return { s, fake };
}

/** Ends the session while the clock is still fake, so its carriers' timers go with it. */
async function close(s: CarrierStream): Promise<void> {
  s.destroy();
  await settle();
}

const data = (n: number, fill = 0x61) => carrierFrame(CARRIER_FRAME.DATA, Buffer.alloc(n, fill));

test('a carrier silent after delivering, before its NEXT, is replaced after stallMs; the next resumes at the offset held; one in flight', async (t) => {
  const { s, fake } = await session(t);
  const got: Buffer[] = [];
  s.on('data', (b: Buffer) => got.push(b));
  const first = fake.carriers[0]!;
  assert.deepEqual((await first.open).target, TARGET);
  first.end.write(data(1000));
  await settle();
  assert.equal(Buffer.concat(got).length, 1000);

  await advance(t, STALL_MS - 1);
  assert.equal(fake.dials(), 1, 'not before stallMs of silence');
  await advance(t, 1);
  assert.equal(fake.dials(), 2, 'the next carrier is dialled');
  assert.equal(first.clientEnd.destroyed, true, 'the stalled carrier is given up first');

  // While the next carrier is being dialled, no other is opened, however long it takes.
  await advance(t, 10 * STALL_MS);
  assert.equal(fake.dials(), 2);

  fake.release();
  await settle();
  const second = fake.carriers[1]!;
  const open = await second.open;
  assert.equal(open.downOffset, 1000, 'resumes at the bytes held');
  assert.equal(open.upOffset, 0);
  assert.equal(open.target, undefined, 'a resumption, not a new session');
  second.end.write(data(500, 0x62));
  second.end.write(carrierFrame(CARRIER_FRAME.FIN));
  await settle();
  assert.deepEqual(
    Buffer.concat(got),
    Buffer.concat([Buffer.alloc(1000, 0x61), Buffer.alloc(500, 0x62)]),
  );
  assert.equal(s.carriers, 2);
  await close(s);
});

test('bytes arriving keep the carrier: silence is counted from the last one', async (t) => {
  const { s, fake } = await session(t);
  s.resume();
  const c = fake.carriers[0]!;
  for (let i = 0; i < 5; i++) {
    c.end.write(data(100));
    await settle();
    await advance(t, STALL_MS - 100);
  }
  assert.equal(fake.dials(), 1);
  await advance(t, 100);
  assert.equal(fake.dials(), 2);
  await close(s);
});

test('a carrier that never delivered is not replaced, nor a replacement that stays quiet: an idle session is not churned', async (t) => {
  const { s, fake } = await session(t);
  s.resume();
  await advance(t, 20 * STALL_MS);
  assert.equal(fake.dials(), 1, 'quiet from its open: the server may have nothing to say');
  fake.carriers[0]!.end.write(data(10));
  await settle();
  await advance(t, STALL_MS);
  assert.equal(fake.dials(), 2);
  fake.release();
  await settle();
  await advance(t, 20 * STALL_MS);
  assert.equal(fake.dials(), 2, 'the replacement delivered nothing: it is kept');
  await close(s);
});

test('a reader that stops reading pauses the carrier: no stall while paused; silence after it reads again counts', async (t) => {
  const { s, fake } = await session(t);
  const c = fake.carriers[0]!;
  // More than the stream's buffer: the carrier is paused for the reader.
  for (let i = 0; i < 4; i++) c.end.write(data(8000));
  await settle();
  await advance(t, 20 * STALL_MS);
  assert.equal(fake.dials(), 1, 'paused by the reader, not stalled');
  let n = 0;
  s.on('data', (b: Buffer) => (n += b.length));
  await settle();
  assert.equal(n, 32_000);
  await advance(t, STALL_MS - 1);
  assert.equal(fake.dials(), 1);
  await advance(t, 1);
  assert.equal(fake.dials(), 2);
  await close(s);
});

test('stallMs 0: a silent carrier is kept', async (t) => {
  const { s, fake } = await session(t, { stallMs: 0 });
  s.resume();
  fake.carriers[0]!.end.write(data(1000));
  await settle();
  await advance(t, 100 * STALL_MS);
  assert.equal(fake.dials(), 1);
  await close(s);
});
